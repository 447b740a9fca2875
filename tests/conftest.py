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
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from functions.app import create_app
from functions.devtools.azurite import AzuritePorts, start_azurite
from functions.devtools.processes import stop_process
from functions.identity.dev_issuer import generate_private_key_pem, mint_token
from functions.settings import DEV_AUDIENCE, DEV_TENANT_ID, Settings
from tests.doubles.echo import echo_app
from tests.servers import ThreadedServer

pytest_plugins = ["tests.fixtures.keyvault", "tests.fixtures.oidc"]


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


# A host a real definition fixes (JIRA: https://@connectionParameters('jirainstance').atlassian.net),
# sent to the TLS echo through GATEWAY_DEV_UPSTREAM_RESOLVE.
JIRA_SITE = "tenant1.atlassian.net"


@dataclass
class TlsEcho:
    server: ThreadedServer
    ca_file: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@pytest.fixture(scope="session")
def tls_echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEcho]:
    """The echo upstream over HTTPS, with its own CA (for https-only definitions)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", JIRA_SITE)
    folder = tmp_path_factory.mktemp("tls-echo")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    with ThreadedServer(echo_app, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as server:
        yield TlsEcho(server, str(ca_file))


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
def make_settings(
    azurite: AzuritePorts,
    keyvault_double: Any,
    dev_key: str,
    tls_echo: TlsEcho,
    oidc_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Settings]:
    # Upstream TLS trusts both test CAs: the HTTPS echo and the OAuth server.
    bundle = tmp_path_factory.mktemp("upstream-ca") / "ca.pem"
    bundle.write_text(Path(tls_echo.ca_file).read_text() + Path(oidc_server.ca_file).read_text())

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
            public_base_url="https://gateway.example.test",
            upstream_ca_file=str(bundle),
            dev_upstream_resolve=f"{JIRA_SITE}:443=127.0.0.1:{tls_echo.server.port}",
            # Every test upstream (echo, oidc-provider) listens on loopback, which the
            # outbound address policy refuses unless told otherwise (issue 12).
            egress_allow_loopback=True,
        )
        settings = replace(base, **overrides)
        settings.validate()
        return settings

    return make


@pytest.fixture(scope="session")
def start_gateway(
    make_settings: Callable[..., Settings], dev_key: str
) -> Iterator[Callable[..., GatewayUnderTest]]:
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


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make `Settings.from_env()` give `settings`
    (for gateways run in other processes, or under the Functions host)."""
    env = {
        "GATEWAY_ENVIRONMENT": settings.environment,
        "GATEWAY_STORAGE_CONNECTION_STRING": settings.storage_connection_string or "",
        "GATEWAY_TABLE_PREFIX": settings.table_prefix,
        "GATEWAY_SECRET_STORE": settings.secret_backend,
        "GATEWAY_KEY_VAULT_URL": settings.key_vault_url or "",
        "GATEWAY_KEY_VAULT_CA_FILE": settings.key_vault_ca_file or "",
        "GATEWAY_AUTH_TENANT_IDS": ",".join(settings.tenant_ids),
        "GATEWAY_AUTH_AUDIENCES": ",".join(settings.audiences),
        "GATEWAY_DEV_ISSUER_PRIVATE_KEY": settings.dev_issuer_private_key or "",
        "GATEWAY_UPSTREAM_CA_FILE": settings.upstream_ca_file or "",
        "GATEWAY_DEV_UPSTREAM_RESOLVE": settings.dev_upstream_resolve or "",
        "GATEWAY_PUBLIC_BASE_URL": settings.public_base_url or "",
        "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": str(settings.upstream_timeout_seconds),
        "GATEWAY_METADATA_CACHE_SECONDS": str(settings.metadata_cache_seconds),
        "GATEWAY_EGRESS_ALLOW_LOOPBACK": str(settings.egress_allow_loopback).lower(),
        "GATEWAY_EGRESS_ALLOW": ",".join(settings.egress_allow),
    }
    return env
