"""A second real client: the MCP Inspector's CLI mode (npm `@modelcontextprotocol/inspector`,
pinned in package.json) lists and calls a tool against the running gateway."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.api.helpers import create_connection, create_connector
from tests.conftest import GatewayUnderTest
from tests.doubles.echo import header_values

REPO = Path(__file__).resolve().parents[2]
INSPECTOR = (
    REPO
    / "node_modules"
    / "@modelcontextprotocol"
    / "inspector"
    / "clients"
    / "launcher"
    / "build"
    / "index.js"
)


def inspector(gateway: GatewayUnderTest, tmp_path: Path, user: str, *args: str) -> Any:
    assert INSPECTOR.is_file(), "run `npm ci`: the MCP Inspector is missing from node_modules"
    env = {
        **os.environ,
        "MCP_CATALOG_PATH": str(tmp_path / "catalog.json"),
        "HOME": str(tmp_path),
        "NO_PROXY": "127.0.0.1",
    }
    done = subprocess.run(
        [
            "node",
            str(INSPECTOR),
            "--cli",
            gateway.url + "/api/mcp",
            "--transport",
            "http",
            "--header",
            f"Authorization: Bearer {gateway.token(user)}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_inspector_lists_and_calls_a_tool(
    gateway: GatewayUnderTest, echo: Any, tmp_path: Path
) -> None:
    with gateway.client("mcp-inspector") as client:
        connector = create_connector(
            client, echo.url, {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        )
        create_connection(client, connector["id"], {"api_key": "inspector-key"})
    listed = inspector(gateway, tmp_path, "mcp-inspector", "--method", "tools/list")
    assert [tool["name"] for tool in listed["tools"]] == ["test__http_request"]
    assert listed["tools"][0]["inputSchema"]["required"] == ["path"]
    called = inspector(
        gateway,
        tmp_path,
        "mcp-inspector",
        "--method",
        "tools/call",
        "--tool-name",
        "test__http_request",
        "--tool-arg",
        "path=/from/inspector",
        "method=POST",
    )
    assert called.get("isError") in (None, False), called
    report = json.loads(called["content"][0]["text"])
    assert report["method"] == "POST" and report["path"] == "/from/inspector"
    assert header_values(report, "x-api-key") == ["inspector-key"]
