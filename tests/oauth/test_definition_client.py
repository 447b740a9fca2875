"""An imported definition's own OAuth client (issue 18): its `clientId` is used unless it
is a placeholder, and its secret is accepted at import (JSON field, multipart field, CLI
`--client-secret-from`), end to end through the gateway against node oidc-provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from functions.powerplatform.auth import is_placeholder_client_id
from tests.api.helpers import assert_problem
from tests.api.storage_scan import all_table_text
from tests.conftest import GatewayUnderTest
from tests.doubles.echo import header_values
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET, GATEWAY_REDIRECT_URI
from tests.powerplatform.samples import folder_path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "connectors"


def definition_pair(oidc: Any, client_id: str) -> dict[str, Any]:
    """A custom connector as makers write them: `oauth2` with its own client id."""
    api_definition = {
        "swagger": "2.0",
        "info": {"title": "Own client API", "version": "1.0"},
        "host": "api.example.com",
        "basePath": "/",
        "schemes": ["https"],
        "securityDefinitions": {
            "oauth2-auth": {
                "type": "oauth2",
                "flow": "accessCode",
                "authorizationUrl": oidc.authorization_url,
                "tokenUrl": oidc.token_url,
                "scopes": {},
            }
        },
        "security": [{"oauth2-auth": []}],
        "paths": {
            "/me": {"get": {"operationId": "GetMe", "responses": {"200": {"description": "ok"}}}}
        },
    }
    settings = {
        "identityProvider": "oauth2",
        "clientId": client_id,
        "scopes": ["openid", "offline_access"],
        "redirectMode": "Global",
        "customParameters": {
            "authorizationUrl": {"value": oidc.authorization_url},
            "tokenUrl": {"value": oidc.token_url},
            "refreshUrl": {"value": oidc.token_url},
        },
    }
    properties = {
        "connectionParameters": {"token": {"type": "oauthSetting", "oAuthSettings": settings}}
    }
    return {"apiDefinition": api_definition, "apiProperties": {"properties": properties}}


def create_connection(client: httpx.Client, connector_id: str) -> httpx.Response:
    return client.post(f"/api/connectors/{connector_id}/connections", json={"displayName": "own"})


def consent_and_invoke(
    gateway: GatewayUnderTest, client: httpx.Client, oidc: Any, connection: dict[str, Any]
) -> str:
    result = oidc.authorize(connection["consentUrl"], redirect_uri=GATEWAY_REDIRECT_URI)
    with gateway.client(user=None) as anonymous:
        page = anonymous.get("/api/oauth/callback", params=result.params)
    assert 'data-outcome="connected"' in page.text, page.text
    report = client.get(f"/api/connections/{connection['id']}/invoke/me").json()
    (value,) = header_values(report, "authorization")
    assert value.startswith("Bearer ")
    return value[7:]


def test_definition_client_id_and_secret_given_at_import_as_json(
    gateway: GatewayUnderTest, oidc: Any, echo: Any, keyvault_double: Any
) -> None:
    with gateway.client("own-client-json") as client:
        response = client.post(
            "/api/connectors/import",
            json={
                **definition_pair(oidc, CLIENT_ID),
                "baseUrl": echo.url,
                "clientSecret": CLIENT_SECRET,
            },
        )
        assert response.status_code == 201, response.text
        assert CLIENT_SECRET not in response.text  # write-only
        connector = response.json()
        assert connector["oauthClient"]["clientId"] == CLIENT_ID
        assert connector["oauthClient"]["clientSecretSet"] is True
        assert CLIENT_SECRET not in client.get(f"/api/connectors/{connector['id']}").text

        created = create_connection(client, connector["id"])
        assert created.status_code == 201, created.text
        query = parse_qs(urlsplit(created.json()["consentUrl"]).query)
        assert query["client_id"] == [CLIENT_ID]  # the definition's own client
        # The code exchange authenticates with the secret given at import (the provider
        # refuses the client without it).
        assert consent_and_invoke(gateway, client, oidc, created.json())
        assert oidc.token_requests("authorization_code", 200) == 1
    assert CLIENT_SECRET in keyvault_double.raw_values()
    assert CLIENT_SECRET not in all_table_text(gateway.settings)


def test_secret_as_a_multipart_field(
    gateway: GatewayUnderTest, oidc: Any, echo: Any, keyvault_double: Any
) -> None:
    pair = definition_pair(oidc, CLIENT_ID)
    with gateway.client("own-client-multipart") as client:
        response = client.post(
            "/api/connectors/import",
            files={
                "apiDefinition": ("apiDefinition.swagger.json", json.dumps(pair["apiDefinition"])),
                "apiProperties": ("apiProperties.json", json.dumps(pair["apiProperties"])),
            },
            data={"baseUrl": echo.url, "clientSecret": CLIENT_SECRET},
        )
        assert response.status_code == 201, response.text
        assert CLIENT_SECRET not in response.text
        connector = response.json()
        assert connector["oauthClient"]["clientSecretSet"] is True
        created = create_connection(client, connector["id"])
        assert consent_and_invoke(gateway, client, oidc, created.json())


def test_definition_client_id_without_a_secret_is_used_as_a_public_client(
    gateway: GatewayUnderTest, oidc: Any, echo: Any
) -> None:
    """No secret at import: the client id still counts (no 409), as for a public client."""
    with gateway.client("own-client-public") as client:
        response = client.post(
            "/api/connectors/import",
            json={**definition_pair(oidc, "my-own-client-7f3a"), "baseUrl": echo.url},
        )
        assert response.status_code == 201, response.text
        assert response.json().get("oauthClient") is None
        created = create_connection(client, response.json()["id"])
        assert created.status_code == 201, created.text
        query = parse_qs(urlsplit(created.json()["consentUrl"]).query)
        assert query["client_id"] == ["my-own-client-7f3a"]


def test_placeholder_client_id_keeps_the_409_and_refuses_a_secret(
    gateway: GatewayUnderTest, oidc: Any, echo: Any, keyvault_double: Any
) -> None:
    with gateway.client("own-client-placeholder") as client:
        before = client.get("/api/connectors").json()["value"]
        refused = client.post(
            "/api/connectors/import",
            json={
                **definition_pair(oidc, "[[CLIENT ID]]"),
                "baseUrl": echo.url,
                "clientSecret": "not-stored-anywhere-5e1",
            },
        )
        problem = assert_problem(refused, 422, "validation_error")
        assert [e["field"] for e in problem["errors"]] == ["clientSecret"]
        assert "not-stored-anywhere-5e1" not in refused.text
        assert client.get("/api/connectors").json()["value"] == before  # nothing stored
        assert "not-stored-anywhere-5e1" not in keyvault_double.raw_values()

        imported = client.post(
            "/api/connectors/import",
            json={**definition_pair(oidc, "[[CLIENT ID]]"), "baseUrl": echo.url},
        )
        assert imported.status_code == 201, imported.text
        assert_problem(
            create_connection(client, imported.json()["id"]), 409, "oauth_client_not_configured"
        )


def _sample_client_ids() -> list[tuple[str, str]]:
    found = []
    for path in sorted(FIXTURES.glob("*/*/apiProperties.json")):
        text = path.read_text(encoding="utf-8-sig")
        for key, value in _walk(json.loads(text)):
            if key.lower() == "clientid" and isinstance(value, str):
                found.append((path.parent.parent.name, value))
    return found


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_placeholder_forms_of_the_sample_connectors() -> None:
    """Certified connectors ship placeholders (their publisher's client is configured by
    Microsoft); custom connectors name their real app registration."""
    samples = _sample_client_ids()
    certified = [v for kind, v in samples if kind == "certified-connectors"]
    custom = [v for kind, v in samples if kind == "custom-connectors"]
    assert len(certified) >= 8 and len(custom) >= 2
    assert [v for v in certified if not is_placeholder_client_id(v)] == []
    assert [v for v in custom if is_placeholder_client_id(v)] == []
    for placeholder in (
        "",
        "   ",
        "00000000-0000-0000-0000-000000000000",
        "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
        "${CLIENT_ID}",
        "%CLIENT_ID%",
        "<client id>",
        "[YOUR_CLIENT_ID]",
        "{{CLIENT_ID}}",
    ):
        assert is_placeholder_client_id(placeholder), placeholder
    for real in (
        "Iv1.8a61f9b3a7aba766",
        "0oa1b2c3d4E5f6G7h8i9",
        "3MVG9A2kN3Bn17hs8MIaQx1voVGy",
        "17f621fe-a550-47a9-b1e4-e7ec2105e472",
        "gateway",
    ):
        assert not is_placeholder_client_id(real), real


@pytest.mark.parametrize("source", ["env", "file"])
def test_cli_reads_the_secret_from_a_file_or_the_environment(
    gateway: GatewayUnderTest,
    oidc: Any,
    echo: Any,
    keyvault_double: Any,
    tmp_path: Path,
    source: str,
) -> None:
    folder = tmp_path / "own-client"
    folder.mkdir()
    pair = definition_pair(oidc, CLIENT_ID)
    (folder / "apiDefinition.swagger.json").write_text(json.dumps(pair["apiDefinition"]))
    (folder / "apiProperties.json").write_text(json.dumps(pair["apiProperties"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if source == "env":
        env["OWN_CLIENT_SECRET"] = CLIENT_SECRET
        where = "env:OWN_CLIENT_SECRET"
    else:
        secret_file = tmp_path / "secret.txt"
        secret_file.write_text(CLIENT_SECRET + "\n")
        where = f"file:{secret_file}"
    command = [
        sys.executable,
        "-m",
        "functions",
        "connectors",
        "import",
        str(folder),
        "--base-url",
        echo.url,
        "--gateway",
        gateway.url,
        "--token",
        gateway.token(f"own-client-cli-{source}"),
        "--client-secret-from",
        where,
    ]
    assert CLIENT_SECRET not in " ".join(command)  # never on the command line
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["oauthClient"] == {**created["oauthClient"], "clientSecretSet": True}
    assert CLIENT_SECRET not in done.stdout + done.stderr
    with gateway.client(f"own-client-cli-{source}") as client:
        connection = create_connection(client, created["id"]).json()
        assert consent_and_invoke(gateway, client, oidc, connection)


def test_cli_refuses_a_secret_given_on_the_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    folder = folder_path("custom-connectors/Snowflake")
    for where, expected in (
        ("s3cr3t-value", "takes file:PATH or env:NAME"),
        ("env:SURELY_NOT_SET_18", "SURELY_NOT_SET_18 is not set"),
        (f"file:{tmp_path / 'missing'}", "cannot be read"),
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "functions",
                "connectors",
                "import",
                str(folder),
                "--gateway",
                "http://127.0.0.1:9",
                "--token",
                "t",
                "--client-secret-from",
                where,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert "s3cr3t-value" not in done.stderr
