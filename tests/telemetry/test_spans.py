"""Span and metric content, with an in-process exporter (issue 19)."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

from opentelemetry.trace import SpanKind

from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.conftest import GatewayUnderTest
from tests.telemetry.conftest import Traced

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _echo_connection(gateway: GatewayUnderTest, echo_url: str, key: str, **connector: Any) -> tuple[str, str]:
    with gateway.client() as client:
        if connector:
            response = client.post(
                "/api/connectors",
                json={
                    "name": "Traced echo",
                    "baseUrl": f"{echo_url}/v1",
                    "auth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                    **connector,
                },
            )
            assert response.status_code == 201, response.text
            created = response.json()
        else:
            created = create_connector(
                client, f"{echo_url}/v1", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            )
        connection = create_connection(client, created["id"], {"api_key": key})
    return created["id"], connection["id"]


def finished(traced: Traced, trace_id: str, kind: SpanKind = SpanKind.SERVER) -> list[Any]:
    """The finished spans once the request's `kind` span has ended: the server span
    ends just after the response is sent, so the client may see the answer first."""
    deadline = time.monotonic() + 10
    while True:
        spans = list(traced.spans.get_finished_spans())
        if any(s.kind == kind and s.context.trace_id == int(trace_id, 16) for s in spans):
            return spans
        assert time.monotonic() < deadline, [s.name for s in spans]
        time.sleep(0.02)


def _attributes(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_invoke_spans_metrics_and_propagation(gateway: GatewayUnderTest, echo: Any, traced: Traced) -> None:
    key = "telemetry-secret-" + secrets.token_hex(8)
    connector_id, connection_id = _echo_connection(gateway, echo.url, key)
    traced.spans.clear()
    with gateway.client() as client:
        response = client.get(f"/api/connections/{connection_id}/invoke/items/1?x=1")
    assert response.status_code == 200, response.text
    cid = response.headers["x-correlation-id"]
    spans = finished(traced, cid)
    server = [s for s in spans if s.kind == SpanKind.SERVER and s.context.trace_id == int(cid, 16)]
    assert len(server) == 1, [s.name for s in spans]
    server_span = server[0]
    # The correlation id is the request's trace id.
    assert format(server_span.context.trace_id, "032x") == cid
    assert server_span.attributes["http.response.status_code"] == 200
    assert server_span.attributes["gateway.connector.id"] == connector_id
    assert server_span.attributes["gateway.connection.id"] == connection_id
    assert server_span.attributes["gateway.caller.type"] == "user"
    assert "/items/1" not in server_span.name  # the route template, never the raw path
    upstream = [s for s in spans if s.kind == SpanKind.CLIENT and s.name == "GET upstream"]
    assert len(upstream) == 1
    client_span = upstream[0]
    assert client_span.parent is not None and client_span.parent.span_id == server_span.context.span_id
    assert client_span.attributes["gateway.connection.id"] == connection_id
    assert client_span.attributes["http.response.status_code"] == 200
    assert client_span.attributes["gateway.retry.count"] == 0
    # W3C traceparent went upstream, naming the client span.
    received = {k.lower(): v for k, v in response.json()["headers"]}
    version, trace_id, span_id, _flags = received["traceparent"].split("-")
    assert trace_id == cid
    assert span_id == format(client_span.context.span_id, "016x")
    # Nothing secret in any attribute of any span.
    for span in spans:
        text = json.dumps({k: str(v) for k, v in _attributes(span).items()}) + span.name
        assert key not in text
        assert "Bearer" not in text
    # Metrics: invocations by connector/operation/status class, both durations.
    data = traced.metrics.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    invocations = [
        p for p in points["gateway.invocations"] if p.attributes["gateway.connector.id"] == connector_id
    ]
    assert invocations and invocations[0].attributes["http.response.status_class"] == "2xx"
    assert invocations[0].attributes["gateway.operation.id"] == "raw"
    assert any(p.count >= 1 for p in points["gateway.invocation.duration"])
    assert any(
        p.attributes["gateway.connector.id"] == connector_id for p in points["gateway.upstream.duration"]
    )
    assert {p.attributes["gateway.cache"] for p in points["gateway.cache.lookups"]} >= {"connection", "secret"}


def test_propagation_switched_off_per_connector(gateway: GatewayUnderTest, echo: Any, traced: Traced) -> None:
    _, connection_id = _echo_connection(
        gateway, echo.url, "k" + secrets.token_hex(8), traceContextPropagation=False
    )
    with gateway.client() as client:
        response = client.get(f"/api/connections/{connection_id}/invoke/x")
        connector = client.get(f"/api/connections/{connection_id}").json()["connectorId"]
        shown = client.get(f"/api/connectors/{connector}").json()
    assert response.status_code == 200
    names = {k.lower() for k, _ in response.json()["headers"]}
    assert "traceparent" not in names and "tracestate" not in names
    assert shown["traceContextPropagation"] is False


def test_problem_correlation_id_is_the_trace_id(gateway: GatewayUnderTest, traced: Traced) -> None:
    caller_trace = secrets.token_hex(16)
    with gateway.client() as client:
        response = client.get(
            "/api/connections/c0000000000000000000000000000000",
            headers={"traceparent": f"00-{caller_trace}-{secrets.token_hex(8)}-01"},
        )
    body = assert_problem(response, 404, "connection_not_found")
    # The caller's trace continues: the problem names it, and so does the span.
    assert body["correlationId"] == caller_trace == response.headers["x-correlation-id"]
    server = [s for s in finished(traced, caller_trace) if s.kind == SpanKind.SERVER]
    assert any(format(s.context.trace_id, "032x") == caller_trace for s in server)


def test_key_vault_and_table_calls_are_spans_of_the_request(gateway: GatewayUnderTest, echo: Any, traced: Traced) -> None:
    with gateway.client() as client:
        connector = create_connector(client, f"{echo.url}/v1", {"type": "basic"})
        traced.spans.clear()
        response = client.post(
            f"/api/connectors/{connector['id']}/connections",
            json={"displayName": "kv", "parameters": {"username": "u", "password": "p" + secrets.token_hex(8)}},
        )
    assert response.status_code == 201, response.text
    cid = response.headers["x-correlation-id"]
    in_trace = [s for s in finished(traced, cid) if s.context.trace_id == int(cid, 16)]
    names = {s.name for s in in_trace}
    # azure-core's own spans, inside the request's trace: the secret write and the rows.
    assert "SecretClient.set_secret" in names, names
    assert "TableClient.create_entity" in names, names
    assert any(s.attributes.get("url.full", "").startswith(gateway.settings.key_vault_url or "?") for s in in_trace)


def test_off_means_random_ids_and_no_spans(gateway: GatewayUnderTest) -> None:
    from functions import telemetry

    assert telemetry.state.on is False
    with gateway.client() as client:
        first = client.get("/api/connections/c0000000000000000000000000000000")
        second = client.get("/api/connections/c0000000000000000000000000000000")
    ids = [assert_problem(r, 404, "connection_not_found")["correlationId"] for r in (first, second)]
    assert all(HEX32.match(i) for i in ids) and ids[0] != ids[1]
    assert telemetry.span("gateway.x") is telemetry.span("gateway.y")  # the shared no-op


def test_unsampled_requests_still_answer_with_their_trace_id(gateway: GatewayUnderTest) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from functions.telemetry import setup

    exporter = InMemorySpanExporter()
    setup.configure(span_processor=SimpleSpanProcessor(exporter), ratio=0.0)
    try:
        with gateway.client() as client:
            response = client.get("/api/connections/c0000000000000000000000000000000")
        body = assert_problem(response, 404, "connection_not_found")
        assert HEX32.match(body["correlationId"])
        time.sleep(0.3)
        assert exporter.get_finished_spans() == ()  # sampled out: nothing recorded
    finally:
        setup.disable()


def test_token_refresh_is_a_span_of_the_call_and_counted(
    gateway: GatewayUnderTest, oidc: Any, echo: Any, traced: Traced
) -> None:
    from tests.api.test_oauth_connections import (
        SHORT_TTL,
        connected,
        oauth_connector,
        wait_until_due,
    )

    oidc.configure(accessTokenTtl=SHORT_TTL)  # due for refresh within a second of consent
    try:
        with gateway.client("traced-oauth") as client:
            connection = connected(gateway, client, oidc, oauth_connector(client, oidc, echo.url))
            oidc.configure(accessTokenTtl=3600)
            wait_until_due(connection)
            response = client.get(f"/api/connections/{connection['id']}/invoke/x")
    finally:
        oidc.configure(accessTokenTtl=3600)
    assert response.status_code == 200, response.text
    cid = response.headers["x-correlation-id"]
    spans = [s for s in finished(traced, cid) if s.context.trace_id == int(cid, 16)]
    refresh = [s for s in spans if s.name == "gateway.token.refresh"]
    assert len(refresh) == 1 and refresh[0].kind == SpanKind.CLIENT
    assert refresh[0].attributes["gateway.outcome"] == "refreshed"
    for span in spans:  # the tokens themselves never become attributes
        assert not any("eyJ" in str(v) for v in (span.attributes or {}).values())
    data = traced.metrics.get_metrics_data()
    assert data is not None
    outcomes = [
        p.attributes["gateway.outcome"]
        for r in data.resource_metrics
        for sc in r.scope_metrics
        for m in sc.metrics
        if m.name == "gateway.token.refreshes"
        for p in m.data.data_points
    ]
    assert "refreshed" in outcomes
