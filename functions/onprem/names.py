"""Names of the storage resources the relay uses, derived from the table prefix.

Queue and container names must be 3-63 characters of lowercase letters, digits and
single hyphens, starting with a letter or digit. Table names are alphanumeric. The
gateway's table prefix is alphanumeric (see Settings), so it is lowercased here.

    {prefix}gateways          table: registrations (cloud writes)
    {prefix}gwheartbeats      table: last seen + agent version (agent writes)
    {prefix}gwclaims          table: one entity per executed request (agent writes)
    {prefix}gw-{id}-req       queue: requests for one gateway
    {prefix}gwr-{instance}    queue: responses for one gateway instance (cloud process)
    {prefix}gw-bodies         blob container: request/response bodies too big for a message
"""

from __future__ import annotations

import hashlib
import re

_QUEUE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


def _prefix(prefix: str) -> str:
    return re.sub(r"[^a-z0-9]", "", prefix.lower())


def _fit(name: str) -> str:
    """Keep a name under 63 characters: long prefixes are shortened to a hash."""
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[:46].rstrip('-')}-{digest}"


def gateways_table(prefix: str) -> str:
    return f"{prefix}gateways"


def heartbeats_table(prefix: str) -> str:
    return f"{prefix}gwheartbeats"


def claims_table(prefix: str) -> str:
    return f"{prefix}gwclaims"


def request_queue(prefix: str, gateway_id: str) -> str:
    return _checked(_fit(f"{_prefix(prefix)}gw-{gateway_id.lower()}-req"))


def response_queue(prefix: str, instance_id: str) -> str:
    return _checked(_fit(f"{_prefix(prefix)}gwr-{instance_id.lower()}"))


def response_queue_prefix(prefix: str) -> str:
    return f"{_prefix(prefix)}gwr-"


def body_container(prefix: str) -> str:
    return _checked(f"{_prefix(prefix)}gw-bodies")


def is_valid_queue_name(name: str) -> bool:
    return bool(_QUEUE.match(name))


def _checked(name: str) -> str:
    if not is_valid_queue_name(name):
        raise ValueError(f"not a valid queue or container name: {name!r}")
    return name
