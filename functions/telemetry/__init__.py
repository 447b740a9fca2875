"""OpenTelemetry traces, metrics and logs for the gateway (issue 19).

Off unless configured (`functions/telemetry/setup.py`: Azure Monitor when
APPLICATIONINSIGHTS_CONNECTION_STRING is set, OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT
is). Off, every helper here checks one module attribute (`state.on`) and returns a
shared no-op: no span object, no attribute dict kept, no clock read.

What a span may carry is fixed here (`_ATTRIBUTES`): ids, operation, caller type,
status, error code, retry count. Never a secret, a token, a body, a user's name or
e-mail, nor the invoked path (it may carry any of those); the route template instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx
    from opentelemetry.metrics import Counter, Histogram
    from opentelemetry.trace import Span, Tracer

    from functions.identity.principal import Principal
    from functions.services.connections import ResolvedConnection
    from functions.upstream.request import OutgoingRequest

# Span attribute names: the only keys helpers accept (anything else is a bug).
_ATTRIBUTES = {
    "connector_id": "gateway.connector.id",
    "connection_id": "gateway.connection.id",
    "operation_id": "gateway.operation.id",
    "caller_type": "gateway.caller.type",
    "status": "http.response.status_code",
    "error_code": "error.type",
    "retry_count": "gateway.retry.count",
    "outcome": "gateway.outcome",
    "event_type": "gateway.event.type",
    "subscription_id": "gateway.webhook.subscription.id",
    "gateway_id": "gateway.onprem.gateway.id",
}


@dataclass
class Instruments:
    invocations: Counter
    invocation_duration: Histogram
    upstream_duration: Histogram
    refreshes: Counter
    cache_lookups: Counter
    relay_queue_wait: Histogram


@dataclass
class State:
    """What is configured. `on` is the one flag the hot path reads."""

    on: bool = False
    tracer: Tracer | None = None
    instruments: Instruments | None = None
    extras: dict[str, Any] = field(default_factory=dict)


state = State()

_NOOP: AbstractContextManager[None] = nullcontext()


def attributes(**values: Any) -> dict[str, Any]:
    """Span/metric attributes from the allowed keys; None values are left out."""
    return {_ATTRIBUTES[key]: value for key, value in values.items() if value is not None}


def span(name: str, **values: Any) -> AbstractContextManager[Span | None]:
    """An internal span (e.g. `gateway.webhook.deliver`), or a no-op when off."""
    if not state.on or state.tracer is None:
        return _NOOP
    return state.tracer.start_as_current_span(name, attributes=attributes(**values))


def client_span(name: str, **values: Any) -> AbstractContextManager[Span | None]:
    """A client span (a call leaving the gateway), or a no-op when off."""
    if not state.on or state.tracer is None:
        return _NOOP
    from opentelemetry.trace import SpanKind

    return state.tracer.start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes=attributes(**values)
    )


def set_attributes(target: Span | None, **values: Any) -> None:
    if target is not None:
        target.set_attributes(attributes(**values))


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def inject(headers: httpx.Headers | dict[str, str] | list[tuple[str, str]]) -> None:
    """Add W3C `traceparent` (and `tracestate`) of the current span to `headers`."""
    if not state.on:
        return
    from opentelemetry.propagate import inject as otel_inject

    carrier: dict[str, str] = {}
    otel_inject(carrier)
    if isinstance(headers, list):
        lowered = {name.lower() for name in carrier}
        headers[:] = [(k, v) for k, v in headers if k.lower() not in lowered]
        headers.extend(carrier.items())
    else:
        for name, value in carrier.items():
            headers[name] = value


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None (no span, or tracing off)."""
    if not state.on:
        return None
    from opentelemetry.trace import get_current_span

    context = get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


# -- the invoke path -------------------------------------------------------------------


async def traced_send(
    http: httpx.AsyncClient,
    request: httpx.Request,
    auth: httpx.Auth,
    resolved: ResolvedConnection,
    retry_count: int = 0,
) -> httpx.Response:
    """Send an upstream request (streamed, no redirects) inside a client span, with
    `traceparent` unless the connector switched propagation off."""
    if not state.on or state.tracer is None:
        return await http.send(request, auth=auth, stream=True, follow_redirects=False)
    from opentelemetry.trace import SpanKind, Status, StatusCode

    connector_id = resolved.connector.id
    started = time.perf_counter()
    with state.tracer.start_as_current_span(
        f"{request.method} upstream",
        kind=SpanKind.CLIENT,
        attributes={
            **attributes(
                connector_id=connector_id,
                connection_id=resolved.connection.id,
                retry_count=retry_count,
            ),
            "http.request.method": request.method,
            "server.address": request.url.host,
        },
    ) as current:
        if resolved.connector.propagate_trace_context:
            inject(request.headers)
        try:
            response = await http.send(request, auth=auth, stream=True, follow_redirects=False)
        except Exception as exc:
            current.set_attribute("error.type", type(exc).__name__)
            current.set_status(Status(StatusCode.ERROR))
            raise
        finally:
            if state.instruments is not None:
                state.instruments.upstream_duration.record(
                    time.perf_counter() - started, {"gateway.connector.id": connector_id}
                )
        current.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            current.set_status(Status(StatusCode.ERROR))
        return response


def relay_span(
    resolved: ResolvedConnection, request: OutgoingRequest
) -> AbstractContextManager[Span | None]:
    """The on-premises hop: a producer span whose context travels to the agent as
    `traceparent` in the relayed request's headers (unless propagation is off, then
    the agent starts its own trace)."""
    if not state.on or state.tracer is None:
        return _NOOP
    return _relay_span(resolved, request)


@contextmanager
def _relay_span(resolved: ResolvedConnection, request: OutgoingRequest) -> Iterator[Span | None]:
    from opentelemetry.trace import SpanKind

    assert state.tracer is not None
    with state.tracer.start_as_current_span(
        "gateway.relay.send",
        kind=SpanKind.PRODUCER,
        attributes=attributes(
            connector_id=resolved.connector.id,
            connection_id=resolved.connection.id,
            gateway_id=str(resolved.parameters.get("gatewayId", "")) or None,
        ),
    ) as current:
        if resolved.connector.propagate_trace_context:
            inject(request.headers)
        yield current


def invocation_done(
    caller: Principal,
    resolved: ResolvedConnection | None,
    operation_id: str | None,
    status: int,
    error_code: str | None,
    started: float,
) -> None:
    """Count an invocation and its gateway-side duration; tag the request's span."""
    if not state.on:
        return
    from opentelemetry.trace import get_current_span

    connector_id = resolved.connector.id if resolved else None
    get_current_span().set_attributes(
        attributes(
            connector_id=connector_id,
            connection_id=resolved.connection.id if resolved else None,
            operation_id=operation_id,
            caller_type=caller.kind,
            error_code=error_code,
        )
    )
    if state.instruments is None:
        return
    labels = {
        "gateway.connector.id": connector_id or "unknown",
        "gateway.operation.id": operation_id or "raw",
        "http.response.status_class": status_class(status),
    }
    state.instruments.invocations.add(1, labels)
    state.instruments.invocation_duration.record(time.perf_counter() - started, labels)


def record_refresh(outcome: str) -> None:
    """Token refresh outcomes: refreshed, reauthorization_required, transient, failed."""
    if state.on and state.instruments is not None:
        state.instruments.refreshes.add(1, {"gateway.outcome": outcome})


def record_cache(cache: str, hit: bool) -> None:
    """Cache lookups by cache and hit/miss (the hit ratio is hits / lookups)."""
    if state.on and state.instruments is not None:
        state.instruments.cache_lookups.add(
            1, {"gateway.cache": cache, "gateway.cache.hit": hit}
        )


def relay_hop(
    headers: list[tuple[str, str]], queued_seconds: float | None
) -> AbstractContextManager[Any]:
    """The on-premises agent continues the gateway's trace (its `traceparent` travels in
    the relay message's headers) and reports how long the request waited in the queue."""
    if not state.on or state.tracer is None:
        return _NOOP
    return _relay_hop(headers, queued_seconds)


@contextmanager
def _relay_hop(headers: list[tuple[str, str]], queued_seconds: float | None) -> Iterator[None]:
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    carrier = {k.lower(): v for k, v in headers if k.lower() in ("traceparent", "tracestate")}
    assert state.tracer is not None
    with state.tracer.start_as_current_span(
        "gateway.relay.execute", kind=SpanKind.CONSUMER, context=extract(carrier)
    ):
        if queued_seconds is not None and state.instruments is not None:
            state.instruments.relay_queue_wait.record(max(queued_seconds, 0.0))
        yield


def extract_context(headers: Mapping[str, str]) -> Any:
    from opentelemetry.propagate import extract

    return extract(dict(headers))


# -- the inbound request -----------------------------------------------------------------


def server_span(scope: Mapping[str, Any]) -> AbstractContextManager[Span | None]:
    """The inbound request's server span, continuing the caller's W3C trace context;
    None when tracing is off (the shared no-op: nothing is built per request). Named by
    method and route template (never the raw path, which may carry ids, names or e-mail
    addresses of the upstream's users)."""
    if not state.on or state.tracer is None:
        return _NOOP
    return _server_span(scope)


@contextmanager
def _server_span(scope: Mapping[str, Any]) -> Iterator[Span | None]:
    from opentelemetry.trace import SpanKind

    assert state.tracer is not None

    carrier: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        if name in (b"traceparent", b"tracestate"):
            carrier[name.decode("latin-1")] = value.decode("latin-1")
    method = str(scope.get("method", "GET"))
    with state.tracer.start_as_current_span(
        method,
        kind=SpanKind.SERVER,
        context=extract_context(carrier),
        attributes={"http.request.method": method},
    ) as current:
        try:
            yield current
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if isinstance(template, str):
                current.update_name(f"{method} {template}")
                current.set_attribute("http.route", template)


def trace_id_of(current: Span | None) -> str | None:
    if current is None:
        return None
    context = current.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def queued_seconds(message: Any) -> float | None:
    """How long a Storage queue message waited before this receive (None if unknown)."""
    if not state.on:
        return None
    from datetime import UTC, datetime

    inserted = getattr(message, "inserted_on", None)
    if not isinstance(inserted, datetime):
        return None
    if inserted.tzinfo is None:
        inserted = inserted.replace(tzinfo=UTC)
    return (datetime.now(UTC) - inserted).total_seconds()
