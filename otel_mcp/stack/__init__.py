"""The local observability stack: an OpenTelemetry Collector, Jaeger v2 and Prometheus.

The binaries are built (Collector, Jaeger) or installed (Prometheus) once into a cache and
run as child processes with the config files in ``collector/``, ``jaeger/`` and
``prometheus/``. Everything listens on 127.0.0.1.

Usage
-----

.. code-block:: python

    from otel_mcp import stack

    stack.install()                  # build/install what is missing (minutes the first time)
    st = stack.up()                  # start, wait until healthy, print the URLs
    print(st.urls["jaeger_api"])
    stack.down()

or from the shell: ``otel-mcp stack install|up [--foreground]|down|status``.

Configuration
-------------

- ``OTEL_MCP_CACHE_DIR``: binary cache (default ``~/.cache/otel-mcp/bin``)
- ``OTEL_MCP_STATE_DIR``: logs, data, pid files (default ``~/.local/state/otel-mcp/stack``)
- ``OTEL_MCP_STACK_CONFIG_DIR``: folder holding ``collector/``, ``jaeger/``, ``prometheus/`` (default: the
  wheel's copy in ``otel_mcp/stack/config/``, else the checkout's top-level folders)
- ``OTEL_MCP_PROMETHEUS_BIN_DIR``: folder with ``prometheus`` and ``promtool`` to use
- ``OTEL_MCP_JAEGER_UI_SOURCE``: Jaeger UI source or built assets, folder or ``.tar.gz``
  (default: the GitHub tag; see :mod:`otel_mcp.stack.jaeger_ui`)
- ``OTELCOL_*``, ``JAEGER_*``, ``OTEL_MCP_PROMETHEUS_ADDRESS``: endpoints (see docs/stack.md)
"""

from otel_mcp.stack._settings import cache_dir, config_root, default_state_dir
from otel_mcp.stack.cli import register_cli
from otel_mcp.stack.installer import Binaries, InstallError, find_binaries, install
from otel_mcp.stack.supervisor import (
    ComponentStatus,
    StackError,
    StackStatus,
    component_urls,
    down,
    format_status,
    status,
    up,
)

__all__ = [
    "Binaries",
    "ComponentStatus",
    "InstallError",
    "StackError",
    "StackStatus",
    "cache_dir",
    "component_urls",
    "config_root",
    "default_state_dir",
    "down",
    "find_binaries",
    "format_status",
    "install",
    "register_cli",
    "status",
    "up",
]
