"""A cross-process lease on one table entity, for single-flight work such as a refresh.

Taking the lease: read the entity; when `LeaseUntil` is absent or in the past, MERGE
`LeaseOwner` and `LeaseUntil` with the read ETag (`IfNotModified`). Table Storage applies
conditional updates atomically, so of several processes racing only one MERGE succeeds;
the others get 412 and know someone else holds it. A holder that crashes never releases,
and its lease simply expires: the next taker's MERGE overwrites it.

Releasing: MERGE the two properties back to empty with the ETag our take (or last
write) returned; a 412 means the entity changed meanwhile (e.g. the lease expired and
was taken over), in which case we only clear it if it is still ours.

Clock skew between instances shortens or lengthens a lease by the skew; keep `ttl` well
above the longest time the guarded work may take (a token request times out first).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from functions.errors import DependencyUnavailableError, NotFoundError

OWNER = "LeaseOwner"
UNTIL = "LeaseUntil"
# Table Storage has no nulls in a MERGE: a released lease has an empty owner and this time.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def new_owner_id() -> str:
    """A lease owner id unique to this process and call."""
    return uuid.uuid4().hex


@dataclass
class Lease:
    """A lease we hold. `entity` is the snapshot read when it was taken."""

    partition_key: str
    row_key: str
    owner: str
    until: datetime
    etag: str
    entity: dict[str, Any] = field(repr=False)
    released: bool = False


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _unavailable() -> DependencyUnavailableError:
    return DependencyUnavailableError(
        "Table Storage is unavailable; try again shortly", code="storage_unavailable"
    )


class EntityLease:
    """Take and release leases on entities of one table. Async; the SDK runs in threads."""

    def __init__(self, table: TableClient, *, ttl: timedelta = timedelta(seconds=60)) -> None:
        self.table = table
        self.ttl = ttl
        self.takes = 0  # conditional MERGEs attempted (budget accounting)

    async def acquire(
        self, partition_key: str, row_key: str, owner: str, *, now: datetime | None = None
    ) -> Lease | None:
        """Take the lease, or return None when someone else holds a live one."""
        try:
            entity = await asyncio.to_thread(self.table.get_entity, partition_key, row_key)
        except ResourceNotFoundError:
            raise NotFoundError(f"entity {partition_key}/{row_key} not found") from None
        except AzureError as exc:
            raise _unavailable() from exc
        now = now or datetime.now(UTC)
        until = _aware(entity.get(UNTIL))
        if until is not None and until > now and entity.get(OWNER) not in (None, "", owner):
            return None
        new_until = now + self.ttl
        self.takes += 1
        try:
            meta = await asyncio.to_thread(
                self.table.update_entity,
                {"PartitionKey": partition_key, "RowKey": row_key, OWNER: owner, UNTIL: new_until},
                mode=UpdateMode.MERGE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None  # someone else's conditional update won the race
        except AzureError as exc:
            raise _unavailable() from exc
        snapshot = dict(entity)
        snapshot[OWNER], snapshot[UNTIL] = owner, new_until
        return Lease(partition_key, row_key, owner, new_until, meta["etag"], snapshot)

    async def release(self, lease: Lease, extra: dict[str, Any] | None = None) -> None:
        """Clear the lease (writing `extra` properties in the same MERGE) if still ours."""
        body: dict[str, Any] = {
            "PartitionKey": lease.partition_key,
            "RowKey": lease.row_key,
            OWNER: "",
            UNTIL: EPOCH,
            **(extra or {}),
        }
        etag = lease.etag
        for _ in range(5):
            try:
                meta = await asyncio.to_thread(
                    self.table.update_entity,
                    body,
                    mode=UpdateMode.MERGE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
                lease.etag = meta["etag"]
                return
            except ResourceNotFoundError:
                return
            except ResourceModifiedError:
                # Changed by someone else (another field, or a takeover after expiry).
                current = await asyncio.to_thread(
                    self.table.get_entity, lease.partition_key, lease.row_key
                )
                if current.get(OWNER) != lease.owner:
                    body.pop(OWNER), body.pop(UNTIL)  # not ours anymore: leave it alone
                etag = str(current.metadata["etag"])
            except AzureError as exc:
                raise _unavailable() from exc
        raise _unavailable()
