from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from functions.app import create_app
from functions.settings import Settings
from functions.webhooks.options import WorkerOptions
from tests.conftest import GatewayUnderTest
from tests.servers import ThreadedServer
from tests.webhooks.receiver import Receiver

# Short timings: retries every fraction of a second, given up after a few seconds.
OPTIONS = WorkerOptions(
    interval_seconds=0.2,
    backoff_initial=0.2,
    backoff_max=0.8,
    retry_window=timedelta(seconds=4),
    timeout_seconds=4.0,
)


@pytest.fixture(scope="module")
def hooks(make_settings: Callable[..., Settings], dev_key: str) -> Iterator[GatewayUnderTest]:
    """A gateway running the webhook delivery loop in its own process (as `make run`)."""
    settings = make_settings()
    server = ThreadedServer(create_app(settings, webhook_worker=OPTIONS)).start()
    try:
        yield GatewayUnderTest(server, settings, dev_key)
    finally:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def subscribe(client: Any, receiver: Receiver, events: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    from functions.webhooks.events import EVENT_TYPES

    response = client.post(
        "/api/webhooks", json={"url": receiver.url, "events": events or list(EVENT_TYPES), **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    receiver.secrets.append(body["secret"])
    return body
