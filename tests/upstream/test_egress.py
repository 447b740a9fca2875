"""Issue 12, attack 2: no egress control.

The outbound address policy refuses loopback (in any spelling), private, shared,
link-local, metadata and other special addresses, and the gateway itself, for every
client that calls out on a connector's behalf (data plane, OAuth control plane,
msal's requests). Refusals happen before any connection: destinations other than
127.0.0.1 are only ever *named* here, through resolvers that map test host names to
them, and a listening socket proves that nothing connected.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from functions.errors import ConfigurationError, EgressDeniedError, ValidationFailedError
from functions.settings import Settings
from functions.upstream.client import control_plane_client, data_plane_client
from functions.upstream.egress import (
    EgressPolicy,
    address_denial,
    canonical_host,
    parse_allow_entry,
)
from functions.upstream.egress_clients import egress_requests_adapter
from tests.api.helpers import assert_problem
from tests.conftest import GatewayUnderTest
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET, GATEWAY_REDIRECT_URI
from tests.upstream.helpers import connect, dynamic_host, import_connector
from tests.upstream.rawserver import RawServer

DENIED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "169.254.1.1",
    "168.63.129.16",
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "240.0.0.1",
    "198.18.0.1",
    "192.0.2.1",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::127.0.0.1",
    "64:ff9b::a00:1",
    "2002:7f00:1::1",
    "2001:0:4136:e378::1",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "2001:db8::1",
]
ALLOWED = ["93.184.215.14", "20.190.160.1", "2606:4700:4700::1111", "2a01:111:f100::1"]


@pytest.mark.parametrize("text", DENIED)
def test_special_addresses_are_denied(text: str) -> None:
    assert address_denial(ipaddress.ip_address(text)) is not None


@pytest.mark.parametrize("text", ALLOWED)
def test_public_addresses_are_allowed(text: str) -> None:
    assert address_denial(ipaddress.ip_address(text)) is None


def test_metadata_addresses_are_named_as_such() -> None:
    for text in ("169.254.169.254", "fd00:ec2::254"):
        assert "metadata" in (address_denial(ipaddress.ip_address(text)) or "")
    assert "wireserver" in (address_denial(ipaddress.ip_address("168.63.129.16")) or "")


def test_allow_rules_cidrs_pairs_and_loopback() -> None:
    policy = EgressPolicy.from_settings(
        ["10.1.0.0/16", "api.internal:8443", "[fd12::1]:443"],
        allow_loopback=False,
        development=False,
        public_base_url="https://gw.example.com",
    )
    assert policy.denial("x", ipaddress.ip_address("10.1.2.3"), 80) is None
    assert policy.denial("x", ipaddress.ip_address("10.2.0.1"), 80) is not None
    assert policy.denial("api.internal", ipaddress.ip_address("10.9.9.9"), 8443) is None
    assert policy.denial("api.internal", ipaddress.ip_address("10.9.9.9"), 443) is not None
    assert policy.denial("y", ipaddress.ip_address("fd12::1"), 443) is None
    assert policy.denial("y", ipaddress.ip_address("127.0.0.1"), 80) is not None
    assert (
        EgressPolicy(allow_loopback=True).denial("y", ipaddress.ip_address("127.0.0.1"), 80) is None
    )
    # Loopback allowance covers loopback only, not its mapped forms or private space.
    loopback_only = EgressPolicy(allow_loopback=True)
    for text in ("::ffff:127.0.0.1", "10.0.0.1", "169.254.169.254"):
        assert loopback_only.denial("y", ipaddress.ip_address(text), 80) is not None
    with pytest.raises(EgressDeniedError) as looped:
        policy.check_name("GW.example.com.", 443)
    assert looped.value.code == "loop_detected"


def test_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "GATEWAY_ENVIRONMENT": "development",
            "GATEWAY_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "GATEWAY_LOCAL_SECRET_KEY": "k",
            "GATEWAY_EGRESS_ALLOW": "10.1.0.0/16, api.corp:8443",
            "GATEWAY_EGRESS_ALLOW_LOOPBACK": "true",
            "GATEWAY_UPSTREAM_DEADLINE_SECONDS": "7.5",
            "GATEWAY_UPSTREAM_CONNECTIONS_PER_HOST": "9",
            "GATEWAY_CONNECTION_CALLS_PER_MINUTE": "60",
            "GATEWAY_CONNECTION_MAX_CONCURRENT": "3",
            "GATEWAY_MAX_RESPONSE_BYTES": "1000",
        }
    )
    assert settings.egress_allow == ("10.1.0.0/16", "api.corp:8443")
    assert settings.egress_allow_loopback is True
    assert settings.upstream_deadline_seconds == 7.5
    assert settings.upstream_connections_per_host == 9
    assert (settings.connection_calls_per_minute, settings.connection_max_concurrent) == (60, 3)
    assert settings.max_response_bytes == 1000
    defaults = Settings.from_env(
        {
            "GATEWAY_ENVIRONMENT": "development",
            "GATEWAY_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
            "GATEWAY_LOCAL_SECRET_KEY": "k",
        }
    )
    assert defaults.egress_allow_loopback is False and defaults.egress_allow == ()
    with pytest.raises(ConfigurationError):
        Settings.from_env(
            {**{"GATEWAY_ENVIRONMENT": "development"}, "GATEWAY_EGRESS_ALLOW_LOOPBACK": "yes"}
        )


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "host", "host:0", "host:http", ""])
def test_bad_allow_entries_are_configuration_errors(entry: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_allow_entry(entry)


def test_loopback_allowance_is_refused_in_production(make_settings: Callable[..., Any]) -> None:
    with pytest.raises(ConfigurationError, match="GATEWAY_EGRESS_ALLOW_LOOPBACK"):
        Settings.from_env(
            {
                "GATEWAY_ENVIRONMENT": "production",
                "GATEWAY_TABLE_ENDPOINT": "https://t.example",
                "GATEWAY_QUEUE_ENDPOINT": "https://q.example",
                "GATEWAY_BLOB_ENDPOINT": "https://b.example",
                "GATEWAY_KEY_VAULT_URL": "https://kv.example",
                "GATEWAY_AUTH_TENANT_IDS": "t",
                "GATEWAY_AUTH_AUDIENCES": "a",
                "GATEWAY_EGRESS_ALLOW_LOOPBACK": "true",
            }
        )
    with pytest.raises(ConfigurationError, match="GATEWAY_EGRESS_ALLOW"):
        make_settings(egress_allow=("not a cidr",))


@pytest.mark.parametrize(
    "raw",
    [
        "0177.0.0.1",
        "0x7f000001",
        "2130706433",
        "127.1",
        "0x7f.1",
        "１２７.0.0.1",
        "bücher.example",
        "exa mple.com",
        "[::1%eth0]".strip("[]"),
    ],
)
def test_ambiguous_host_forms_are_refused(raw: str) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        canonical_host(raw)
    assert refused.value.code == "invalid_host"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("LOCALHOST", "localhost"),
        ("API.Example.COM.", "api.example.com"),
        ("::FFFF:127.0.0.1", "::ffff:7f00:1"),
        ("127.0.0.1", "127.0.0.1"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_hosts_are_canonicalised(raw: str, canonical: str) -> None:
    assert canonical_host(raw) == canonical


# --- through the clients, with nothing connecting ---------------------------------------


class TableResolver(AbstractResolver):
    """An aiohttp resolver answering from a table and recording each lookup."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.table[host]
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
def listener() -> Iterator[RawServer]:
    """A socket on 127.0.0.1 that refused calls must never reach."""
    with RawServer() as server:
        yield server


def data_plane_call(
    policy: EgressPolicy,
    url: str,
    resolver: TableResolver | None = None,
    times: int = 1,
    connects: list[tuple[str, int]] | None = None,
) -> tuple[list[int], list[tuple[str, int]]]:
    """`connects` records every socket the client created (the socket guard sees them
    before any connect), so a refused call can show that nothing was even attempted."""
    connects = [] if connects is None else connects

    async def run() -> list[int]:
        statuses = []
        async with data_plane_client(
            ssl.create_default_context(),
            httpx.Timeout(5.0),
            egress=policy,
            resolver=resolver,
            connects=connects,
        ) as client:
            for _ in range(times):
                response = await client.get(url)
                statuses.append(response.status_code)
        return statuses

    return asyncio.run(run()), connects


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.1"],
        ["169.254.169.254"],
        ["fd00:ec2::254"],
        ["168.63.129.16"],
        ["127.0.0.1", "93.184.215.14"],
        ["::ffff:127.0.0.1"],
        ["100.64.0.1"],
    ],
)
def test_a_name_resolving_to_a_denied_address_is_refused_before_connecting(
    listener: RawServer, addresses: list[str]
) -> None:
    resolver = TableResolver({"upstream.test": addresses})
    sockets: list[tuple[str, int]] = []
    with pytest.raises(EgressDeniedError) as refused:
        data_plane_call(
            EgressPolicy(), f"http://upstream.test:{listener.port}/", resolver, connects=sockets
        )
    assert refused.value.code == "egress_denied"
    assert resolver.lookups == ["upstream.test"]
    # No socket was made for any address of the answer, the public one included: the
    # whole answer is refused before a connect is attempted.
    assert sockets == []
    assert listener.connections == 0


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "localhost",
        "LOCALHOST",
        "0.0.0.0",
        "api.localhost",
    ],
)
def test_loopback_in_any_spelling_is_refused_without_a_connection(
    listener: RawServer, host: str
) -> None:
    with pytest.raises(EgressDeniedError):
        data_plane_call(EgressPolicy(), f"http://{host}:{listener.port}/")
    assert listener.connections == 0


def test_allowed_destinations_connect_to_the_checked_address_and_warm_calls_do_not_resolve(
    listener: RawServer,
) -> None:
    async def close_each(server: RawServer, request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    listener.respond = close_each  # every call needs a new connection
    resolver = TableResolver({"api.test": ["127.0.0.1"]})
    policy = EgressPolicy(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    statuses, connects = data_plane_call(
        policy, f"http://api.test:{listener.port}/", resolver, times=3
    )
    assert statuses == [204, 204, 204]
    assert connects == [("127.0.0.1", listener.port)] * 3
    # aiohttp's DNS cache holds the checked answer: one lookup for three connections.
    assert resolver.lookups == ["api.test"]

    pair = EgressPolicy(allow_pairs=frozenset({("api.test", listener.port)}))
    statuses, _ = data_plane_call(pair, f"http://api.test:{listener.port}/", resolver)
    assert statuses == [204]


def test_the_gateway_own_listening_address_is_a_loop(listener: RawServer) -> None:
    policy = EgressPolicy(allow_loopback=True)
    policy.note_own_address(("127.0.0.1", listener.port))
    with pytest.raises(EgressDeniedError) as refused:
        data_plane_call(policy, f"http://127.0.0.1:{listener.port}/")
    assert (refused.value.code, refused.value.status) == ("loop_detected", 508)
    assert listener.connections == 0


def control_plane_post(policy: EgressPolicy, url: str) -> int:
    async def run() -> int:
        async with control_plane_client(
            ssl.create_default_context(), httpx.Timeout(5.0), egress=policy
        ) as client:
            return (await client.post(url, data={"grant_type": "x"})).status_code

    return asyncio.run(run())


def test_control_plane_refuses_plain_http_outside_development(listener: RawServer) -> None:
    with pytest.raises(EgressDeniedError) as refused:
        control_plane_post(EgressPolicy(allow_loopback=True), f"{listener.url}/token")
    assert refused.value.code == "insecure_endpoint"
    assert listener.connections == 0


def test_control_plane_checks_resolved_addresses_before_connecting(listener: RawServer) -> None:
    development = EgressPolicy(allow_plain_http_control=True)
    with pytest.raises(EgressDeniedError):
        control_plane_post(development, f"{listener.url}/token")
    resolved: list[str] = []

    def lookup(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["169.254.169.254"]

    development.lookup = lookup
    with pytest.raises(EgressDeniedError):
        control_plane_post(development, f"http://idp.test:{listener.port}/token")
    assert resolved == ["idp.test"]
    assert listener.connections == 0
    # Allowed: connects to the checked address (a name mapped to loopback here).
    allowed = EgressPolicy(allow_plain_http_control=True, allow_loopback=True)
    allowed.lookup = lambda host, port: ["127.0.0.1"]
    assert control_plane_post(allowed, f"http://idp.test:{listener.port}/token") == 200
    assert listener.connections == 1


def test_msal_requests_session_checks_before_connecting(listener: RawServer) -> None:
    import requests

    def session(policy: EgressPolicy) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        adapter = egress_requests_adapter(policy)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        return s

    with pytest.raises(EgressDeniedError):
        session(EgressPolicy()).get(f"{listener.url}/.well-known/openid-configuration")
    metadata = EgressPolicy(allow_loopback=True)
    metadata.lookup = lambda host, port: ["169.254.169.254"]
    with pytest.raises(EgressDeniedError):
        session(metadata).get(f"http://login.test:{listener.port}/token")
    assert listener.connections == 0
    allowed = EgressPolicy(allow_loopback=True)
    allowed.lookup = lambda host, port: ["127.0.0.1"]
    assert session(allowed).get(f"http://login.test:{listener.port}/x").status_code == 200
    assert b"host: login.test" in bytes(listener.received).lower()


# --- through the gateway ---------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(start_gateway: Callable[..., GatewayUnderTest]) -> GatewayUnderTest:
    """A gateway with the production egress policy (loopback not allowed)."""
    return start_gateway(egress_allow_loopback=False)


@pytest.mark.parametrize(
    ("base_url", "code"),
    [
        ("http://127.0.0.1:9/v1", "egress_denied"),
        ("http://LOCALHOST:9/v1", "egress_denied"),
        ("http://[::ffff:127.0.0.1]:9/v1", "egress_denied"),
        ("http://0.0.0.0:9", "egress_denied"),
        ("http://169.254.169.254/latest", "egress_denied"),
        ("http://[fd00:ec2::254]/", "egress_denied"),
        ("http://10.0.0.1/", "egress_denied"),
        ("http://0177.0.0.1/", "invalid_host"),
        ("http://0x7f000001/", "invalid_host"),
        ("http://2130706433/", "invalid_host"),
        ("http://１２７.0.0.1/", "invalid_host"),
        ("https://gateway.example.test/api", "loop_detected"),
    ],
)
def test_connector_base_urls_are_checked_at_create(
    strict: GatewayUnderTest, base_url: str, code: str
) -> None:
    with strict.client("egress-maker") as client:
        response = client.post("/api/connectors", json={"name": "x", "baseUrl": base_url})
        problem = assert_problem(response, 422, code)
        assert problem["errors"][0]["field"] == "baseUrl"


def test_create_canonicalises_the_host(strict: GatewayUnderTest) -> None:
    with strict.client("egress-maker") as client:
        response = client.post(
            "/api/connectors", json={"name": "x", "baseUrl": "https://API.Example.COM/v1"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["baseUrl"] == "https://api.example.com/v1"


@pytest.mark.parametrize(
    ("template", "status", "code"),
    [
        ("http://127.0.0.1:{port}", 403, "egress_denied"),
        ("http://localhost:{port}", 403, "egress_denied"),
        ("http://[::ffff:127.0.0.1]:{port}", 403, "egress_denied"),
        ("http://0x7f000001:{port}", 400, "policy_evaluation_failed"),
    ],
)
def test_a_users_dynamic_host_parameter_cannot_reach_loopback(
    strict: GatewayUnderTest, listener: RawServer, template: str, status: int, code: str
) -> None:
    with strict.client("egress-user") as client:
        connector = import_connector(
            client,
            [dynamic_host("@connectionParameters('h')")],
            "https://api.example.com",
            parameters=("h",),
        )
        connection = connect(client, connector["id"], {"h": template.format(port=listener.port)})
        response = client.get(f"/api/connections/{connection}/invoke/things")
        assert_problem(response, status, code)
    assert listener.connections == 0


def test_the_gateway_calling_itself_is_refused(gateway: GatewayUnderTest) -> None:
    with gateway.client("egress-loop") as client:
        # The gateway's listening address: refused at create once it has served on it
        # (this request is the first), else at send.
        response = client.post(
            "/api/connectors", json={"name": "self", "baseUrl": gateway.url + "/api"}
        )
        assert_problem(response, 422, "loop_detected")
        # A request that already went through this gateway is refused on arrival.
        looped = client.get(
            "/api/connections/anything/invoke/x", headers={"Via": "1.1 gateway.example.test"}
        )
        assert_problem(looped, 508, "loop_detected")
        other = client.get("/api/connections/anything/invoke/x", headers={"Via": "1.1 proxy.corp"})
        assert other.status_code == 404  # not a loop: the unknown connection answers


def test_oauth_discovery_and_token_endpoints_pass_the_policy(
    strict: GatewayUnderTest, oidc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The identity provider listens on loopback: a gateway that does not allow
    loopback refuses to call it (discovery at connection creation, 403 before any
    connection), and the provider receives no token request."""
    before = oidc.stats()
    with strict.client("egress-oauth") as client:
        connector = client.post(
            "/api/connectors",
            json={
                "name": "oidc",
                "baseUrl": "https://api.example.com",
                "auth": {
                    "type": "oauth2",
                    "provider": "generic-oidc",
                    "clientId": CLIENT_ID,
                    "clientSecret": CLIENT_SECRET,
                    "settings": {"issuer": oidc.issuer},
                    "scopes": ["openid"],
                },
            },
        )
        assert connector.status_code == 201, connector.text
        created = client.post(
            f"/api/connectors/{connector.json()['id']}/connections", json={"displayName": "o"}
        )
        if created.status_code == 201:
            # The provider's discovery document was cached by this process already
            # (another gateway in the test session fetched it): the token exchange
            # at the callback is the first outbound call, and it is refused.
            result = oidc.authorize(created.json()["consentUrl"], redirect_uri=GATEWAY_REDIRECT_URI)
            with caplog.at_level(logging.WARNING), strict.client(user=None) as anonymous:
                page = anonymous.get("/api/oauth/callback", params=result.params)
            # The callback page says only that sign-in failed; the log says why.
            assert 'data-outcome="error"' in page.text, page.text
            assert any("egress_denied" in r.getMessage() for r in caplog.records)
        else:
            assert_problem(created, 403, "egress_denied")
    assert oidc.stats() == before
