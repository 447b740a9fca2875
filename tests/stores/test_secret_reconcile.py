"""Issue 12: the cleanup job deletes secrets whose connection (or connector) row does not
exist, once they are older than the grace period, with Key Vault (the protocol double)
and with the local encrypted store. Secrets of live rows and names the gateway did not
write are left alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions import jobs
from functions.errors import SecretNotFoundError
from functions.services import connections as connections_module
from functions.services.ids import new_id
from functions.stores.secrets.local import generate_local_key
from tests.api.helpers import create_connection, create_connector
from tests.conftest import GatewayUnderTest
from tests.doubles.keyvault import KeyVaultDouble

LATER = datetime.now(UTC) + timedelta(hours=2)


def _exists(gateway: GatewayUnderTest, name: str) -> bool:
    try:
        asyncio.run(gateway.state.secrets.get_secret(name))
    except SecretNotFoundError:
        return False
    return True


def _reconcile(gateway: GatewayUnderTest, now: datetime) -> int:
    removed: int = asyncio.run(gateway.state.connections.reconcile_secrets(now=now))
    return removed


def _scenario(gateway: GatewayUnderTest, echo_url: str) -> None:
    secrets = gateway.state.secrets
    with gateway.client("reconciler") as client:
        connector = create_connector(
            client, echo_url, {"type": "apiKey", "in": "header", "name": "X-Key"}
        )
        live = create_connection(client, connector["id"], {"api_key": "live-" + new_id()})
    live_secret = f"conn-{live['id']}"
    # Left by a crashed create or delete: tagged as the gateway tags them.
    orphan = f"conn-{new_id()}"
    tags = {"connection": orphan[5:], "connector": connector["id"]}
    asyncio.run(secrets.set_secret(orphan, "left-behind-" + new_id(), tags=tags))
    # Another install's (its connector is not in our tables), and a foreign name.
    other_install = f"conn-{new_id()}"
    asyncio.run(secrets.set_secret(other_install, "theirs", tags={"connector": new_id()}))
    foreign = f"someone-else-{new_id()[:8]}"
    asyncio.run(secrets.set_secret(foreign, "not-ours"))

    # Within the grace period (a create may be in progress): nothing is touched.
    assert _reconcile(gateway, datetime.now(UTC)) == 0
    assert _exists(gateway, orphan)

    assert _reconcile(gateway, LATER) == 1
    assert not _exists(gateway, orphan)
    for kept in (live_secret, other_install, foreign):
        assert _exists(gateway, kept), kept
    with gateway.client("reconciler") as client:
        assert client.get(f"/api/connections/{live['id']}/invoke/x").status_code == 200


def test_orphaned_secrets_are_deleted_from_key_vault(start_gateway: Any, echo: Any) -> None:
    # A vault of its own: reconciling against this gateway's tables must not touch
    # the secrets other tests' gateways (other table prefixes) keep in the shared one.
    with KeyVaultDouble() as vault:
        gateway = start_gateway(key_vault_url=vault.url, key_vault_ca_file=vault.ca_file)
        _scenario(gateway, echo.url)
        assert vault.count("GET", "/secrets") >= 1


def test_orphaned_secrets_are_deleted_from_the_local_store(
    start_gateway: Any, echo: Any, tmp_path: Path
) -> None:
    gateway = start_gateway(
        secret_backend="local",
        key_vault_url=None,
        local_secret_key=generate_local_key(),
        local_secrets_dir=str(tmp_path / "secrets"),
    )
    _scenario(gateway, echo.url)


def test_the_cleanup_job_reconciles(
    start_gateway: Any, echo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = start_gateway(
        secret_backend="local",
        key_vault_url=None,
        local_secret_key=generate_local_key(),
        local_secrets_dir=str(tmp_path / "secrets"),
    )
    with gateway.client("job") as client:
        connector = create_connector(client, echo.url)
    orphan = f"conn-{new_id()}"
    tags = {"connection": orphan[5:], "connector": connector["id"]}
    asyncio.run(gateway.state.secrets.set_secret(orphan, "left-behind", tags=tags))
    monkeypatch.setattr(connections_module, "SECRET_GRACE", timedelta(0))
    assert asyncio.run(jobs.cleanup_connections(gateway.settings)) >= 1
    assert not _exists(gateway, orphan)
