from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from functions.telemetry import setup

# The on-premises relay's fixtures, for the relay-hop trace test.
from tests.onprem.conftest import (  # noqa: F401
    make_gateway,
    ntlm,
    prefix,
    registry,
    relay,
    start_agent,
    storage,
)


@dataclass
class Traced:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader


@pytest.fixture
def traced() -> Iterator[Traced]:
    """Telemetry on, exporting in process; off again afterwards (it is process-wide)."""
    spans = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    setup.configure(span_processor=SimpleSpanProcessor(spans), metric_readers=[metrics])
    try:
        yield Traced(spans, metrics)
    finally:
        setup.disable()
