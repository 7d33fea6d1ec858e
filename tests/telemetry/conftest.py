"""Telemetry fixtures (see ``telemetry_support`` for the pipeline they build)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from telemetry_support import _EXPORTER, _PROVIDER, NO_EXPORT, Otel, make_settings, uninstrument_all

from otel_mcp.telemetry.configurator import operation_duration_view
from otel_mcp.telemetry.setup import TelemetryOptions, setup_telemetry


@pytest.fixture
def otel_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Otel] = []

    def make(**setting_overrides: Any) -> Otel:
        _EXPORTER.clear()
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader], views=[operation_duration_view()])
        settings = make_settings(tmp_path, **setting_overrides)
        telemetry = setup_telemetry(
            settings, env=NO_EXPORT, options=TelemetryOptions.from_settings(settings),
            tracer_provider=_PROVIDER, meter_provider=meter_provider, set_global=False,
        )
        otel = Otel(_EXPORTER, reader, _PROVIDER, meter_provider, telemetry, settings, tmp_path)
        made.append(otel)
        return otel

    yield make
    for otel in made:
        otel.telemetry.shutdown()
        otel.meter_provider.shutdown()
    uninstrument_all()
    _EXPORTER.clear()


@pytest.fixture
def otel(otel_factory: Any) -> Otel:
    result: Otel = otel_factory()
    return result


