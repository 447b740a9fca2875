"""`python -m functions connectors import`, against a small recording server.

The command runs as a real subprocess; the server is a tiny ASGI app under uvicorn that
records the multipart request and answers what each test asks for. (The real import
route is tested end to end elsewhere.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from functions.devtools.processes import free_port
from functions.identity.dev_issuer import generate_private_key_pem
from tests.powerplatform.samples import folder_path
from tests.servers import ThreadedServer

REPO = Path(__file__).resolve().parents[2]
CREATED = {"id": "c-123", "name": "Cradl AI", "operations": 5}


@dataclass
class Recorder:
    """What the server saw, and what it answers next."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 201
    body: Any = field(default_factory=lambda: dict(CREATED))
    media_type: str = "application/json"


async def _import(request: Request) -> Response:
    recorder: Recorder = request.app.state.recorder
    form = await request.form()
    files: dict[str, tuple[str | None, bytes]] = {}
    fields: dict[str, str] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            files[name] = (value.filename, await value.read())
        else:
            fields[name] = value
    recorder.requests.append(
        {
            "method": request.method,
            "path": request.url.path,
            "content_type": request.headers.get("content-type", ""),
            "authorization": request.headers.get("authorization"),
            "files": files,
            "fields": fields,
        }
    )
    if recorder.media_type == "text/plain":
        return PlainTextResponse(str(recorder.body), status_code=recorder.status)
    return JSONResponse(recorder.body, status_code=recorder.status, media_type=recorder.media_type)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ThreadedServer, Recorder]]:
    recorder = Recorder()
    app = Starlette(routes=[Route("/api/connectors/import", _import, methods=["POST"])])
    app.state.recorder = recorder
    with ThreadedServer(app) as running:
        yield running, recorder


@pytest.fixture
def recorder(server: tuple[ThreadedServer, Recorder]) -> Recorder:
    _, recorder = server
    recorder.requests.clear()
    recorder.status, recorder.body, recorder.media_type = 201, dict(CREATED), "application/json"
    return recorder


@pytest.fixture(scope="module")
def dev_key() -> str:
    return generate_private_key_pem()


def _run(
    *arguments: str,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GATEWAY_URL", "GATEWAY_TOKEN", "GATEWAY_DEV_ISSUER_PRIVATE_KEY")
    }
    base["PYTHONPATH"] = str(REPO)
    completed = subprocess.run(
        [sys.executable, "-m", "functions", "connectors", "import", *arguments],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in completed.stderr + completed.stdout
    return completed


def test_uploads_the_files_unchanged_with_fields_and_a_dev_token(
    server: tuple[ThreadedServer, Recorder], recorder: Recorder, dev_key: str
) -> None:
    running, _ = server
    folder = folder_path("certified-connectors/Cradl AI")
    completed = _run(
        str(folder),
        "--gateway",
        running.url + "/",
        "--base-url",
        "http://127.0.0.1:9/echo",
        "--name",
        "Cradl staging",
        "--user",
        "bob",
        env={"GATEWAY_DEV_ISSUER_PRIVATE_KEY": dev_key, "GATEWAY_TOKEN": "ignored-for-user"},
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    (line,) = completed.stdout.splitlines()
    assert json.loads(line) == CREATED

    (request,) = recorder.requests
    assert request["method"] == "POST" and request["path"] == "/api/connectors/import"
    assert request["content_type"].startswith("multipart/form-data; boundary=")
    assert request["files"] == {
        "apiDefinition": (
            "apiDefinition.swagger.json",
            (folder / "apiDefinition.swagger.json").read_bytes(),
        ),
        "apiProperties": ("apiProperties.json", (folder / "apiProperties.json").read_bytes()),
        "script": ("script.csx", (folder / "script.csx").read_bytes()),
    }
    assert request["fields"] == {"baseUrl": "http://127.0.0.1:9/echo", "name": "Cradl staging"}
    scheme, _, token = request["authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["name"] == "bob"


def test_bytes_are_not_reencoded(
    server: tuple[ThreadedServer, Recorder], recorder: Recorder, tmp_path: Path
) -> None:
    """A UTF-16 file with a BOM and comments goes up as it is; the gateway judges it."""
    running, _ = server
    raw = '\ufeff{"swagger": "2.0", // comment\n "paths": {}, "x": "é"}'.encode("utf-16-le")
    (tmp_path / "ApiDefinition.Swagger.json").write_bytes(raw)  # case-insensitive match
    completed = _run(str(tmp_path), "--gateway", running.url, "--token", "t0k3n")
    assert completed.returncode == 0, completed.stderr
    (request,) = recorder.requests
    assert request["files"] == {"apiDefinition": ("ApiDefinition.Swagger.json", raw)}
    assert request["fields"] == {}
    assert request["authorization"] == "Bearer t0k3n"


def test_gateway_and_token_from_the_environment(
    server: tuple[ThreadedServer, Recorder], recorder: Recorder
) -> None:
    running, _ = server
    folder = folder_path("certified-connectors/Docurain")
    completed = _run(str(folder), env={"GATEWAY_URL": running.url, "GATEWAY_TOKEN": "from-env"})
    assert completed.returncode == 0, completed.stderr
    (request,) = recorder.requests
    assert request["authorization"] == "Bearer from-env"
    assert set(request["files"]) == {"apiDefinition", "apiProperties"}


def test_default_token_is_minted_for_alice(
    server: tuple[ThreadedServer, Recorder], recorder: Recorder, dev_key: str, tmp_path: Path
) -> None:
    running, _ = server
    folder = folder_path("certified-connectors/Docurain")
    # The key from ./local.settings.json, as `python -m functions token` finds it.
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"GATEWAY_DEV_ISSUER_PRIVATE_KEY": dev_key}})
    )
    completed = _run(str(folder), "--gateway", running.url, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    (request,) = recorder.requests
    token = request["authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, options={"verify_signature": False})["name"] == "alice"


def test_invalid_definition_prints_the_problem_and_exits_2(
    server: tuple[ThreadedServer, Recorder], recorder: Recorder
) -> None:
    running, _ = server
    recorder.status = 400
    recorder.media_type = "application/problem+json"
    recorder.body = {
        "type": "about:blank",
        "title": "Invalid connector definition",
        "status": 400,
        "code": "invalid_definition",
        "detail": "apiDefinition.swagger.json: line 276 column 6: Extra data",
    }
    folder = folder_path("certified-connectors/JIRA")
    completed = _run(str(folder), "--gateway", running.url, "--token", "t")
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.strip() == (
        f"error: POST {running.url}/api/connectors/import: 400 invalid_definition: "
        "apiDefinition.swagger.json: line 276 column 6: Extra data"
    )


def test_validation_errors_are_listed(
    server: tuple[ThreadedServer, Recorder], recorder: Recorder
) -> None:
    running, _ = server
    recorder.status = 422
    recorder.media_type = "application/problem+json"
    recorder.body = {
        "status": 422,
        "code": "validation_error",
        "detail": "invalid request body",
        "errors": [{"field": "baseUrl", "message": "must be an http(s) URL\nwith a host"}],
    }
    completed = _run(
        str(folder_path("certified-connectors/JIRA")),
        "--gateway",
        running.url,
        "--token",
        "t",
        "--base-url",
        "nope",
    )
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [
        f"error: POST {running.url}/api/connectors/import: 422 validation_error: "
        "invalid request body",
        "  baseUrl: must be an http(s) URL with a host",
    ]


@pytest.mark.parametrize(
    ("status", "body", "media_type", "message"),
    [
        (
            401,
            {"status": 401, "code": "unauthenticated", "detail": "the bearer token has expired"},
            "application/problem+json",
            "401 unauthenticated: the bearer token has expired; mint a new token with "
            "`python -m functions token --user NAME` and pass it with --token or "
            "$GATEWAY_TOKEN (tokens expire after an hour)",
        ),
        (
            502,
            "<html>bad gateway</html>",
            "text/plain",
            "the gateway answered 502 Bad Gateway",
        ),
    ],
)
def test_other_failures_exit_1(
    server: tuple[ThreadedServer, Recorder],
    recorder: Recorder,
    status: int,
    body: Any,
    media_type: str,
    message: str,
) -> None:
    running, _ = server
    recorder.status, recorder.body, recorder.media_type = status, body, media_type
    completed = _run(
        str(folder_path("certified-connectors/JIRA")), "--gateway", running.url, "--token", "t"
    )
    assert completed.returncode == 1
    # The message names the request that failed.
    assert completed.stderr.splitlines() == [
        f"error: POST {running.url}/api/connectors/import: {message}"
    ]


def test_connection_refused_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    completed = _run(
        str(folder_path("certified-connectors/JIRA")), "--gateway", url, "--token", "t"
    )
    assert completed.returncode == 1
    (line,) = completed.stderr.splitlines()
    assert line.startswith(f"error: cannot connect to the gateway at {url}/api/connectors/import")
    assert "is it running (`make run`)?" in line and "GATEWAY_URL" in line


def test_unreadable_folders_exit_2_before_any_request(
    server: tuple[ThreadedServer, Recorder], recorder: Recorder, tmp_path: Path
) -> None:
    running, _ = server
    missing = tmp_path / "missing"
    completed = _run(str(missing), "--gateway", running.url, "--token", "t")
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [f"error: {missing}: no such folder"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "apiProperties.json").write_text("{}")
    completed = _run(str(empty), "--gateway", running.url, "--token", "t")
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [
        f"error: apiDefinition.swagger.json: not found in {empty}"
    ]
    assert recorder.requests == []


def test_without_any_token_source_it_explains(tmp_path: Path) -> None:
    completed = _run(
        str(folder_path("certified-connectors/JIRA")),
        "--gateway",
        "http://127.0.0.1:9",
        cwd=tmp_path,
    )
    assert completed.returncode == 1
    (line,) = completed.stderr.splitlines()
    assert line.startswith("error: no token: pass --token, set GATEWAY_TOKEN")


def test_token_and_user_are_exclusive() -> None:
    completed = _run("x", "--token", "t", "--user", "bob")
    assert completed.returncode == 2
    assert "not allowed with argument" in completed.stderr
