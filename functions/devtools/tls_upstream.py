"""`python -m functions dev --tls-upstream HOST` (`make run TLS_UPSTREAM=HOST`):
an echo upstream over HTTPS for a connector whose definition fixes its host (JIRA's
`*.atlassian.net`, an `https`-only `host`), without touching DNS or the system trust store.

The echo gets a certificate for each HOST from a CA made for this run; the gateway
trusts that CA (GATEWAY_UPSTREAM_CA_FILE) and sends its calls for `HOST:443` to the echo
(GATEWAY_DEV_UPSTREAM_RESOLVE, like curl's --resolve: the Host header and the TLS
server name stay HOST). Both settings are development-only: production refuses the
resolve override.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from functions.devtools.echo import EchoServer, start_echo
from functions.devtools.stack import StackError
from functions.devtools.tls import issue_server_certificate


@dataclass
class TlsUpstream:
    echo: EchoServer
    hosts: tuple[str, ...]
    ca_file: Path

    def stop(self) -> None:
        self.echo.stop()

    def resolve_entries(self) -> list[str]:
        return [f"{host}:443=127.0.0.1:{self.echo.port}" for host in self.hosts]

    def banner_lines(self) -> list[str]:
        names = ", ".join(f"https://{host}" for host in self.hosts)
        return [
            f"TLS upstream: calls to {names} go to the HTTPS echo on 127.0.0.1:"
            f"{self.echo.port} (its CA: {self.ca_file})",
        ]


def start_tls_upstream(data_dir: Path, hosts: tuple[str, ...]) -> TlsUpstream:
    cleaned = tuple(dict.fromkeys(host.strip().lower() for host in hosts if host.strip()))
    for host in cleaned:
        if not host.replace("-", "").replace(".", "").isalnum():
            raise StackError(f"--tls-upstream takes a host name, got {host!r}")
    tls = issue_server_certificate(data_dir / "tls", "tls-upstream", cleaned)
    echo = start_echo(certfile=str(tls.cert_file), keyfile=str(tls.key_file))
    return TlsUpstream(echo, cleaned, tls.ca_file)
