"""The command line as users meet it: help everywhere, a wrong flag answered with the
sub-command's usage, errors that name the URL and what to do, and the daily commands
(`connections create/list/delete`, `connectors export`, `connectors import` warnings)
run as real subprocesses against the test session's gateway."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from functions.cli import build_parser
from functions.devtools.processes import free_port
from tests.conftest import GatewayUnderTest
from tests.doubles.echo import header_values

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> Any:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "functions", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def gateway_env(gateway: GatewayUnderTest, user: str) -> dict[str, str]:
    return {"GATEWAY_URL": gateway.url, "GATEWAY_TOKEN": gateway.token(user)}


def all_parsers(
    parser: argparse.ArgumentParser,
) -> list[tuple[argparse.ArgumentParser, argparse._SubParsersAction[Any] | None]]:
    found: list[tuple[argparse.ArgumentParser, Any]] = [(parser, None)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += [(p, s or action) for p, s in all_parsers(child)]
    return found


def test_every_command_and_option_has_help() -> None:
    root = build_parser()
    missing = []
    for parser, _ in all_parsers(root):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                missing += [
                    f"{parser.prog} {name}" for name in action.choices if not helps.get(name)
                ]
                continue
            if not action.help:
                missing.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []
    # The daily commands are there.
    names = {parser.prog for parser, _ in all_parsers(root)}
    for command in (
        "connections create",
        "connections list",
        "connections delete",
        "connectors export",
        "connectors import",
    ):
        assert f"python -m functions {command}" in names


@pytest.mark.parametrize(
    "argv",
    [
        ("connections", "list", "--bogus"),
        ("connectors", "import", "DIR", "--nope"),
        ("dev", "--oauth-demo", "--wrong"),
    ],
)
def test_a_wrong_flag_shows_the_sub_commands_usage(argv: tuple[str, ...]) -> None:
    completed = run_cli(*argv)
    assert completed.returncode == 2
    command = " ".join(a for a in argv if not a.startswith("-") and a != "DIR")
    assert completed.stderr.startswith(f"usage: python -m functions {command} ")
    assert f"python -m functions {command}: error: unrecognized arguments: {argv[-1]}" in (
        completed.stderr
    )


def test_connections_create_list_delete(gateway: GatewayUnderTest, echo: Any) -> None:
    env = gateway_env(gateway, "cli-daily")
    with gateway.client("cli-daily") as client:
        connector = client.post(
            "/api/connectors",
            json={
                "name": "Echo",
                "baseUrl": echo.url,
                "auth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        ).json()
    created = run_cli(
        "connections",
        "create",
        connector["id"],
        "--name",
        "from the cli",
        "--secret-param",
        "api_key=env:ECHO_KEY",
        env={**env, "ECHO_KEY": "k-from-env-1"},
    )
    assert created.returncode == 0, created.stderr
    connection = json.loads(created.stdout)
    assert connection["displayName"] == "from the cli"
    assert connection["parametersSet"] == ["api_key"] and "k-from-env-1" not in created.stdout
    with gateway.client("cli-daily") as client:
        report = client.get(f"/api/connections/{connection['id']}/invoke/x").json()
    assert header_values(report, "x-api-key") == ["k-from-env-1"]

    listed = run_cli("connections", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["ID", "STATUS", "CONNECTOR", "NAME"]
    assert connection["id"] in listed.stdout and "from the cli" in listed.stdout
    as_json = run_cli("connections", "list", "--json", env=env)
    assert [c["id"] for c in json.loads(as_json.stdout)] == [connection["id"]]

    deleted = run_cli("connections", "delete", connection["id"], env=env)
    assert deleted.returncode == 0 and connection["id"] in deleted.stdout
    assert json.loads(run_cli("connections", "list", "--json", env=env).stdout) == []
    # Refusals name the request that was refused.
    unknown = run_cli("connections", "create", "0" * 32, "--name", "x", env=env)
    assert unknown.returncode == 1
    assert f"POST {gateway.url}/api/connectors/{'0' * 32}/connections: 404" in unknown.stderr


def test_secret_parameters_come_from_files_or_variables_only(
    gateway: GatewayUnderTest, tmp_path: Path
) -> None:
    env = gateway_env(gateway, "cli-secrets")
    missing = run_cli(
        "connections", "create", "c1", "--name", "x", "--secret-param", "api_key=s3cret", env=env
    )
    assert missing.returncode == 2
    assert "expected file:PATH or env:NAME" in missing.stderr and "s3cret" not in missing.stderr
    unset = run_cli(
        "connections", "create", "c1", "--name", "x", "--secret-param", "k=env:NOPE_1", env=env
    )
    assert unset.returncode == 2 and "environment variable NOPE_1 is not set" in unset.stderr


def test_errors_name_the_url_and_what_to_do(gateway: GatewayUnderTest) -> None:
    refused_url = f"http://127.0.0.1:{free_port()}"
    refused = run_cli("connections", "list", "--gateway", refused_url, "--token", "t")
    assert refused.returncode == 1
    (line,) = refused.stderr.splitlines()
    assert f"cannot connect to the gateway at {refused_url}/api/connections" in line
    assert "make run" in line and "--gateway" in line and "GATEWAY_URL" in line

    from functions.identity.dev_issuer import generate_private_key_pem, mint_token

    # Signed by another key, as a token from an old checkout's local.settings.json is.
    stale = mint_token(generate_private_key_pem(), user="cli-stale")
    unauthorized = run_cli("connections", "list", "--gateway", gateway.url, "--token", stale)
    assert unauthorized.returncode == 1
    (line,) = unauthorized.stderr.splitlines()
    assert f"GET {gateway.url}/api/connections: 401" in line
    assert "mint a new token with `python -m functions token --user NAME`" in line

    not_gateway = run_cli("connections", "list", "--gateway", gateway.url + "/nope", "--token", "t")
    assert not_gateway.returncode == 1 and "Check --gateway" in not_gateway.stderr


def write_folder(folder: Path, policies: list[dict[str, Any]]) -> Path:
    folder.mkdir()
    definition = {
        "swagger": "2.0",
        "info": {"title": "Polling API", "version": "1.0"},
        "host": "api.example.com",
        "basePath": "/",
        "schemes": ["https"],
        "paths": {
            "/items": {
                "get": {"operationId": "ListItems", "responses": {"200": {"description": "ok"}}}
            },
            "/other": {
                "get": {"operationId": "Other", "responses": {"200": {"description": "ok"}}}
            },
        },
    }
    properties = {"properties": {"connectionParameters": {}, "policyTemplateInstances": policies}}
    (folder / "apiDefinition.swagger.json").write_text(json.dumps(definition))
    (folder / "apiProperties.json").write_text(json.dumps(properties))
    return folder


POLL_ALL = {"templateId": "pollingtrigger", "title": "Poll", "parameters": {}}


def test_import_warnings_on_stderr_and_refusal_when_nothing_can_run(
    gateway: GatewayUnderTest, tmp_path: Path
) -> None:
    env = gateway_env(gateway, "cli-import-partial")
    folder = write_folder(tmp_path / "poll", [POLL_ALL])
    refused = run_cli("connectors", "import", str(folder), env=env)
    assert refused.returncode == 2
    assert refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert lines[0].startswith("warning: policy 1 'pollingtrigger' (Poll) is not supported")
    assert lines[-1].startswith("error: no operation of this connector can run at the gateway")
    assert "deleted again" in lines[-1] and "--allow-partial" in lines[-1]
    with gateway.client("cli-import-partial") as client:
        assert client.get("/api/connectors").json()["value"] == []

    kept = run_cli("connectors", "import", str(folder), "--allow-partial", env=env)
    assert kept.returncode == 0, kept.stderr
    connector = json.loads(kept.stdout)
    assert connector["definition"]["runnableOperations"] == 0
    assert [b["operationId"] for b in connector["definition"]["blockedOperations"]] == [
        "ListItems",
        "Other",
    ]
    assert kept.stderr.startswith("warning: policy 1 'pollingtrigger'")

    # One operation blocked, the other runs: imported, with the warning.
    only_one = write_folder(
        tmp_path / "one",
        [{**POLL_ALL, "parameters": {"x-ms-apimTemplate-operationName": ["Other"]}}],
    )
    partial = run_cli("connectors", "import", str(only_one), env=env)
    assert partial.returncode == 0, partial.stderr
    assert json.loads(partial.stdout)["definition"]["runnableOperations"] == 1
    assert partial.stderr.count("warning: ") == 1


def test_imported_connector_shows_its_auth_options(gateway: GatewayUnderTest) -> None:
    from tests.powerplatform.samples import folder_path

    env = gateway_env(gateway, "cli-import-auth")
    imported = run_cli(
        "connectors", "import", str(folder_path("certified-connectors/JIRA")), env=env
    )
    assert imported.returncode == 0, imported.stderr
    connector = json.loads(imported.stdout)
    assert connector["auth"]["type"] == "powerplatform"
    assert connector["auth"]["options"] == connector["definition"]["authOptions"]
    assert connector["auth"]["options"][0]["type"] == "basic"
    with gateway.client("cli-import-auth") as client:
        again = client.get(f"/api/connectors/{connector['id']}").json()
    assert again["auth"] == connector["auth"]


def test_connectors_export_writes_the_pair(gateway: GatewayUnderTest, tmp_path: Path) -> None:
    env = gateway_env(gateway, "cli-export")
    folder = write_folder(tmp_path / "plain", [])
    connector = json.loads(run_cli("connectors", "import", str(folder), env=env).stdout)
    out = tmp_path / "out"
    exported = run_cli("connectors", "export", connector["id"], "--out", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    summary = json.loads(exported.stdout)
    definition = json.loads((out / "apiDefinition.swagger.json").read_text())
    properties = json.loads((out / "apiProperties.json").read_text())
    # Hosted at the gateway's public URL (the test gateway's GATEWAY_PUBLIC_BASE_URL).
    assert definition["host"] == "gateway.example.test" == summary["host"]
    assert {op["get"]["operationId"] for op in definition["paths"].values()} >= {
        "ListItems",
        "Other",
    }
    assert summary["clientIdPlaceholder"] is True
    assert "placeholder client id" in exported.stderr and "--client-id" in exported.stderr

    again = run_cli("connectors", "export", connector["id"], "--out", str(out), env=env)
    assert again.returncode == 2 and "--force" in again.stderr
    with_client = run_cli(
        "connectors",
        "export",
        connector["id"],
        "--out",
        str(out),
        "--force",
        "--client-id",
        "11111111-2222-3333-4444-555555555555",
        env=env,
    )
    assert with_client.returncode == 0, with_client.stderr
    assert json.loads(with_client.stdout)["clientIdPlaceholder"] is False
    assert with_client.stderr == ""
    settings = json.loads((out / "apiProperties.json").read_text())["properties"][
        "connectionParameters"
    ]["token"]["oAuthSettings"]
    assert settings["clientId"] == "11111111-2222-3333-4444-555555555555"
    assert properties != json.loads((out / "apiProperties.json").read_text())
