"""Background jobs, run by timer triggers in function_app.py and by the CLI.

Each job builds its own Gateway container from the environment, does one batch of
work and closes it; they share no state with the HTTP app.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from functions.settings import Settings

log = logging.getLogger(__name__)

# How long audit records are kept (the cleanup job deletes older ones).
AUDIT_RETENTION = timedelta(days=90)


async def cleanup_connections(settings: Settings | None = None) -> int:
    """Finish connection creates and deletes interrupted by a crash (see
    services/connections.py), delete secrets whose row does not exist (older than
    SECRET_GRACE), and apply the audit retention. Returns the number of connection
    leftovers and orphaned secrets removed."""
    from functions.container import Gateway

    gateway = await Gateway.start(settings or Settings.from_env())
    try:
        removed = await gateway.connections.cleanup()
        # After the row cleanup: secrets of rows it just removed are gone already.
        orphans = await gateway.connections.reconcile_secrets()
        expired = await gateway.audit.purge_older_than(AUDIT_RETENTION)
    finally:
        await gateway.close()
    log.info(
        "cleanup removed %d interrupted connection(s), %d orphaned secret(s), "
        "%d expired audit batch(es)",
        removed,
        orphans,
        expired,
    )
    return removed + orphans


async def refresh_due_tokens(settings: Settings | None = None) -> dict[str, int]:
    """Refresh OAuth tokens about to expire (one bounded batch), so requests rarely wait
    for a refresh and refresh tokens never expire idle."""
    from functions.container import Gateway

    gateway = await Gateway.start(settings or Settings.from_env())
    try:
        summary = await gateway.oauth.refresh_due()
    finally:
        await gateway.close()
    log.info("token refresh: %s", summary)
    return summary


async def deliver_webhooks(settings: Settings | None = None) -> dict[str, int]:
    """One pass of the webhook delivery worker (issue 19): queued events to outbox
    rows, then due deliveries, in order per connection, retried with backoff."""
    from functions.container import Gateway

    gateway = await Gateway.start(settings or Settings.from_env())
    try:
        summary = await gateway.webhook_worker().run_once()
    finally:
        await gateway.close()
    if summary["events"] or summary["delivered"] or summary["failedAttempts"]:
        log.info("webhooks: %s", summary)
    return summary
