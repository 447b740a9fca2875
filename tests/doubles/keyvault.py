"""A Key Vault protocol double: the secrets REST API over HTTPS on 127.0.0.1.

No Key Vault emulator is installable here, so this speaks just enough of the protocol for
the real `azure.keyvault.secrets.SecretClient` (see RECIPES.md, "Key Vault"): the 401
bearer challenge, secret versions, soft delete, purge (optionally refused, as with purge
protection), recovery, and Key Vault's error shapes. Everything is kept in memory.

Tests steer it with `fail_next` (throttling and outages), read `requests` / `count` to see
which calls reached "Key Vault", and `raw_values` to see what is stored.

    with KeyVaultDouble() as vault:
        store = KeyVaultSecretStore(vault.url, StaticTokenCredential(),
                                    connection_verify=vault.ca_file)
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trustme

logger = logging.getLogger(__name__)

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CHALLENGE = (
    f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", '
    'resource="https://vault.azure.net"'
)
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_RETENTION_DAYS = 90


@dataclass
class _Version:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    created: int


@dataclass
class _Secret:
    name: str  # as first written; lookups are case-insensitive like Key Vault's
    versions: list[_Version] = field(default_factory=list)
    deleted_date: int | None = None


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: float | None


class KeyVaultError(Exception):
    """Raised inside the handler to answer with Key Vault's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class KeyVaultDouble:
    """An in-memory Key Vault (secrets only) served over HTTPS with a `trustme` CA.

    `purge_protection=True` makes purges answer 403 as a vault with purge protection does.
    Thread-safe; the server runs in a daemon thread between `start()` and `stop()`.
    """

    def __init__(self, *, purge_protection: bool = False) -> None:
        self.purge_protection = purge_protection
        self._default_purge_protection = purge_protection
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._active: dict[str, _Secret] = {}
        self._deleted: dict[str, _Secret] = {}
        self._faults: list[_Fault] = []
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._ca_file: str | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> KeyVaultDouble:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self._tempdir = tempfile.TemporaryDirectory(prefix="kv-double-")
        self._ca_file = os.path.join(self._tempdir.name, "ca.pem")
        ca.cert_pem.write_to_path(self._ca_file)
        self._server = _TLSServer(("127.0.0.1", 0), _Handler, context, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="keyvault-double", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> KeyVaultDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Key Vault double is not running")
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def ca_file(self) -> str:
        if self._ca_file is None:
            raise RuntimeError("the Key Vault double is not running")
        return self._ca_file

    # -- test controls -------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 429, retry_after: float | None = None) -> None:
        """Answer the next `n` authenticated requests with `status` (queued after earlier faults).

        `retry_after` adds a `Retry-After` header (seconds; fractions allowed, which the
        SDK honours). Unauthenticated requests still get the 401 challenge and do not use
        up a fault, so the count is exact whatever the SDK's challenge state.
        """
        with self._lock:
            self._faults.append(_Fault(n, status, retry_after))

    def reset(self) -> None:
        """Forget the request log and pending faults; restore purge protection.

        Stored secrets are kept (tests use unique names).
        """
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self.purge_protection = self._default_purge_protection

    def count(self, method: str | None = None, prefix: str | None = None) -> int:
        """Requests seen (challenges included) matching `method` and a path `prefix`."""
        with self._lock:
            return sum(
                1
                for m, p in self.requests
                if (method is None or m == method) and (prefix is None or p.startswith(prefix))
            )

    def raw_values(self) -> list[str]:
        """Every stored value, active or soft-deleted."""
        with self._lock:
            return [
                v.value
                for secrets in (self._active, self._deleted)
                for s in secrets.values()
                for v in s.versions
            ]

    def is_deleted(self, name: str) -> bool:
        """True if `name` is soft-deleted (recoverable, not purged)."""
        with self._lock:
            return name.lower() in self._deleted

    def exists(self, name: str) -> bool:
        """True if `name` is active."""
        with self._lock:
            return name.lower() in self._active

    # -- the API (called by the handler under no lock) -----------------------------------

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            while self._faults and self._faults[0].remaining <= 0:
                self._faults.pop(0)
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            return fault

    def _log(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def dispatch(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any] | None]:
        parts = [unquote(p) for p in path.split("/")[1:]]
        if parts and parts[-1] == "" and len(parts) > 1:
            parts = parts[:-1]  # GET /secrets/{name}/ means the latest version
        if len(parts) >= 2 and parts[0] in ("secrets", "deletedsecrets"):
            _check_name(parts[1])
        with self._lock:
            match (method, parts):
                case ("GET", ["secrets"]):
                    return 200, self._list()
                case ("PUT", ["secrets", name]):
                    return 200, self._set(name, _json(body))
                case ("GET", ["secrets", name]):
                    return 200, self._bundle(self._get_active(name), None)
                case ("GET", ["secrets", name, version]):
                    return 200, self._bundle(self._get_active(name), version)
                case ("DELETE", ["secrets", name]):
                    return 200, self._delete(name)
                case ("GET", ["deletedsecrets", name]):
                    return 200, self._deleted_bundle(self._get_deleted(name))
                case ("DELETE", ["deletedsecrets", name]):
                    self._purge(name)
                    return 204, None
                case ("POST", ["deletedsecrets", name, "recover"]):
                    return 200, self._recover(name)
        raise KeyVaultError(400, "BadParameter", f"Method {method} on {path} is not supported")

    def _set(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        key = name.lower()
        if key in self._deleted:
            raise KeyVaultError(
                409,
                "Conflict",
                f"Secret {name} is currently in a deleted but recoverable state, and its name "
                "cannot be reused; in this state, the secret can only be recovered or purged.",
            )
        value = body.get("value")
        if not isinstance(value, str):
            raise KeyVaultError(400, "BadParameter", "Property value is required")
        secret = self._active.setdefault(key, _Secret(name))
        version = _Version(
            version=uuid.uuid4().hex,
            value=value,
            content_type=body.get("contentType"),
            tags=body.get("tags"),
            created=int(time.time()),
        )
        secret.versions.append(version)
        return self._bundle(secret, version.version)

    def _list(self) -> dict[str, Any]:
        """One page holding every active secret's properties (no values, no paging)."""
        items = []
        for secret in self._active.values():
            latest = secret.versions[-1]
            item: dict[str, Any] = {
                "id": f"{self.url}/secrets/{secret.name}",
                "attributes": {
                    "enabled": True,
                    "created": secret.versions[0].created,
                    "updated": latest.created,
                    "recoveryLevel": self._recovery_level(),
                },
            }
            if latest.tags is not None:
                item["tags"] = latest.tags
            items.append(item)
        return {"value": items, "nextLink": None}

    def _get_active(self, name: str) -> _Secret:
        secret = self._active.get(name.lower())
        if secret is None:
            raise _not_found(name)
        return secret

    def _get_deleted(self, name: str) -> _Secret:
        secret = self._deleted.get(name.lower())
        if secret is None:
            raise KeyVaultError(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        return secret

    def _delete(self, name: str) -> dict[str, Any]:
        secret = self._get_active(name)
        del self._active[name.lower()]
        secret.deleted_date = int(time.time())
        self._deleted[name.lower()] = secret
        return self._deleted_bundle(secret)

    def _purge(self, name: str) -> None:
        self._get_deleted(name)
        if self.purge_protection:
            raise KeyVaultError(
                403,
                "Forbidden",
                'Operation "purge" is not allowed because purge protection is enabled for '
                "this vault. Key Vault service will automatically purge it after the "
                "retention period has passed.",
            )
        del self._deleted[name.lower()]

    def _recover(self, name: str) -> dict[str, Any]:
        secret = self._get_deleted(name)
        if name.lower() in self._active:  # cannot happen: PUT refuses deleted names
            raise KeyVaultError(409, "Conflict", f"Secret {name} already exists")
        del self._deleted[name.lower()]
        secret.deleted_date = None
        self._active[name.lower()] = secret
        bundle = self._bundle(secret, None)
        bundle.pop("value")  # a recover answer carries properties only
        return bundle

    # -- bundles -------------------------------------------------------------------------

    def _recovery_level(self) -> str:
        return "Recoverable" if self.purge_protection else "Recoverable+Purgeable"

    def _bundle(self, secret: _Secret, version: str | None) -> dict[str, Any]:
        if version is None:
            chosen = secret.versions[-1]
        else:
            found = [v for v in secret.versions if v.version == version.lower()]
            if not found:
                raise _not_found(f"{secret.name}/{version}")
            chosen = found[0]
        bundle: dict[str, Any] = {
            "value": chosen.value,
            "id": f"{self.url}/secrets/{secret.name}/{chosen.version}",
            "attributes": {
                "enabled": True,
                "created": chosen.created,
                "updated": chosen.created,
                "recoveryLevel": self._recovery_level(),
                "recoverableDays": _RETENTION_DAYS,
            },
        }
        if chosen.content_type is not None:
            bundle["contentType"] = chosen.content_type
        if chosen.tags is not None:
            bundle["tags"] = chosen.tags
        return bundle

    def _deleted_bundle(self, secret: _Secret) -> dict[str, Any]:
        bundle = self._bundle(secret, None)
        bundle.pop("value")  # deleted bundles carry properties, not values
        assert secret.deleted_date is not None
        bundle["recoveryId"] = f"{self.url}/deletedsecrets/{secret.name}"
        bundle["deletedDate"] = secret.deleted_date
        bundle["scheduledPurgeDate"] = secret.deleted_date + _RETENTION_DAYS * 86400
        return bundle


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise KeyVaultError(
            400, "BadParameter", f"The request URI contains an invalid name: {name}"
        )


def _not_found(name_or_id: str) -> KeyVaultError:
    return KeyVaultError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {name_or_id} was not found in this key vault. If you "
        "recently deleted this secret you may be able to recover it using the correct "
        "recovery command.",
    )


def _json(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"null")
    except ValueError:
        raise KeyVaultError(400, "BadParameter", "The request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise KeyVaultError(400, "BadParameter", "The request body must be a JSON object")
    return parsed


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        vault: KeyVaultDouble,
    ) -> None:
        super().__init__(address, handler)
        self.ssl_context = context
        self.vault = vault

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread, so one slow client
        # cannot stall the accept loop.
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("Key Vault double: connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    disable_nagle_algorithm = True  # otherwise each TLS response waits ~40 ms for an ACK
    timeout = 60  # idle keep-alive connections give their thread back eventually
    server: _TLSServer

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        vault = self.server.vault
        url = urlsplit(self.path)
        vault._log(self.command, url.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer ") :].strip():
            self._send(
                401,
                {
                    "error": {
                        "code": "Unauthorized",
                        "message": "AKV10000: Request is missing a Bearer or PoP token.",
                    }
                },
                {"WWW-Authenticate": CHALLENGE},
            )
            return
        if "api-version" not in parse_qs(url.query):
            self._error(KeyVaultError(400, "BadParameter", "api-version is required"))
            return
        fault = vault._take_fault()
        if fault is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            code = "Throttled" if fault.status == 429 else "ServiceUnavailable"
            self._send(
                fault.status,
                {"error": {"code": code, "message": f"Injected failure (HTTP {fault.status})"}},
                headers,
            )
            return
        try:
            status, payload = vault.dispatch(self.command, url.path, body)
        except KeyVaultError as exc:
            self._error(exc)
            return
        self._send(status, payload)

    def _error(self, exc: KeyVaultError) -> None:
        self._send(exc.status, {"error": {"code": exc.code, "message": exc.message}})

    def _send(
        self, status: int, payload: dict[str, Any] | None, headers: dict[str, str] | None = None
    ) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-keyvault-service-version", "double")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if data:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Paths carry names only, never values; keep them out of stderr.
        logger.debug("Key Vault double: " + format, *args)


__all__ = ["CHALLENGE", "TENANT_ID", "KeyVaultDouble", "KeyVaultError"]
