"""Process and system resource metrics: ``opentelemetry-instrumentation-system-metrics`` plus what it lacks.

The system-metrics instrumentation (psutil) provides the semconv process
metrics (CPU time and utilization, memory usage, open fds, threads, context
switches, disk I/O), CPython GC counts and system CPU/memory/disk/network,
restricted to ``names.SYSTEM_METRICS``. Added here by hand, because it lacks them:

- ``process.network.io{network.io.direction}``: bytes from ``/proc/self/net/dev``
  (the process's network namespace; in a container, the container's traffic);
- ``otel_mcp.storage.size{component}``: bytes on disk of the rule database
  (with its WAL and shared-memory files) and of the cache directory.

Usage
-----
.. code-block:: python

    from otel_mcp.telemetry.resources import ResourceInstrumentor

    ResourceInstrumentor().instrument(meter_provider=mp)
    ResourceInstrumentor.track_paths(db_path, cache_dir)   # once the server knows them

Configuration
-------------
``OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS`` is honoured by the system-metrics part; standard ``OTEL_*``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Final

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
from opentelemetry.metrics import CallbackOptions, Observation, get_meter
from opentelemetry.semconv.schemas import Schemas

from otel_mcp.telemetry import names
from otel_mcp.telemetry.package import _psutil_instruments
from otel_mcp.telemetry.version import __version__

logger = logging.getLogger(__name__)
SCHEMA_URL: Final = Schemas.V1_37_0.value
NET_DEV: Final = Path("/proc/self/net/dev")
_RECEIVE: Final = {names.NETWORK_IO_DIRECTION: "receive"}
_TRANSMIT: Final = {names.NETWORK_IO_DIRECTION: "transmit"}


def system_metrics_config() -> dict[str, list[str] | None]:
    """``names.SYSTEM_METRICS`` minus ``OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS`` (its own variable)."""
    import fnmatch

    excluded = [p.strip() for p in os.environ.get("OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS", "").split(",")]
    return {
        name: list(values) if values is not None else None
        for name, values in names.SYSTEM_METRICS.items()
        if not any(p and fnmatch.fnmatch(name, p) for p in excluded)
    }


def read_net_dev(path: Path = NET_DEV) -> tuple[int, int] | None:
    """(received, transmitted) bytes summed over the interfaces except ``lo``; None where unavailable."""
    try:
        lines = path.read_text().splitlines()[2:]
    except OSError:
        return None
    received = transmitted = 0
    for line in lines:
        iface, _, data = line.partition(":")
        fields = data.split()
        if iface.strip() == "lo" or len(fields) < 9:
            continue
        received += int(fields[0])
        transmitted += int(fields[8])
    return received, transmitted


def path_size(path: Path) -> int:
    """Bytes of a file (with ``-wal``/``-shm`` siblings) or of a directory tree; 0 if missing."""
    try:
        if path.is_dir():
            total = 0
            for root, _, files in os.walk(path):
                for name in files:
                    with contextlib.suppress(OSError):
                        total += os.stat(os.path.join(root, name)).st_size
            return total
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())
    except OSError:
        return 0


class ResourceInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """System metrics (delegated) and the two metrics they lack."""

    _system: SystemMetricsInstrumentor | None = None
    _paths: dict[str, Path] = {}  # noqa: RUF012  (component -> path, read by the storage-size callback)

    def instrumentation_dependencies(self) -> Collection[str]:
        return _psutil_instruments

    def _instrument(self, **kwargs: Any) -> None:
        meter_provider = kwargs.get("meter_provider")
        system = SystemMetricsInstrumentor(config=system_metrics_config())
        if not system.is_instrumented_by_opentelemetry:
            system.instrument(meter_provider=meter_provider)
            ResourceInstrumentor._system = system
        meter = get_meter(__name__, __version__, meter_provider, schema_url=SCHEMA_URL)
        ResourceInstrumentor.track_paths(kwargs.get("db_path"), kwargs.get("cache_dir"))
        attrs = {component: {names.COMPONENT: component} for component in ("database", "cache")}

        def storage(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(path_size(p), attrs[c]) for c, p in ResourceInstrumentor._paths.items()]

        def network(_: CallbackOptions) -> Iterable[Observation]:
            counts = read_net_dev()
            if counts is None:
                return []
            return [Observation(counts[0], _RECEIVE), Observation(counts[1], _TRANSMIT)]

        meter.create_observable_gauge(names.STORAGE_SIZE, [storage], unit="By", description="Bytes on disk")
        meter.create_observable_counter(
            names.PROCESS_NETWORK_IO, [network], unit="By", description="Network bytes of the process's namespace"
        )

    @staticmethod
    def track_paths(db_path: Path | str | None, cache_dir: Path | str | None) -> None:
        """Report the size of these (the server knows them once its settings are read)."""
        paths = {"database": db_path, "cache": cache_dir}
        ResourceInstrumentor._paths = {component: Path(p) for component, p in paths.items() if p}

    def _uninstrument(self, **kwargs: Any) -> None:
        ResourceInstrumentor._paths = {}
        if ResourceInstrumentor._system is not None:
            ResourceInstrumentor._system.uninstrument()
            ResourceInstrumentor._system = None
