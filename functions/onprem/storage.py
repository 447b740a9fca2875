"""Storage clients for the relay (queues, blobs, tables) and the one error wrapper.

The cloud side builds them from Settings: a connection string (Azurite, development)
or endpoints with a managed identity (Azure). The agent builds them from its own
configuration (see agent.py). The SDKs are synchronous; callers run them in threads.

Retries are short on purpose: a relay call has a deadline of seconds, and a storage
outage must surface as `relay_unavailable` quickly rather than after minutes of backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.blob import LinearRetry as BlobLinearRetry
from azure.storage.queue import LinearRetry as QueueLinearRetry
from azure.storage.queue import QueueServiceClient

from functions.onprem.errors import RelayUnavailableError

T = TypeVar("T")

# Storage calls are small; 10 s covers a slow moment without hiding an outage.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0


def _client_options(retry: type[Any]) -> dict[str, Any]:
    return {
        "retry_policy": retry(backoff=0.2, random_jitter_range=0, retry_total=2),
        "connection_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
    }


def queue_service(
    connection_string: str | None = None, endpoint: str | None = None, credential: Any = None
) -> QueueServiceClient:
    if connection_string:
        return QueueServiceClient.from_connection_string(
            connection_string, **_client_options(QueueLinearRetry)
        )
    assert endpoint is not None, "a queue endpoint or a connection string is required"
    return QueueServiceClient(
        endpoint,
        credential=credential or _default_credential(),
        **_client_options(QueueLinearRetry),
    )


def blob_service(
    connection_string: str | None = None, endpoint: str | None = None, credential: Any = None
) -> BlobServiceClient:
    if connection_string:
        return BlobServiceClient.from_connection_string(
            connection_string, **_client_options(BlobLinearRetry)
        )
    assert endpoint is not None, "a blob endpoint or a connection string is required"
    return BlobServiceClient(
        endpoint, credential=credential or _default_credential(), **_client_options(BlobLinearRetry)
    )


def table_service(
    connection_string: str | None = None, endpoint: str | None = None, credential: Any = None
) -> TableServiceClient:
    # Tables take azure-core's generic retry options (not the storage retry classes).
    options: dict[str, Any] = {
        "retry_total": 2,
        "retry_backoff_factor": 0.2,
        "connection_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
    }
    if connection_string:
        return TableServiceClient.from_connection_string(connection_string, **options)
    assert endpoint is not None, "a table endpoint or a connection string is required"
    return TableServiceClient(
        endpoint=endpoint, credential=credential or _default_credential(), **options
    )


def _default_credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def services_from_settings(settings: Any) -> tuple[QueueServiceClient, BlobServiceClient]:
    """Queue and blob clients for the cloud side, from Settings.

    Azurite: GATEWAY_STORAGE_CONNECTION_STRING. Azure: GATEWAY_QUEUE_ENDPOINT and
    GATEWAY_BLOB_ENDPOINT with the app's managed identity.
    """
    connection_string = settings.storage_connection_string
    queue_endpoint = getattr(settings, "queue_endpoint", None)
    blob_endpoint = getattr(settings, "blob_endpoint", None)
    if not connection_string and not (queue_endpoint and blob_endpoint):
        from functions.errors import ConfigurationError

        raise ConfigurationError(
            "the on-premises relay needs GATEWAY_QUEUE_ENDPOINT and GATEWAY_BLOB_ENDPOINT "
            "(Azure) or GATEWAY_STORAGE_CONNECTION_STRING (Azurite)"
        )
    return (
        queue_service(connection_string, queue_endpoint),
        blob_service(connection_string, blob_endpoint),
    )


async def run_storage(fn: Callable[[], T], what: str = "storage") -> T:
    """Run a sync SDK call in a thread; outages become RelayUnavailableError (503).

    Not-found, exists and precondition errors pass through: callers decide what they mean.
    """
    try:
        return await asyncio.to_thread(fn)
    except (ResourceNotFoundError, ResourceExistsError, ResourceModifiedError):
        raise
    except HttpResponseError as exc:
        if (
            exc.status_code is not None
            and exc.status_code < 500
            and exc.status_code not in (408, 429)
        ):
            raise
        raise RelayUnavailableError(
            f"the on-premises relay's {what} is unavailable; try again shortly"
        ) from exc
    except AzureError as exc:
        raise RelayUnavailableError(
            f"the on-premises relay's {what} is unavailable; try again shortly"
        ) from exc
