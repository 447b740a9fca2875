"""`SecretStore` on Azure Key Vault, through the synchronous `SecretClient`.

Contract (see `base.SecretStore`):

* `set_secret` writes a new version and returns its id. A name left soft-deleted by an
  earlier `delete_secret` (purge protection) is recovered first, so names can be reused.
* `get_secret` raises `SecretNotFoundError` for a missing name or version.
* `delete_secret` is idempotent: soft-delete, wait, then purge; when the vault refuses the
  purge (purge protection or no purge permission) the secret stays soft-deleted and Key
  Vault purges it after its retention period.
* Failures left after the SDK's own retries (network, 408/429/5xx, refused credentials)
  raise `DependencyUnavailableError` with code `secret_store_unavailable`.

Secret values never appear in exception messages or log records: only names, versions,
HTTP statuses and Key Vault error codes do.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.keyvault.secrets import SecretClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from functions.errors import (
    ConfigurationError,
    DependencyUnavailableError,
    GatewayError,
    SecretNotFoundError,
)
from functions.stores.secrets.base import SecretListing, SecretValue

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from functions.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Key Vault's own rule for object names. The local store applies it too, so a name that
# works in development also works in Azure.
SECRET_NAME_PATTERN = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
# Key Vault versions are 32 hex characters; the check only keeps path separators and
# query syntax out of URLs (an unknown but well-formed version is a 404, not a ValueError).
_VERSION_PATTERN = re.compile(r"^[0-9a-zA-Z]{1,64}$")

UNAVAILABLE = "secret_store_unavailable"


def validate_secret_name(name: str) -> str:
    """Return `name` if it is a valid Key Vault secret name; raise ValueError otherwise."""
    if not isinstance(name, str) or not SECRET_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid secret name {name!r}: use 1-127 characters from 0-9, a-z, A-Z and '-'"
        )
    return name


def validate_secret_version(version: str) -> str:
    """Return `version` if it is well-formed; raise ValueError otherwise ('' is not 'latest')."""
    if not isinstance(version, str) or not _VERSION_PATTERN.fullmatch(version):
        raise ValueError(f"invalid secret version {version!r}")
    return version


class StaticTokenCredential:
    """A credential returning a fixed dummy token: only for the Key Vault test double.

    The double accepts any bearer token; a real vault rejects this one. `build_keyvault_store`
    refuses it outside development. Both `get_token` and `get_token_info` are implemented:
    the Key Vault challenge policy (azure-core 1.41) prefers `get_token_info` when present.
    """

    TOKEN = "connector-gateway-dev-static-token"  # noqa: S105 - a public dummy, not a secret

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self.TOKEN, int(time.time()) + 3600)

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        return AccessTokenInfo(self.TOKEN, int(time.time()) + 3600)

    def close(self) -> None:
        """Nothing to release (the credential protocols allow `close`)."""


class KeyVaultSecretStore:
    """`SecretStore` backed by one Azure Key Vault. Thread-safe; calls block.

    `connection_verify` (a CA bundle path) is for the local test double only: it also turns
    off the SDK's check that the challenge's resource matches the vault's domain, which a
    loopback address cannot satisfy.

    Knobs: `retry_*` go to azure-core's `RetryPolicy` (defaults: 3 retries backing off
    0.5 s, 1 s, 2 s, or as long as a `Retry-After` asks) and the timeouts to the transport,
    so a failing vault costs seconds rather than the SDK's default minutes while a request
    waits. `poll_interval` / `poll_timeout` bound the waits for a soft delete or a recovery
    to complete; `conflict_retries` bounds waiting for a purged name to become free.
    `close_credential` makes `close()` close the credential too (for one the store owns).
    """

    def __init__(
        self,
        vault_url: str,
        credential: TokenCredential,
        *,
        connection_verify: str | None = None,
        retry_total: int = 3,
        retry_backoff_factor: float = 0.5,
        retry_backoff_max: float = 8.0,
        connection_timeout: float = 5.0,
        read_timeout: float = 15.0,
        max_connections: int = 32,
        poll_interval: float = 1.0,
        poll_timeout: float = 60.0,
        conflict_retries: int = 5,
        close_credential: bool = False,
    ) -> None:
        # Size the connection pool to the thread pool that runs these calls; requests'
        # default of 10 would drop (and re-handshake) connections under load.
        session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=1,
            pool_maxsize=max_connections,
            # azure-core does the retrying; urllib3 must not retry underneath it.
            max_retries=Retry(total=False, redirect=False, raise_on_status=False),
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        transport_kwargs: dict[str, Any] = {
            "session": session,
            "session_owner": True,
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
        }
        client_kwargs: dict[str, Any] = {
            "retry_total": retry_total,
            "retry_backoff_factor": retry_backoff_factor,
            "retry_backoff_max": retry_backoff_max,
        }
        if connection_verify is not None:
            transport_kwargs["connection_verify"] = connection_verify
            client_kwargs["verify_challenge_resource"] = False
        self._client = SecretClient(
            vault_url,
            credential,
            transport=RequestsTransport(**transport_kwargs),
            **client_kwargs,
        )
        self._poll_interval = poll_interval
        self._poll_timeout = poll_timeout
        self._conflict_retries = conflict_retries
        self._close_credential = close_credential
        self.credential = credential
        self.vault_url = self._client.vault_url

    # -- SecretStore ---------------------------------------------------------------------

    def set_secret(self, name: str, value: str, *, tags: dict[str, str] | None = None) -> str:
        """Write a new version of `name` and return its version id."""
        validate_secret_name(name)
        if not isinstance(value, str):
            raise TypeError("secret value must be a str")
        for attempt in range(self._conflict_retries + 1):
            try:
                secret = self._call(
                    name, lambda: self._client.set_secret(name, value, tags=tags), conflict=True
                )
            except ResourceExistsError as exc:
                # 409: the name is soft-deleted (recover it and write again) or still being
                # purged (wait; Key Vault frees the name within seconds).
                if attempt == self._conflict_retries:
                    logger.warning("Key Vault secret %s: name still in conflict (HTTP 409)", name)
                    raise DependencyUnavailableError(
                        f"the secret store is unavailable (secret {name!r} is being deleted)",
                        code=UNAVAILABLE,
                    ) from exc
                if not self._recover_if_deleted(name):
                    time.sleep(self._poll_interval * (attempt + 1))
                continue
            version = secret.properties.version
            if not version:  # a Key Vault answer always carries the version in its id
                raise GatewayError(
                    f"Key Vault returned no version for secret {name!r}", code="secret_store_error"
                )
            return version
        raise AssertionError("unreachable")  # pragma: no cover

    def get_secret(self, name: str, version: str | None = None) -> SecretValue:
        """Read one version of `name` (the latest when `version` is None)."""
        validate_secret_name(name)
        if version is not None:
            validate_secret_version(version)
        try:
            secret = self._call(name, lambda: self._client.get_secret(name, version))
        except ResourceNotFoundError:
            raise SecretNotFoundError(_not_found_detail(name, version)) from None
        if secret.value is None or not secret.properties.version:
            raise SecretNotFoundError(_not_found_detail(name, version))
        return SecretValue(name=name, version=secret.properties.version, value=secret.value)

    def delete_secret(self, name: str) -> None:
        """Delete every version of `name`, purging where the vault allows. Idempotent."""
        validate_secret_name(name)
        try:
            poller = self._call(
                name,
                lambda: self._client.begin_delete_secret(
                    name, _polling_interval=self._poll_interval
                ),
            )
        except ResourceNotFoundError:
            # Missing, or already soft-deleted by an earlier call that did not purge: try
            # the purge anyway so a retried delete finishes the job.
            pass
        else:
            # The purge is refused until the soft delete has completed.
            self._call(name, lambda: poller.wait(timeout=self._poll_timeout))
            if not poller.done():
                logger.warning(
                    "Key Vault secret %s: soft delete still in progress after %.0f s; not purged",
                    name,
                    self._poll_timeout,
                )
                return
        self._purge(name)

    def list_secrets(self) -> list[SecretListing]:
        """Names and update times of every secret (one paged listing; no values)."""
        items = self._call("(listing)", lambda: list(self._client.list_properties_of_secrets()))
        return [
            SecretListing(item.name, item.updated_on or item.created_on, dict(item.tags or {}))
            for item in items
            if item.name
        ]

    # -- helpers -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client's connections (and the credential, if `close_credential`)."""
        self._client.close()
        close = getattr(self.credential, "close", None)
        if self._close_credential and callable(close):
            close()

    def __enter__(self) -> KeyVaultSecretStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _purge(self, name: str) -> None:
        try:
            self._call(
                name, lambda: self._client.purge_deleted_secret(name), purge=True, conflict=True
            )
        except ResourceNotFoundError:
            return  # nothing soft-deleted under this name: already purged or never existed
        except ResourceExistsError:
            # 409: Key Vault is still finishing the soft delete or another purge. The secret
            # is unreadable either way; a later delete (or the retention period) purges it.
            logger.warning("Key Vault secret %s deleted but not purged yet (HTTP 409)", name)
        except _PurgeRefused as refused:
            # Purge protection (or no purge permission): the secret stays soft-deleted,
            # unreadable through the normal API, until Key Vault purges it itself.
            logger.info(
                "Key Vault secret %s deleted but not purged (HTTP %s %s); "
                "Key Vault will purge it after its retention period",
                name,
                refused.status,
                refused.error_code,
            )

    def _recover_if_deleted(self, name: str) -> bool:
        """Recover a soft-deleted `name`; False when there is nothing to recover (yet)."""
        try:
            poller = self._call(
                name,
                lambda: self._client.begin_recover_deleted_secret(
                    name, _polling_interval=self._poll_interval
                ),
                conflict=True,
            )
            self._call(name, lambda: poller.wait(timeout=self._poll_timeout))
        except (ResourceNotFoundError, ResourceExistsError):
            return False
        logger.info("Key Vault secret %s was soft-deleted; recovered it to reuse the name", name)
        return True

    def _call(
        self,
        name: str,
        operation: Callable[[], T],
        *,
        conflict: bool = False,
        purge: bool = False,
    ) -> T:
        """Run one SDK call, translating its errors into the gateway's.

        `ResourceNotFoundError` passes through (each caller decides what "missing" means);
        so does `ResourceExistsError` when `conflict` is set. With `purge`, a 403 raises
        `_PurgeRefused`. Everything else becomes a `GatewayError`, raised from the SDK error.
        """
        try:
            return operation()
        except ResourceNotFoundError:
            raise
        except ResourceExistsError as exc:
            if conflict:
                raise
            raise self._error(name, exc) from exc
        except HttpResponseError as exc:
            if purge and (exc.status_code == 403 or _is_purge_refusal(exc)):
                raise _PurgeRefused(exc.status_code, _error_code(exc)) from exc
            raise self._error(name, exc) from exc
        except AzureError as exc:
            raise self._error(name, exc) from exc

    @staticmethod
    def _error(name: str, exc: AzureError) -> GatewayError:
        status = getattr(exc, "status_code", None)
        code = _error_code(exc) if isinstance(exc, HttpResponseError) else None
        if isinstance(exc, HttpResponseError) and status is not None and 400 <= status < 500:
            if status in (401, 403):
                logger.error(
                    "Key Vault refused the gateway's identity for secret %s (HTTP %s %s)",
                    name,
                    status,
                    code,
                )
                return DependencyUnavailableError(
                    f"Key Vault refused access to secret {name!r} (HTTP {status}); "
                    "check the gateway identity's role assignment on the vault",
                    code=UNAVAILABLE,
                )
            if status not in (408, 429):
                # A request Key Vault considers malformed is a gateway bug, not an outage.
                logger.error(
                    "Key Vault rejected a request for secret %s (HTTP %s %s)", name, status, code
                )
                return GatewayError(
                    f"Key Vault rejected a request for secret {name!r} (HTTP {status} {code})",
                    code="secret_store_error",
                )
        # Network errors, timeouts, 408/429/5xx left after the SDK's retries, and
        # credentials that could not produce a token.
        described = f"HTTP {status} {code}" if status is not None else type(exc).__name__
        logger.warning("Key Vault unavailable for secret %s (%s)", name, described)
        return DependencyUnavailableError(
            f"the secret store is unavailable ({described})", code=UNAVAILABLE
        )


class _PurgeRefused(Exception):
    def __init__(self, status: int | None, error_code: str | None) -> None:
        super().__init__(status, error_code)
        self.status = status
        self.error_code = error_code


def _error_code(exc: HttpResponseError) -> str | None:
    error = getattr(exc, "error", None)
    return getattr(error, "code", None)


def _is_purge_refusal(exc: HttpResponseError) -> bool:
    message = getattr(getattr(exc, "error", None), "message", None) or ""
    return "operation purge is not allowed" in message.replace('"', "").lower()


def _not_found_detail(name: str, version: str | None) -> str:
    if version is None:
        return f"secret {name!r} not found"
    return f"version {version!r} of secret {name!r} not found"


def build_keyvault_store(settings: Settings) -> KeyVaultSecretStore:
    """Build the store from settings.

    Azure: `DefaultAzureCredential` (managed identity in Functions; `AZURE_CLIENT_ID`
    selects a user-assigned identity). With `key_vault_ca_file` set (development against
    the test double) a `StaticTokenCredential` and that CA are used instead; this is
    refused outside development.
    """
    if not settings.key_vault_url:
        raise ConfigurationError("GATEWAY_SECRET_STORE=keyvault needs GATEWAY_KEY_VAULT_URL")
    if settings.key_vault_ca_file:
        if not settings.is_development:
            raise ConfigurationError(
                "GATEWAY_KEY_VAULT_CA_FILE (the Key Vault test double) is for development "
                "only; remove it"
            )
        return KeyVaultSecretStore(
            settings.key_vault_url,
            StaticTokenCredential(),
            connection_verify=settings.key_vault_ca_file,
        )
    from azure.identity import DefaultAzureCredential

    return KeyVaultSecretStore(
        settings.key_vault_url, DefaultAzureCredential(), close_credential=True
    )
