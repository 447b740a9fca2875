"""Which exporter the environment selects, and the sampling ratio (issue 19)."""

from __future__ import annotations

from functions.telemetry.setup import backend_for, sample_ratio


def test_azure_monitor_wins_then_otlp_then_nothing() -> None:
    both = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert backend_for(both) == "azure_monitor"
    assert backend_for({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == "otlp"
    assert backend_for({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}) == "otlp"
    assert backend_for({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}) is None
    assert backend_for({}) is None


def test_sample_ratio_is_clamped_and_defaults_to_all() -> None:
    assert sample_ratio({}) == 1.0
    assert sample_ratio({"OTEL_TRACES_SAMPLER_ARG": "0.1"}) == 0.1
    assert sample_ratio({"OTEL_TRACES_SAMPLER_ARG": "7"}) == 1.0
    assert sample_ratio({"OTEL_TRACES_SAMPLER_ARG": "-1"}) == 0.0
    assert sample_ratio({"OTEL_TRACES_SAMPLER_ARG": "lots"}) == 1.0
