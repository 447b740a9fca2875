"""Delivery: signed events for each transition, in order per connection, retried
while the receiver is down, failing after the retry window, and never in the way of
an invocation (issue 19)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.api.helpers import create_connection, create_connector
from tests.api.test_oauth_connections import connected, consent, oauth_connector
from tests.conftest import GatewayUnderTest
from tests.webhooks.conftest import subscribe
from tests.webhooks.receiver import Receiver


def _types(arrivals: list[Any]) -> list[str]:
    return [a.body["type"] for a in arrivals]


def _apikey_connection(client: Any, echo: Any, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    connector = create_connector(client, f"{echo.url}/v1", {"type": "apiKey", "in": "header", "name": "X-Key"})
    return connector, create_connection(client, connector["id"], {"api_key": key})


def test_lifecycle_events_are_signed_and_carry_no_credentials(
    hooks: GatewayUnderTest, echo: Any, receiver: Receiver
) -> None:
    key = "webhook-lifecycle-secret-key"
    with hooks.client("life-owner") as owner, hooks.client("life-admin", roles=["Gateway.Admin"]) as admin:
        subscribe(owner, receiver)
        _, connection = _apikey_connection(owner, echo, key)
        cid = connection["id"]
        share = {"principal": {"type": "user", "id": "00000000-0000-4000-8000-0000000000bb"}}
        assert owner.post(f"/api/connections/{cid}/shares", json=share).status_code == 201
        assert owner.request("DELETE", f"/api/connections/{cid}/shares", json=share).status_code == 204
        assert admin.post(f"/api/admin/connections/{cid}/disable").status_code == 200
        assert admin.post(f"/api/admin/connections/{cid}/enable").status_code == 200
        assert owner.delete(f"/api/connections/{cid}").status_code == 204
    expected = [
        "connection.created",
        "connection.share_granted",
        "connection.share_revoked",
        "connection.disabled",
        "connection.recovered",
        "connection.deleted",
    ]
    receiver.wait_for(lambda got: len([a for a in got if a.body["data"]["connectionId"] == cid]) >= len(expected))
    arrivals = receiver.accepted_for(cid)
    assert _types(arrivals) == expected  # in order
    assert all(a.verified for a in arrivals)  # the standardwebhooks library agrees
    assert len({a.webhook_id for a in arrivals}) == len(arrivals)
    first = arrivals[0].body
    assert first["data"]["connectorId"] and first["data"]["status"] == "connected"
    assert arrivals[1].body["data"]["principal"].startswith("user:")
    assert arrivals[3].body["data"]["reasonCode"] == "admin"
    assert arrivals[-1].body["data"]["status"] == "deleted"
    for arrival in arrivals:
        assert key.encode() not in arrival.raw


def test_oauth_failure_modes_drive_health_events(
    hooks: GatewayUnderTest, oidc: Any, echo: Any, receiver: Receiver
) -> None:
    """Transient provider failure -> refresh_failed (will retry) -> recovered after a
    good refresh; revoked grant -> refresh_failed (no retry) + reauthorization_required
    once -> consent -> consent_completed + recovered."""
    with hooks.client("oauth-health") as client, hooks.client("oauth-health-admin", roles=["Gateway.Admin"]) as admin:
        subscribe(client, receiver)
        connector = oauth_connector(client, oidc, echo.url)
        oidc.configure(accessTokenTtl=1)  # expired a second after consent
        flaky = connected(hooks, client, oidc, connector)["id"]
        revoked = connected(hooks, client, oidc, connector)["id"]
        oidc.configure(accessTokenTtl=3600)
        secret = asyncio.run(hooks.state.secrets.get_secret(f"conn-{revoked}"))
        oidc.revoke(json.loads(secret.value)["oauth"]["refresh_token"])
        time.sleep(1.5)
        oidc.configure(failTokenRequests=1)
        transient = client.get(f"/api/connections/{flaky}/invoke/x")
        assert transient.status_code == 503, transient.text
        for _ in range(3):
            assert client.get(f"/api/connections/{revoked}/invoke/x").status_code == 401
        reauth_only = client.get("/api/connections", params={"status": "reauthorization_required"}).json()["value"]
        assert [c["id"] for c in reauth_only] == [revoked]
        receiver.wait_for(lambda got: len([a for a in got if a.body["data"]["connectionId"] == revoked]) >= 4)
        receiver.wait_for(lambda got: any(a.body["data"]["connectionId"] == flaky and a.body["type"] == "connection.refresh_failed" for a in got))
        # The provider's backoff (Retry-After 7 s) passes; the next call refreshes.
        deadline = time.monotonic() + 30
        while client.get(f"/api/connections/{flaky}/invoke/x").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(1)
        fresh = client.post(f"/api/connections/{revoked}/reauthorize").json()
        assert consent(hooks, oidc, fresh["consentUrl"]).status_code == 200
        summary = {s["connectorId"]: s for s in admin.get("/api/admin/connection-health").json()["value"]}
    receiver.wait_for(lambda got: "connection.recovered" in _types([a for a in got if a.body["data"]["connectionId"] == flaky]))
    receiver.wait_for(lambda got: _types([a for a in got if a.body["data"]["connectionId"] == revoked])[-1:] == ["connection.recovered"])
    flaky_events = receiver.accepted_for(flaky)
    assert _types(flaky_events) == [
        "connection.created", "connection.consent_completed", "connection.refresh_failed", "connection.recovered"
    ]
    failed = flaky_events[2].body["data"]
    assert failed["willRetry"] is True and failed["attempt"] == 1 and failed["reasonCode"]
    assert flaky_events[3].body["data"]["reasonCode"] == "token_refreshed"
    revoked_events = receiver.accepted_for(revoked)
    assert _types(revoked_events) == [
        "connection.created",
        "connection.consent_completed",
        "connection.refresh_failed",
        "connection.reauthorization_required",  # once, though three calls failed
        "connection.consent_completed",
        "connection.recovered",
    ]
    assert revoked_events[2].body["data"]["willRetry"] is False
    assert revoked_events[3].body["data"]["status"] == "reauthorization_required"
    assert all(a.verified for a in flaky_events + revoked_events)
    last = summary[connector["id"]]["lastFailure"]
    assert last is not None and last["connectionId"] in (flaky, revoked)
    # No token ever goes out in a webhook.
    tokens = json.loads(asyncio.run(hooks.state.secrets.get_secret(f"conn-{revoked}")).value)["oauth"]
    for arrival in flaky_events + revoked_events:
        assert tokens["access_token"].encode() not in arrival.raw
        assert tokens["refresh_token"].encode() not in arrival.raw


def test_receiver_down_then_back_gets_each_event_once_in_order(
    hooks: GatewayUnderTest, echo: Any, receiver: Receiver
) -> None:
    receiver.fail_with = 503
    with hooks.client("down-owner") as client:
        subscribe(client, receiver, ["connection.created", "connection.share_granted", "connection.share_revoked"])
        ids = []
        for n in range(2):
            _, connection = _apikey_connection(client, echo, f"down-key-{n}")
            share = {"principal": {"type": "group", "id": f"00000000-0000-4000-8000-00000000000{n}"}}
            assert client.post(f"/api/connections/{connection['id']}/shares", json=share).status_code == 201
            assert client.request("DELETE", f"/api/connections/{connection['id']}/shares", json=share).status_code == 204
            ids.append(connection["id"])
        deadline = time.monotonic() + 20
        while len([a for a in receiver.arrivals if a.status == 503]) < 4:  # retried while down
            assert time.monotonic() < deadline
            time.sleep(0.1)
        receiver.fail_with = None
        receiver.wait_for(lambda got: len(got) >= 6)
        time.sleep(1.5)  # nothing more arrives: delivered once
        hook = client.get("/api/webhooks").json()["value"][0]
    accepted = receiver.accepted()
    assert len(accepted) == 6 and len({a.webhook_id for a in accepted}) == 6
    for cid in ids:
        assert _types(receiver.accepted_for(cid)) == [
            "connection.created", "connection.share_granted", "connection.share_revoked"
        ]
    # Every retry of one event carried the same webhook-id.
    failed_ids = {a.webhook_id for a in receiver.arrivals if a.status == 503}
    assert failed_ids <= {a.webhook_id for a in accepted}
    assert hook["status"] == "active"


def test_receiver_down_past_the_retry_window_marks_the_webhook_failing(
    hooks: GatewayUnderTest, echo: Any, receiver: Receiver
) -> None:
    receiver.fail_with = 500
    with hooks.client("failing-owner") as client:
        hook = subscribe(client, receiver, ["connection.created"])
        _apikey_connection(client, echo, "failing-key")
        deadline = time.monotonic() + 30
        while (shown := client.get(f"/api/webhooks/{hook['id']}").json())["status"] != "failing":
            assert time.monotonic() < deadline, shown
            time.sleep(0.3)
        assert "500" in shown["lastError"] and shown["failingSince"]
        # A later event that gets through makes it active again.
        receiver.fail_with = None
        _, connection = _apikey_connection(client, echo, "failing-key-2")
        receiver.wait_for(lambda got: any(a.body["data"]["connectionId"] == connection["id"] for a in got))
        deadline = time.monotonic() + 10
        while client.get(f"/api/webhooks/{hook['id']}").json()["status"] != "active":
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_slow_receiver_does_not_slow_invocations(
    hooks: GatewayUnderTest, echo: Any, receiver: Receiver
) -> None:
    receiver.delay = 2.5
    with hooks.client("slow-owner") as client:
        subscribe(client, receiver)
        _, connection = _apikey_connection(client, echo, "slow-key")
        share = {"principal": {"type": "user", "id": "00000000-0000-4000-8000-0000000000cc"}}
        for _ in range(3):  # six events: 15 s of receiver time, delivered one by one
            client.post(f"/api/connections/{connection['id']}/shares", json=share)
            client.request("DELETE", f"/api/connections/{connection['id']}/shares", json=share)
        deadline = time.monotonic() + 20
        # The first delivery is through; the next ones are hanging at the receiver.
        while not receiver.arrivals and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = []
        for _ in range(10):
            started = time.monotonic()
            assert client.get(f"/api/connections/{connection['id']}/invoke/x").status_code == 200
            latencies.append(time.monotonic() - started)
    # Each call takes its usual time (generous bound on a loaded machine), far below
    # the receiver's 2.5 s per delivery.
    assert max(latencies) < 2.0, latencies
    assert sum(latencies) < 10, latencies
