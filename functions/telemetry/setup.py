"""Turning telemetry on: which exporter, which sampler (issue 19).

- APPLICATIONINSIGHTS_CONNECTION_STRING set: Azure Monitor exporters
  (`azure-monitor-opentelemetry-exporter`), authenticated with Entra ID through an
  azure-identity credential (the infra turns local authentication off, so the
  connection string's key is never used);
- else OTEL_EXPORTER_OTLP_ENDPOINT set: OTLP/HTTP (protobuf) exporters, configured by
  the standard OTEL_EXPORTER_OTLP_* variables;
- else nothing: `state.on` stays False and the helpers are no-ops.

Sampling: OTEL_TRACES_SAMPLER_ARG (a ratio, default 1.0) for root spans the gateway
starts, parent-based below them. Spans of the Azure SDKs (Key Vault, Table, queue
calls) are kept only inside a gateway trace: the relay's and the audit writer's
background polling would otherwise start a root span every second.

The SDK's providers are process-wide (OpenTelemetry sets them once), so the one
provider created here forwards to a switchable processor and sampler; tests reconfigure
it with their own exporters.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from functions.telemetry import Instruments, state

Backend = Literal["azure_monitor", "otlp"]
SERVICE_NAME = "connector-gateway"
# Root spans the gateway starts itself (others are dropped unless inside a trace).
_ROOT_PREFIXES = ("gateway.",)

log = logging.getLogger(__name__)


def backend_for(env: Mapping[str, str]) -> Backend | None:
    """Which exporter the environment asks for, Azure Monitor first."""
    if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip():
        return "azure_monitor"
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""
    ).strip():
        return "otlp"
    return None


def sample_ratio(env: Mapping[str, str]) -> float:
    raw = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        value = float(raw) if raw else 1.0
    except ValueError:
        return 1.0
    return min(max(value, 0.0), 1.0)


def configure_from_env(env: Mapping[str, str] | None = None) -> Backend | None:
    """Configure telemetry once per process from the environment; idempotent."""
    env = os.environ if env is None else env
    backend = backend_for(env)
    if backend is None or state.extras.get("backend") == backend:
        return backend
    if backend == "azure_monitor":
        span_exporter, metric_exporter, log_exporter = _azure_monitor_exporters(
            env["APPLICATIONINSIGHTS_CONNECTION_STRING"].strip()
        )
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter, metric_exporter, log_exporter = (
            OTLPSpanExporter(),
            OTLPMetricExporter(),
            OTLPLogExporter(),
        )
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    configure(
        span_processor=BatchSpanProcessor(span_exporter),
        metric_readers=[PeriodicExportingMetricReader(metric_exporter)],
        log_exporter=log_exporter,
        ratio=sample_ratio(env),
    )
    state.extras["backend"] = backend
    return backend


def _azure_monitor_exporters(connection_string: str) -> tuple[Any, Any, Any]:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
    from azure.monitor.opentelemetry.exporter import (
        AzureMonitorLogExporter,
        AzureMonitorMetricExporter,
        AzureMonitorTraceExporter,
    )

    # The function app's user-assigned identity when the infra names it, else the
    # default chain (a developer's az login).
    client_id = os.environ.get("AZURE_CLIENT_ID", "").strip()
    credential: Any = (
        ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
    )
    options = {"connection_string": connection_string, "credential": credential}
    return (
        AzureMonitorTraceExporter(**options),
        AzureMonitorMetricExporter(**options),
        AzureMonitorLogExporter(**options),
    )


def configure(
    *,
    span_processor: Any,
    metric_readers: Sequence[Any] = (),
    log_exporter: Any = None,
    ratio: float = 1.0,
) -> None:
    """Switch telemetry on with these exporters (replacing any earlier ones)."""
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider

    provider = _global_tracer_provider()
    switch: _Switch = state.extras["switch"]
    old = switch.processor
    switch.processor = span_processor
    switch.sampler = _sampler(ratio)
    if old is not None:
        old.shutdown()
    meter_provider = MeterProvider(
        metric_readers=list(metric_readers), resource=provider.resource
    )
    previous_meters = state.extras.get("meter_provider")
    state.extras["meter_provider"] = meter_provider
    if previous_meters is not None:
        previous_meters.shutdown()
    state.instruments = _instruments(meter_provider)
    state.tracer = trace.get_tracer(SERVICE_NAME)
    _configure_logs(log_exporter, provider.resource)
    _azure_sdk_tracing(True)
    state.on = True


def disable() -> None:
    """Back to off (tests): the helpers become no-ops again."""
    state.on = False
    switch = state.extras.get("switch")
    if switch is not None:
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        # Spans others start through the global provider (FastAPI's own) stop recording.
        switch.sampler = ALWAYS_OFF
        if switch.processor is not None:
            switch.processor.shutdown()
            switch.processor = None
    meters = state.extras.pop("meter_provider", None)
    if meters is not None:
        meters.shutdown()
    _configure_logs(None, None)
    _azure_sdk_tracing(False)
    state.instruments = None
    state.extras.pop("backend", None)


def force_flush() -> None:
    switch = state.extras.get("switch")
    if switch is not None and switch.processor is not None:
        switch.processor.force_flush()
    meters = state.extras.get("meter_provider")
    if meters is not None:
        meters.force_flush()
    logs = state.extras.get("logger_provider")
    if logs is not None:
        logs.force_flush()


# -- internals -------------------------------------------------------------------------


def _instruments(meter_provider: Any) -> Instruments:
    meter = meter_provider.get_meter(SERVICE_NAME)
    return Instruments(
        invocations=meter.create_counter(
            "gateway.invocations", unit="{invocation}", description="Invocations"
        ),
        invocation_duration=meter.create_histogram(
            "gateway.invocation.duration", unit="s", description="Time in the gateway per call"
        ),
        upstream_duration=meter.create_histogram(
            "gateway.upstream.duration", unit="s", description="Upstream time to headers"
        ),
        refreshes=meter.create_counter(
            "gateway.token.refreshes", unit="{refresh}", description="Token refresh outcomes"
        ),
        cache_lookups=meter.create_counter(
            "gateway.cache.lookups", unit="{lookup}", description="Cache lookups (hit or miss)"
        ),
        relay_queue_wait=meter.create_histogram(
            "gateway.relay.queue_wait",
            unit="s",
            description="Time a relayed request waited in the agent's queue",
        ),
    )


class _Switch:
    """A span processor and sampler whose targets can be replaced."""

    def __init__(self) -> None:
        self.processor: Any = None
        self.sampler: Any = None


def _global_tracer_provider() -> Any:
    existing = state.extras.get("tracer_provider")
    if existing is not None:
        return existing
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult

    switch = _Switch()

    class SwitchProcessor(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            if switch.processor is not None:
                switch.processor.on_start(span, parent_context=parent_context)

        def on_end(self, span: Any) -> None:
            if switch.processor is not None:
                switch.processor.on_end(span)

        def shutdown(self) -> None:
            if switch.processor is not None:
                switch.processor.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            if switch.processor is not None:
                return bool(switch.processor.force_flush(timeout_millis))
            return True

    class SwitchSampler(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            return switch.sampler.should_sample(*args, **kwargs)  # type: ignore[no-any-return]

        def get_description(self) -> str:
            return "gateway switch"

    resource = Resource.create({"service.name": SERVICE_NAME})
    provider = TracerProvider(sampler=SwitchSampler(), resource=resource)
    provider.add_span_processor(SwitchProcessor())
    trace.set_tracer_provider(provider)
    state.extras["tracer_provider"] = provider
    state.extras["switch"] = switch
    return provider


def _sampler(ratio: float) -> Any:
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )
    from opentelemetry.trace import SpanKind

    by_ratio = TraceIdRatioBased(ratio)

    class GatewayRoots(Sampler):
        """Root spans: the gateway's own (server spans, `gateway.*`) by ratio; others
        (SDK background polling) dropped."""

        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if kind == SpanKind.SERVER or name.startswith(_ROOT_PREFIXES):
                return by_ratio.should_sample(
                    parent_context, trace_id, name, kind, attributes, links, trace_state
                )
            return SamplingResult(Decision.DROP)

        def get_description(self) -> str:
            return f"GatewayRoots({ratio})"

    return ParentBased(root=GatewayRoots())


def _azure_sdk_tracing(on: bool) -> None:
    """Key Vault and Table calls as client spans, through azure-core's own tracing."""
    from azure.core.settings import settings

    settings.tracing_enabled = on


def _configure_logs(exporter: Any, resource: Any) -> None:
    """Export log records (already redacted by functions/logging_redaction.py) as
    OpenTelemetry logs; tracebacks go out only in their redacted form."""
    root = logging.getLogger()
    old_handler = state.extras.pop("log_handler", None)
    if old_handler is not None:
        root.removeHandler(old_handler)
    old_provider = state.extras.pop("logger_provider", None)
    if old_provider is not None:
        old_provider.shutdown()
    if exporter is None:
        return
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    class RedactedHandler(LoggingHandler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info:
                # The record factory redacted `exc_text`; the handler would format the
                # raw exception again. Send the redacted text in the message instead.
                text = record.exc_text or ""
                record = logging.makeLogRecord(
                    {**record.__dict__, "exc_info": None, "exc_text": None}
                )
                record.msg, record.args = f"{record.getMessage()}\n{text}".rstrip(), None
            super().emit(record)

    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # The SDK's handler is deprecated in favour of an instrumentation package that
        # would bring its own dependency pins; this one does what the gateway needs.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = RedactedHandler(level=logging.NOTSET, logger_provider=provider)
    root.addHandler(handler)
    state.extras["log_handler"] = handler
    state.extras["logger_provider"] = provider
