"""Request-scoped context that services may read without HTTP types: the correlation id
of the request being served (set by the ASGI middleware in functions/app.py)."""

from __future__ import annotations

from contextvars import ContextVar

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
