"""Outbound address policy (egress control): where the gateway may connect on a
connector's behalf.

Makers choose base URLs and OAuth endpoints, users fill `dynamichosturl` parameters:
without a policy any of them can point the gateway (and the credentials it injects) at
loopback, the instance metadata service, the storage emulator, private networks or
the gateway itself. Every outbound call made for a connector goes through one of three
clients, and each one asks this policy about the address it is about to connect to,
after resolving the name, so the address checked is the address connected to (no
DNS-rebinding window between check and connect):

- data plane (aiohttp): `EgressResolver` checks every address a name resolves to
  (aiohttp caches the checked answer, `ttl_dns_cache`, so a warm call does no lookup
  and no check beyond a set lookup), `check_literal` checks IP-literal hosts (aiohttp
  does not resolve those), and `socket_guard` re-checks each new socket's address;
- control plane (httpx's own transport): `EgressNetworkBackend` resolves, checks and
  connects to the checked address (TLS still names the host);
- msal (requests): `egress_requests_adapter`, the same for urllib3.

Deny rules: loopback, unspecified, private (RFC 1918, IPv6 ULA), shared (100.64/10),
link-local (with the cloud metadata addresses), multicast, reserved and documentation
ranges, IPv6 transition forms that embed an IPv4 address (mapped, compatible, 6to4,
Teredo, NAT64) and the Azure wireserver 168.63.129.16; names under `localhost`. An
admin allows exceptions with `GATEWAY_EGRESS_ALLOW` (CIDRs, `host:port` pairs);
development may allow loopback with `GATEWAY_EGRESS_ALLOW_LOOPBACK`. The gateway's own
origins (public base URL, the addresses it listens on) are always refused: a connector
pointing at the gateway would loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from functions.errors import ConfigurationError, EgressDeniedError, ValidationFailedError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# (network, why it is refused). Order matters only for the reason given.
_DENIED: tuple[tuple[str, str], ...] = (
    ("169.254.169.254/32", "the cloud instance metadata address"),
    ("fd00:ec2::254/128", "the cloud instance metadata address"),
    ("168.63.129.16/32", "the Azure platform (wireserver) address"),
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("127.0.0.0/8", "a loopback address"),
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("169.254.0.0/16", "a link-local address"),
    ("192.0.0.0/24", "a reserved (IETF protocol) address"),
    ("192.0.2.0/24", "a documentation address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("192.88.99.0/24", "a reserved (6to4 relay) address"),
    ("198.18.0.0/15", "a reserved (benchmarking) address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::ffff:0:0/96", "an IPv4-mapped IPv6 address"),
    ("::/96", "an IPv4-compatible IPv6 address"),
    ("64:ff9b::/96", "a NAT64 address"),
    ("64:ff9b:1::/48", "a NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo address"),
    ("2001::/23", "a reserved (IETF protocol assignment) address"),
    ("2001:db8::/32", "a documentation address"),
    ("2002::/16", "a 6to4 address"),
    ("fc00::/7", "a private (unique local) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
    ("::/8", "a reserved IPv6 address"),
)
DENIED_NETWORKS: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), reason) for cidr, reason in _DENIED
)
# The same as integer ranges: `address in network` costs about a microsecond each.
_DENIED_RANGES: tuple[tuple[int, int, int, str], ...] = tuple(
    (net.version, int(net.network_address), int(net.broadcast_address), reason)
    for net, reason in DENIED_NETWORKS
)
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

# Hosts the URL parser would read as numbers but that are not canonical dotted
# decimal IPv4 (octal 0177.0.0.1, hex 0x7f000001, 2130706433, 127.1): clients disagree
# on what they mean, so they are refused rather than guessed.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*\.?$", re.IGNORECASE)
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


@dataclass
class EgressPolicy:
    """What the gateway may connect to. One per process (the container builds it)."""

    allow_networks: tuple[Network, ...] = ()
    # (host name or address, port) pairs allowed whatever they resolve to.
    allow_pairs: frozenset[tuple[str, int]] = frozenset()
    allow_loopback: bool = False
    # Plain-http OAuth endpoints (token, revocation, discovery): development only.
    allow_plain_http_control: bool = False
    # The gateway's own origins: (host name, port) and (address, port).
    own_names: set[tuple[str, int]] = field(default_factory=set)
    own_addresses: set[tuple[Address, int]] = field(default_factory=set)
    own_ports: set[int] = field(default_factory=set)
    _seen_servers: set[tuple[str, Any]] = field(default_factory=set, repr=False)
    # Addresses names allowed by `host:port` resolved to (few: admins list few hosts).
    _vouched: set[tuple[Address, int]] = field(default_factory=set, repr=False)
    # (host, port) pairs that passed `check_host`; emptied when an own address appears.
    _passed: set[tuple[str, int]] = field(default_factory=set, repr=False)
    # Name lookups (tests replace it: a name that "resolves" to any address, with no
    # packet sent); None is the system resolver.
    lookup: Callable[[str, int], list[str]] | None = None

    @classmethod
    def from_settings(
        cls,
        allow: Iterable[str],
        *,
        allow_loopback: bool,
        development: bool,
        public_base_url: str | None,
    ) -> EgressPolicy:
        networks: list[Network] = []
        pairs: set[tuple[str, int]] = set()
        for item in allow:
            networks_or_pair = parse_allow_entry(item)
            if isinstance(networks_or_pair, tuple):
                pairs.add(networks_or_pair)
            else:
                networks.append(networks_or_pair)
        policy = cls(
            allow_networks=tuple(networks),
            allow_pairs=frozenset(pairs),
            allow_loopback=allow_loopback,
            allow_plain_http_control=development,
        )
        if public_base_url:
            parts = urlsplit(public_base_url)
            if parts.hostname:
                port = parts.port or default_port(parts.scheme)
                policy.own_names.add((parts.hostname.lower().rstrip("."), port))
        return policy

    def note_own_address(self, server: Any) -> None:
        """Remember an address the gateway serves on (ASGI `scope["server"]`; called
        for every request, so the known case is a set lookup)."""
        if not isinstance(server, tuple | list) or len(server) != 2:
            return
        key_seen = (str(server[0]), server[1])
        if key_seen in self._seen_servers:
            return
        self._seen_servers.add(key_seen)
        host, port = server
        if not isinstance(port, int):
            return
        try:
            address = ipaddress.ip_address(str(host))
        except ValueError:
            self.own_names.add((str(host).lower(), port))
            self._passed.clear()
            return
        key = (address, port)
        if key not in self.own_addresses:
            self.own_addresses.add(key)
            self._passed.clear()
            if address.is_unspecified or address.is_loopback:
                self.own_ports.add(port)

    # -- checks ---------------------------------------------------------------------

    def denial(self, host: str, address: Address, port: int) -> str | None:
        """Why connecting to `address`:`port` (for `host`) is refused, or None."""
        if (address, port) in self.own_addresses or (
            port in self.own_ports and (address.is_loopback or address.is_unspecified)
        ):
            return "the gateway itself"
        if (host, port) in self.allow_pairs:
            # Remembered so the socket check, which sees only the address, agrees.
            self._vouched.add((address, port))
            return None
        if (str(address), port) in self.allow_pairs or (address, port) in self._vouched:
            return None
        for network in self.allow_networks:
            if address.version == network.version and address in network:
                return None
        if self.allow_loopback and any(
            address.version == net.version and address in net for net in _LOOPBACK
        ):
            return None
        return address_denial(address)

    def check_host(self, host: str, port: int) -> None:
        """`check_name` and `check_literal` for a URL's host, on every data-plane call:
        outcomes are cached per (host, port), so the warm path is a dict lookup."""
        key = (host, port)
        if key in self._passed:
            return
        self.check_name(host, port)
        self.check_literal(host, port)
        if len(self._passed) >= 4096:
            self._passed.clear()
        self._passed.add(key)

    def check_address(self, host: str, address: Address, port: int) -> None:
        reason = self.denial(host.lower().rstrip("."), address, port)
        if reason == "the gateway itself":
            raise EgressDeniedError(
                f"upstream {host}:{port} is the gateway itself; a connector cannot call the "
                "gateway (it would loop)",
                code="loop_detected",
                status=508,
                extra={"upstreamHost": host},
            )
        if reason is not None:
            raise EgressDeniedError(
                f"upstream {host}:{port} resolves to {address}, {reason}; the gateway does not "
                "connect there (an admin may allow it with GATEWAY_EGRESS_ALLOW)",
                extra={"upstreamHost": host},
            )

    def check_name(self, host: str, port: int) -> None:
        """Refusals that need no lookup: the gateway's own names, `localhost`."""
        name = host.lower().rstrip(".")
        if (name, port) in self.own_names:
            raise EgressDeniedError(
                f"upstream {host}:{port} is the gateway itself; a connector cannot call the "
                "gateway (it would loop)",
                code="loop_detected",
                status=508,
                extra={"upstreamHost": host},
            )
        if (name == "localhost" or name.endswith(".localhost")) and (name, port) not in (
            self.allow_pairs
        ):
            self.check_address(host, ipaddress.ip_address("127.0.0.1"), port)

    def check_literal(self, host: str, port: int) -> bool:
        """Check `host` if it is an IP literal (clients connect to those without a
        lookup); True if it was one."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        self.check_address(host, address, port)
        return True

    def check_resolved(self, host: str, port: int, addresses: Iterable[str]) -> None:
        """Every address a name resolved to must be allowed: a client may try any."""
        self.check_name(host, port)
        for text in addresses:
            self.check_address(host, ipaddress.ip_address(text.split("%", 1)[0]), port)

    def check_url(self, url: str, *, control_plane: bool = False) -> None:
        """Request-time checks that need no lookup (scheme, own origin, literals)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or default_port(parts.scheme)
        if control_plane and parts.scheme == "http" and not self.allow_plain_http_control:
            raise EgressDeniedError(
                f"{host}: plain-http identity provider endpoints are refused outside "
                "development (they would receive client secrets and tokens in clear)",
                code="insecure_endpoint",
                extra={"upstreamHost": host},
            )
        self.check_name(host, port)
        self.check_literal(host, port)

    def validate_url(self, url: str, *, field: str = "baseUrl") -> str:
        """Create-time check of an upstream URL: canonical host (else 422
        `invalid_host`), then the checks that need no lookup (422 `egress_denied`).
        Returns the URL with its host canonicalised (lower case, IPv6 compressed)."""
        canonical = canonicalize_url(url, field=field)
        try:
            self.check_url(canonical)
        except EgressDeniedError as exc:
            raise ValidationFailedError(
                f"{field}: {exc.detail}",
                code=exc.code,
                errors=[{"field": field, "message": exc.detail}],
            ) from None
        return canonical

    # -- clients --------------------------------------------------------------------

    async def resolve(self, host: str, port: int) -> list[str]:
        """Resolve (or take a literal), check every address, return them (for clients
        that connect themselves: control plane)."""
        self.check_name(host, port)
        if self.check_literal(host, port):
            return [host.strip("[]")]
        if self.lookup is not None:
            addresses = self.lookup(host, port)
        else:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = [str(info[4][0]) for info in infos]
        self.check_resolved(host, port, addresses)
        return addresses

    def resolve_sync(self, host: str, port: int) -> list[str]:
        self.check_name(host, port)
        if self.check_literal(host, port):
            return [host.strip("[]")]
        if self.lookup is not None:
            addresses = self.lookup(host, port)
        else:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = [str(info[4][0]) for info in infos]
        self.check_resolved(host, port, addresses)
        return addresses


def address_denial(address: Address) -> str | None:
    """The deny rule `address` falls under (ignoring allow rules), or None.

    The list covers every range Python's `ipaddress` calls private or reserved (its
    `is_global` is the same judgement, at ten times the cost), plus the shared
    range, multicast, the transition forms and the Azure wireserver."""
    version, value = address.version, int(address)
    for range_version, low, high, reason in _DENIED_RANGES:
        if range_version == version and low <= value <= high:
            return reason
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return address_denial(embedded)
    return None


def parse_allow_entry(item: str) -> Network | tuple[str, int]:
    """One `GATEWAY_EGRESS_ALLOW` entry: a CIDR (or single address) or `host:port`."""
    text = item.strip()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]").lower().rstrip(".")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(
            f"GATEWAY_EGRESS_ALLOW: expected a CIDR (10.1.0.0/16) or host:port "
            f"(api.internal:443), got {item!r}"
        )
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return host, int(port_text)


def canonicalize_url(url: str, *, field: str = "baseUrl") -> str:
    """`url` with a canonical host, or 422 `invalid_host` for host forms clients read
    differently (octal, hex or short numeric IPv4, non-ASCII such as full-width
    digits, bad labels)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    host_text = netloc.rpartition("@")[2]
    if host_text.startswith("["):
        raw_host, _, rest = host_text[1:].partition("]")
        port_part = rest
    else:
        raw_host, colon, port_text = host_text.partition(":")
        port_part = f"{colon}{port_text}"
    host = canonical_host(raw_host, field=field)
    shown = f"[{host}]" if ":" in host else host
    return parts._replace(netloc=shown + port_part).geturl()


def canonical_host(raw: str, *, field: str = "baseUrl") -> str:
    def fail(message: str) -> ValidationFailedError:
        return ValidationFailedError(
            f"{field}: host {raw!r} {message}",
            code="invalid_host",
            errors=[{"field": field, "message": f"host {raw!r} {message}"}],
        )

    if not raw.isascii():
        raise fail(
            "has non-ASCII characters; write an internationalised name in its xn-- (punycode) form"
        )
    host = raw.lower()
    if ":" in host:
        try:
            address = ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise fail("is not a valid IPv6 address") from None
        if "%" in host:
            raise fail("must not carry an IPv6 zone")
        return address.compressed
    if _NUMERIC_HOST.match(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise fail(
                "is not a canonical dotted-decimal IPv4 address (octal, hexadecimal and "
                "short forms are refused)"
            ) from None
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(p) for p in name.split(".")):
        raise fail("is not a valid host name")
    return name
