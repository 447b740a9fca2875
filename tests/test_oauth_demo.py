"""`python -m functions dev --oauth-demo`: the OAuth playground end to end, as a user
tries it: the demo connector is there, consent at the local OpenID provider (driven
over HTTP as a browser would), invoke with the injected token, refresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from functions.devtools.processes import free_port
from tests.fixtures.oidc import OidcServer
from tests.test_local_runner import REPO, DevRun


def bearer(report: dict[str, Any]) -> str:
    (value,) = [v for k, v in report["headers"] if k.lower() == "authorization"]
    assert value.startswith("Bearer ")
    return str(value[7:])


def wait_for_demo_connector(client: httpx.Client, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            c for c in client.get("/api/connectors").json()["value"] if c["name"] == "OAuth demo"
        ]
        if found:
            return dict(found[0])
        time.sleep(0.2)
    raise AssertionError("the demo connector was not created")


def test_oauth_playground_consent_invoke_and_refresh(tmp_path: Path) -> None:
    port = free_port()
    run = DevRun(tmp_path, port, "--oauth-demo").wait_serving()
    try:
        with run.client() as client:
            connector = wait_for_demo_connector(client)
            issuer = connector["auth"]["settings"]["issuer"]
            demo_port = int(issuer.split(":")[2].split("/")[0])
            created = client.post(
                f"/api/connectors/{connector['id']}/connections", json={"displayName": "demo"}
            )
            assert created.status_code == 201, created.text
            connection = created.json()
            assert connection["status"] == "consent_required"
            assert connection["consentUrl"].startswith(f"{issuer}/auth?")

            # The browser's part: sign in as the demo user, consent, back to the gateway.
            provider = OidcServer(
                port=demo_port,
                ca_file=str(run.data_dir / "tls" / "oauth-demo-ca.pem"),
                process=None,  # type: ignore[arg-type]
            )
            callback = f"http://127.0.0.1:{port}/api/oauth/callback"
            result = provider.authorize(
                connection["consentUrl"], redirect_uri=callback, login="demo"
            )
            assert result.code, result
            with httpx.Client(trust_env=False, timeout=30) as browser:
                page = browser.get(callback, params=result.params)
            assert page.status_code == 200 and 'data-outcome="connected"' in page.text

            cid = connection["id"]
            assert client.get(f"/api/connections/{cid}").json()["status"] == "connected"
            first = client.get(f"/api/connections/{cid}/invoke/profile?x=1")
            assert first.status_code == 200, first.text
            report = first.json()
            assert report["path"] == "/profile" and report["query"] == "x=1"
            token = bearer(report)

            # Refresh: the job refreshes tokens expiring within its horizon (10 minutes).
            refreshed = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "functions",
                    "refresh-due",
                    "--settings-file",
                    str(run.settings_file),
                    "--data-dir",
                    str(run.data_dir),
                ],
                cwd=REPO,
                env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert refreshed.returncode == 0, refreshed.stderr
            assert "refreshed 1, failed 0" in refreshed.stdout
            # The gateway process sees the refreshed token once its metadata cache
            # (GATEWAY_METADATA_CACHE_SECONDS, 15 s in the sample) lets go of the old one.
            deadline = time.monotonic() + 60
            while bearer(client.get(f"/api/connections/{cid}/invoke/profile").json()) == token:
                assert time.monotonic() < deadline, "the refreshed token was never used"
                time.sleep(0.5)
    finally:
        run.stop()
    assert "OAuth demo: OpenID provider" in run.output and "sign in as 'demo'" in run.output
    assert "OAuth demo provider stopped" in run.output
    state = json.loads((run.data_dir / "stack.json").read_text())
    assert state["environment"]["GATEWAY_UPSTREAM_CA_FILE"].endswith("upstream-ca-bundle.pem")
