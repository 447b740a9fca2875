"""Deleting a GitHub connection deletes the user's grant at GitHub (issue 18): the catalog's
static `revocationUrl` (`DELETE https://api.github.com/applications/{client_id}/grant`,
Basic client auth, JSON access token), end to end through the gateway. github.com and
api.github.com are the GitHub-like double over HTTPS, reached through
GATEWAY_DEV_UPSTREAM_RESOLVE with a test CA: the gateway uses the catalog's real URLs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

from tests.conftest import GatewayUnderTest
from tests.doubles.echo import header_values
from tests.doubles.oidc.github_like import CLIENT_ID, CLIENT_SECRET, GitHubLikeProvider
from tests.servers import ThreadedServer


@pytest.fixture(scope="module")
def github_tls(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GitHubLikeProvider, ThreadedServer, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("github.com", "api.github.com")
    folder = tmp_path_factory.mktemp("github")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    double = GitHubLikeProvider()
    with ThreadedServer(
        double.app, interface="asgi3", ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)
    ) as server:
        yield double, server, ca_file


def test_deleting_a_github_connection_deletes_the_grant_at_github(
    start_gateway: Any, github_tls: Any, echo: Any, tmp_path: Path
) -> None:
    double, server, ca_file = github_tls
    port = server.port
    gateway: GatewayUnderTest = start_gateway(
        upstream_ca_file=str(ca_file),
        dev_upstream_resolve=(
            f"github.com:443=127.0.0.1:{port},api.github.com:443=127.0.0.1:{port}"
        ),
    )
    with gateway.client("gh-user") as client:
        connector = client.post(
            "/api/connectors",
            json={
                "name": "GitHub",
                "baseUrl": echo.url,
                "auth": {
                    "type": "oauth2",
                    "provider": "github",
                    "clientId": CLIENT_ID,
                    "clientSecret": CLIENT_SECRET,
                    "scopes": ["repo"],
                },
            },
        )
        assert connector.status_code == 201, connector.text
        created = client.post(
            f"/api/connectors/{connector.json()['id']}/connections", json={"displayName": "gh"}
        )
        assert created.status_code == 201, created.text
        consent_url = created.json()["consentUrl"]
        assert consent_url.startswith("https://github.com/login/oauth/authorize?")
        state = parse_qs(urlsplit(consent_url).query)["state"][0]
        # GitHub's consent page is not part of the double: it issues the code directly.
        with gateway.client(user=None) as anonymous:
            page = anonymous.get(
                "/api/oauth/callback", params={"code": double.issue_code("mona"), "state": state}
            )
        assert 'data-outcome="connected"' in page.text, page.text
        cid = created.json()["id"]
        report = client.get(f"/api/connections/{cid}/invoke/user").json()
        (authorization,) = header_values(report, "authorization")
        access_token = authorization.split(" ", 1)[1]
        assert double.access_tokens[access_token] == "mona"

        assert client.delete(f"/api/connections/{cid}").status_code == 204

    deletes = [r for r in double.requests if r.get("method") == "DELETE"]
    assert len(deletes) == 1 and deletes[0]["path"] == f"/applications/{CLIENT_ID}/grant"
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert deletes[0]["headers"]["authorization"] == f"Basic {expected}"
    assert int(deletes[0]["headers"].get("content-length", "0")) > 0  # the JSON token
    assert double.revoked_users == ["mona"]
    assert access_token not in double.access_tokens  # the grant is gone at "GitHub"
    assert "mona" not in double.refresh_tokens.values()
