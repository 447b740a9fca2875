from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.onprem.keys import generate_private_key, public_key_pem
from functions.onprem.registry import ONLINE_WINDOW_SECONDS, GatewayRegistry
from tests.onprem.conftest import OWNER, TENANT


async def test_register_get_list_touch(registry: GatewayRegistry) -> None:
    pem = public_key_pem(generate_private_key(2048))
    first = await registry.register(TENANT, OWNER, "first", pem)
    await registry.register(TENANT, OWNER, "second", pem)
    await registry.register(TENANT, "someone-else", "theirs", pem)

    got = await registry.get(TENANT, first.id)
    assert got is not None and got.name == "first" and got.fingerprint == first.fingerprint
    assert got.last_seen is None and got.status() == "offline"
    assert await registry.get(TENANT, "0" * 32) is None
    assert await registry.get("other-tenant", first.id) is None

    await registry.touch(TENANT, first.id, "1.2.3")
    got = await registry.get(TENANT, first.id)
    assert got is not None and got.status() == "online" and got.agent_version == "1.2.3"

    mine = await registry.list_for_owner(TENANT, OWNER)
    assert [g.name for g in mine] == ["first", "second"]
    assert [g.status() for g in mine] == ["online", "offline"]


async def test_status_window(registry: GatewayRegistry) -> None:
    record = await registry.register(
        TENANT, OWNER, "gw", public_key_pem(generate_private_key(2048))
    )
    stale = datetime.now(UTC) - timedelta(seconds=ONLINE_WINDOW_SECONDS + 1)
    await registry.touch(TENANT, record.id, "1.0.0", last_seen=stale)
    got = await registry.get(TENANT, record.id)
    assert got is not None and got.status() == "offline"
    assert ONLINE_WINDOW_SECONDS == 10  # issue 12: short, about 3 heartbeats of 3 s


async def test_refuses_weak_keys(registry: GatewayRegistry) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError):
        await registry.register(TENANT, OWNER, "weak", public_key_pem(weak))
