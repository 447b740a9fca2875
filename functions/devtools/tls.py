"""Certificates for the local stack's HTTPS servers (the OAuth demo provider, TLS echo
upstreams): a CA made for this run (`trustme`, development only), written under
`<data dir>/tls/`. The gateway trusts it through GATEWAY_UPSTREAM_CA_FILE; a browser
does not, unless `ca.pem` is imported into it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerCertificate:
    ca_file: Path
    cert_file: Path
    key_file: Path


def issue_server_certificate(
    directory: Path, name: str, hostnames: tuple[str, ...]
) -> ServerCertificate:
    """A fresh CA (`<name>-ca.pem`) and a certificate for `hostnames` signed by it."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Connector Gateway local stack")
    cert = ca.issue_cert(*hostnames)
    files = ServerCertificate(
        directory / f"{name}-ca.pem", directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    )
    ca.cert_pem.write_to_path(str(files.ca_file))
    cert.cert_chain_pems[0].write_to_path(str(files.cert_file))
    cert.private_key_pem.write_to_path(str(files.key_file))
    files.key_file.chmod(0o600)
    return files
