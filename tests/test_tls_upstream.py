"""`make run TLS_UPSTREAM=host` (`python -m functions dev --tls-upstream HOST`): an HTTPS
echo with its own CA stands in for a host a definition fixes, and an imported connector
reaches it unchanged (Host and TLS name kept)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from functions.devtools.processes import free_port
from tests.powerplatform.samples import folder_path
from tests.test_local_runner import REPO, DevRun

JIRA_SITE = "tenant1.atlassian.net"


def test_fixed_host_connector_reaches_the_tls_echo(tmp_path: Path) -> None:
    port = free_port()
    run = DevRun(tmp_path, port, "--tls-upstream", JIRA_SITE).wait_serving()
    try:
        with run.client() as client:
            token = client.headers["Authorization"].removeprefix("Bearer ")
            # The documented command: the JIRA definition imported unchanged.
            imported = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "functions",
                    "connectors",
                    "import",
                    str(folder_path("certified-connectors/JIRA")),
                ],
                cwd=REPO,
                env={
                    **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
                    "GATEWAY_URL": f"http://127.0.0.1:{port}",
                    "GATEWAY_TOKEN": token,
                },
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert imported.returncode == 0, imported.stderr
            connector = json.loads(imported.stdout)
            created = client.post(
                f"/api/connectors/{connector['id']}/connections",
                json={
                    "displayName": "jira",
                    "parameters": {
                        "jirainstance": "tenant1",
                        "username": "j@x.io",
                        "password": "jira-pw-1",
                    },
                },
            )
            assert created.status_code == 201, created.text
            response = client.post(
                f"/api/connections/{created.json()['id']}/invoke/issue?projectKey=P",
                json={"fields": {}},
            )
            assert response.status_code == 200, response.text
            report = response.json()
    finally:
        run.stop()
    assert report["scheme"] == "https" and report["host"] == JIRA_SITE
    assert report["path"] == "/rest/api/2/issue" and report["query"] == "projectKey=P"
    authorization = [v for k, v in report["headers"] if k == "authorization"]
    assert authorization == ["Basic " + base64.b64encode(b"j@x.io:jira-pw-1").decode()]
    assert f"calls to https://{JIRA_SITE} go to the HTTPS echo" in run.output
    state = json.loads((run.data_dir / "stack.json").read_text())
    assert state["environment"]["GATEWAY_DEV_UPSTREAM_RESOLVE"].startswith(
        f"{JIRA_SITE}:443=127.0.0.1:"
    )
    assert "TLS echo upstream stopped" in run.output


def test_tls_upstream_refuses_what_is_not_a_host_name(tmp_path: Path) -> None:
    run = DevRun(tmp_path, free_port(), "--tls-upstream", "evil/host").wait_exit()
    assert run.process.returncode == 1
    assert "--tls-upstream takes a host name" in run.errors
    assert "Traceback" not in run.errors
