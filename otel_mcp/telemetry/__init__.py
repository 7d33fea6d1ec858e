"""OpenTelemetry for otel-mcp: setup from the standard environment, and one instrumentor per concern.

Domain modules (store, compose, cache) import nothing from OpenTelemetry;
everything here wraps them from outside (``wrapt``), in the style of
opentelemetry-python-contrib, and is registered under the
``opentelemetry_instrumentor`` entry point so ``opentelemetry-instrument``
finds it. ``docs/telemetry.md`` lists every span, metric and attribute.
"""

from otel_mcp.telemetry.setup import Telemetry, TelemetryOptions, setup_telemetry

__all__ = ["Telemetry", "TelemetryOptions", "setup_telemetry"]
