"""The OAuth playground of `python -m functions dev --oauth-demo` (development only).

Starts, beside the gateway:

* a local OpenID provider (node oidc-provider, `oidc_demo.mjs`) over HTTPS with this
  stack's own CA, one client registered with the gateway's callback URL, and the demo
  user `demo` (any password);
* an echo upstream (`echo.py`) standing for the protected API: it answers with the
  request it received, so the injected bearer token (and a new one after a refresh)
  can be seen;

and, once the gateway answers, creates or updates the connector "OAuth demo" (owner:
the development user alice) that ties them together. Trying it: create a connection to
that connector, open its consent URL, sign in as `demo`, then call
`/api/connections/{id}/invoke/anything`. Access tokens live 10 minutes and are refreshed
in their last 5 (or at once by `python -m functions refresh-due`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.devtools.azurite import REPO_ROOT
from functions.devtools.echo import EchoServer, start_echo
from functions.devtools.processes import free_port, stop_process, wait_for_ports
from functions.devtools.tls import issue_server_certificate

SERVER_JS = Path(__file__).resolve().parent / "oidc_demo.mjs"
DEMO_CONNECTOR_NAME = "OAuth demo"
DEMO_CLIENT_ID = "gateway-demo"
DEMO_USER = "demo"
DEMO_OWNER = "alice"
ACCESS_TOKEN_SECONDS = 600
CALLBACK_PATH = "/api/oauth/callback"


@dataclass
class OAuthDemo:
    process: subprocess.Popen[bytes]
    port: int
    ca_file: Path
    client_secret: str
    echo: EchoServer
    public_url: str

    @property
    def issuer(self) -> str:
        return f"https://127.0.0.1:{self.port}/oidc"

    def stop(self) -> None:
        self.echo.stop()
        stop_process(self.process)

    def connector_body(self) -> dict[str, Any]:
        return {
            "name": DEMO_CONNECTOR_NAME,
            "baseUrl": self.echo.url,
            "description": "OAuth playground: the local OpenID provider of `--oauth-demo` "
            f"(sign in as {DEMO_USER}, any password); the API echoes what it receives.",
            "auth": {
                "type": "oauth2",
                "provider": "generic-oidc",
                "clientId": DEMO_CLIENT_ID,
                "clientSecret": self.client_secret,
                "settings": {"issuer": self.issuer},
                "scopes": ["openid", "offline_access", "profile"],
            },
        }

    def ensure_demo_connector(self, gateway_url: str) -> None:
        """Create the demo connector for alice, or point the existing one at this run's
        provider (its port and client secret change with every start)."""
        import httpx

        from functions.cli.token import find_private_key
        from functions.identity.dev_issuer import mint_token

        key = find_private_key(REPO_ROOT)
        if key is None:
            raise RuntimeError("OAuth demo: no development issuer key to create the connector")
        headers = {"Authorization": f"Bearer {mint_token(key, user=DEMO_OWNER)}"}
        with httpx.Client(
            base_url=gateway_url, headers=headers, trust_env=False, timeout=60
        ) as http:
            listed = http.get("/api/connectors")
            listed.raise_for_status()
            existing = [c for c in listed.json()["value"] if c["name"] == DEMO_CONNECTOR_NAME]
            if existing:
                response = http.put(
                    f"/api/connectors/{existing[0]['id']}", json=self.connector_body()
                )
            else:
                response = http.post("/api/connectors", json=self.connector_body())
            if not response.is_success:
                raise RuntimeError(f"OAuth demo connector not saved: {response.text}")
            connector_id = response.json()["id"]
        print(
            f"OAuth demo connector ready: {connector_id} (owner {DEMO_OWNER}); "
            f"connect with: python -m functions connections create {connector_id} --name demo",
            flush=True,
        )

    def banner_lines(self) -> list[str]:
        return [
            f"OAuth demo: OpenID provider {self.issuer} (sign in as '{DEMO_USER}', any "
            f"password; CA {self.ca_file}), demo API {self.echo.url}",
            f"            connector '{DEMO_CONNECTOR_NAME}' for alice; README: OAuth playground",
        ]


def start_oauth_demo(data_dir: Path, public_url: str) -> OAuthDemo:
    """Start the provider and the echo API; the key `private_key` finds is used later."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH; the OAuth demo needs Node.js 20")
    if not (REPO_ROOT / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("oidc-provider is not installed; run `npm ci` (make bootstrap)")
    tls = issue_server_certificate(data_dir / "tls", "oauth-demo", ("127.0.0.1", "localhost"))
    port = free_port()
    client_secret = secrets.token_urlsafe(24)
    process = subprocess.Popen(  # noqa: S603 - fixed argument list
        [
            node,
            str(SERVER_JS),
            "--port",
            str(port),
            "--cert",
            str(tls.cert_file),
            "--key",
            str(tls.key_file),
            "--redirect-uri",
            public_url.rstrip("/") + CALLBACK_PATH,
            "--client-id",
            DEMO_CLIENT_ID,
            "--access-token-ttl",
            str(ACCESS_TOKEN_SECONDS),
        ],
        cwd=REPO_ROOT,
        # The client secret by environment: not in `ps` output.
        env={**os.environ, "OIDC_DEMO_CLIENT_SECRET": client_secret},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_ports([port], 30.0, process)
        echo = start_echo()
    except Exception:
        stop_process(process)
        raise
    return OAuthDemo(process, port, tls.ca_file, client_secret, echo, public_url)
