"""Delivery timing of the webhook worker (issue 19). Its own module so that the app
factory can name it without importing the worker and its storage clients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class WorkerOptions:
    """Production uses the defaults; tests shorten them."""

    interval_seconds: float = 5.0  # the local loop's pause between passes
    backoff_initial: float = 5.0
    backoff_max: float = 3600.0
    retry_window: timedelta = timedelta(days=1)
    timeout_seconds: float = 10.0
    concurrency: int = 8
