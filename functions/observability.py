"""Request-scoped context that services may read without HTTP types: the correlation id
of the request being served (set by the ASGI middleware in functions/app.py)."""

from __future__ import annotations

import logging
from collections import Counter
from contextvars import ContextVar

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


# --- issue 12: security counters ------------------------------------------------------
# Counts an operator can read (logged at WARNING with the running total, and readable in
# process through `security_counts()`): how often a defence stripped or refused
# something. Per process, like every in-process limit.

_security_log = logging.getLogger("functions.security")
_security_counts: Counter[str] = Counter()


def count_security_event(event: str, detail: str, amount: int = 1) -> None:
    """Count `event` and log it. `detail` names what (a header name, a host), never a
    value that could be a secret."""
    _security_counts[event] += amount
    _security_log.warning(
        "%s: %s (total in this process: %d)", event, detail, _security_counts[event]
    )


def security_counts() -> dict[str, int]:
    return dict(_security_counts)
