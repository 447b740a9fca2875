"""Test session: real components on free loopback ports, started here and stopped at the end.

- Azurite (tables, queues, blobs) from node_modules, in memory;
- the Key Vault protocol double over HTTPS (tests/doubles/keyvault.py), used by the real SDK;
- an echo upstream that reports exactly what it received (tests/doubles/echo.py);
- the gateway itself under uvicorn in a background thread, with its own table prefix.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from functions.app import create_app
from functions.devtools.azurite import AzuritePorts, start_azurite
from functions.devtools.processes import stop_process
from functions.identity.dev_issuer import generate_private_key_pem, mint_token
from functions.settings import DEV_AUDIENCE, DEV_TENANT_ID, Settings
from tests.doubles.echo import echo_app
from tests.servers import ThreadedServer

pytest_plugins = ["tests.fixtures.keyvault"]


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuritePorts]:
    ports = AzuritePorts.free()
    process = start_azurite(ports)
    yield ports
    stop_process(process)


@pytest.fixture(scope="session")
def echo() -> Iterator[ThreadedServer]:
    with ThreadedServer(echo_app) as server:
        yield server


@pytest.fixture(scope="session")
def dev_key() -> str:
    return generate_private_key_pem()


@dataclass
class GatewayUnderTest:
    """A running gateway and helpers to call it as a given user."""

    server: ThreadedServer
    settings: Settings
    dev_key: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> Any:
        """The live `functions.container.Gateway` (stores, counters)."""
        return self.server.config.app.state.gateway

    def token(self, user: str = "alice", **kwargs: Any) -> str:
        return mint_token(self.dev_key, user=user, **kwargs)

    def client(self, user: str | None = "alice", **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(user, **kwargs)}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, trust_env=False)


@pytest.fixture(scope="session")
def make_settings(azurite: AzuritePorts, keyvault_double: Any, dev_key: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        base = Settings(
            environment="development",
            storage_connection_string=azurite.connection_string(),
            table_prefix="t" + secrets.token_hex(4),
            secret_backend="keyvault",
            key_vault_url=keyvault_double.url,
            key_vault_ca_file=keyvault_double.ca_file,
            tenant_ids=(DEV_TENANT_ID,),
            audiences=(DEV_AUDIENCE,),
            dev_issuer_private_key=dev_key,
            upstream_timeout_seconds=5.0,
        )
        settings = replace(base, **overrides)
        settings.validate()
        return settings

    return make


@pytest.fixture(scope="session")
def start_gateway(make_settings: Callable[..., Settings], dev_key: str) -> Iterator[Callable[..., GatewayUnderTest]]:
    started: list[ThreadedServer] = []

    def start(**overrides: Any) -> GatewayUnderTest:
        settings = make_settings(**overrides)
        server = ThreadedServer(create_app(settings)).start()
        started.append(server)
        return GatewayUnderTest(server, settings, dev_key)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def gateway(start_gateway: Callable[..., GatewayUnderTest]) -> GatewayUnderTest:
    """The shared gateway (Key Vault double as secret store)."""
    return start_gateway()
