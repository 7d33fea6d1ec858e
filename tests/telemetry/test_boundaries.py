"""The boundaries around private SDK names (``sdk_internals``, ``mcp_internals``): pinned, checked, replaceable.

The version tests fail loudly when an installed SDK leaves the range the fast paths were tested with (update
``TESTED`` / ``TESTED_MCP`` and pyproject together, after running these tests on the new version). Without the
private names the server still starts, serves and exports, on the stock SDK.
"""

from __future__ import annotations

import ast
import importlib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from telemetry_support import Otel, instrumented_server
from test_launch_paths import FAST_EXPORT, Receiver
from test_live import _calls, _seed, live_server

from otel_mcp import mcp_internals
from otel_mcp.telemetry import sdk_internals
from otel_mcp.telemetry.bound import BoundHistogram, bind

PACKAGE = Path(__file__).resolve().parents[2] / "otel_mcp"


def test_installed_opentelemetry_is_the_tested_range() -> None:
    assert sdk_internals._version_problem() is None, (
        f"{sdk_internals._version_problem()}: run the telemetry tests on it (also with OTEL_MCP_FASTPATH=off), "
        "then move sdk_internals.TESTED and pyproject's ranges together")


def test_installed_mcp_is_the_tested_version() -> None:
    assert version("mcp") == mcp_internals.TESTED_MCP, "move mcp_internals.TESTED_MCP with pyproject's mcp pin"


def test_every_private_name_the_fast_paths_use_exists() -> None:
    assert sdk_internals._missing_name() is None
    assert mcp_internals.otel_module() is not None


def test_no_private_name_is_imported_outside_the_boundaries() -> None:
    """``from opentelemetry...x import _y`` / ``import ..._z`` only in the two boundary modules (the logs signal's
    and the incubating conventions' modules, and the log exporters' ``_log_exporter``, are public in practice)."""
    public_in_practice = ("opentelemetry._logs", "opentelemetry.sdk._logs", "_incubating", "._log_exporter")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("sdk_internals.py", "mcp_internals.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("opentelemetry",
                                                                                                  "mcp"):
                names = [a.name for a in node.names]
                private = any(part.startswith("_") for part in node.module.split(".")) or any(
                    n.startswith("_") for n in names)
                if private and not any(p in node.module for p in public_in_practice):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.module} {names}")
    assert offenders == []


def _private_self_attributes(root: Path) -> set[str]:
    """``_name`` attributes the code under ``root`` sets or reads on its own objects (``self._name``)."""
    return {node.attr for path in root.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")}


def test_no_private_attribute_of_the_mcp_sdk_is_read_outside_its_boundary() -> None:
    """``server._lowlevel_server``, ``session._connection``, ``manager._server_instances``... only in mcp_internals."""
    import mcp

    sdk_private = _private_self_attributes(Path(mcp.__file__).parent) - _private_self_attributes(PACKAGE)
    offenders = [f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}"
                 for path in PACKAGE.rglob("*.py") if path.name != "mcp_internals.py"
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Attribute) and node.attr in sdk_private]
    assert "_lowlevel_server" in sdk_private and "_admit_session" in sdk_private  # the check sees the SDK's names
    assert offenders == []


def test_another_session_manager_keeps_the_sdks_own_admission() -> None:
    """Without the tested SDK's session-manager names, max_sessions falls back to the SDK's 503: nothing breaks."""

    class OtherManager:
        max_sessions = 1

    manager = OtherManager()
    assert mcp_internals.wrap_session_admission(manager, lambda admit: admit) is False
    assert mcp_internals.session_transports(manager) == {} and mcp_internals.forget_session(manager, "x") is None
    assert not hasattr(manager, "_admit_session")


def test_fastpath_setting_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    histogram = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("t").create_histogram("h")
    try:
        for mode, fast in (("off", False), ("auto", True), ("on", True)):
            monkeypatch.setenv(sdk_internals.FASTPATH_ENV, mode)
            sdk_internals._decision.cache_clear()
            assert sdk_internals.enabled() is fast
            assert (type(bind(histogram, {})) is not BoundHistogram) is fast
        monkeypatch.setattr(sdk_internals, "TESTED", {"opentelemetry-sdk": ("0.1.0", "0.2.0")})
        for mode, fast in (("auto", False), ("on", True)):  # on: tried beyond the tested range, names permitting
            monkeypatch.setenv(sdk_internals.FASTPATH_ENV, mode)
            sdk_internals._decision.cache_clear()
            assert sdk_internals.enabled() is fast
    finally:
        sdk_internals._decision.cache_clear()


@pytest.mark.anyio
async def test_mcp_instrumentation_without_the_mcp_sdk_internals(otel_factory: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Another MCP SDK version: no error-rule proxy on the server span, the rest of the telemetry as usual."""
    monkeypatch.setattr(mcp_internals, "TESTED_MCP", "0.0.0")
    otel: Otel = otel_factory()
    with instrumented_server(otel) as (server, _):
        async with Client(server) as client:
            await client.call_tool("compose_rules", {"context_files": ["a.py"]})
    assert [s.name for s in otel.finished() if s.name.startswith("tools/call")] == ["tools/call compose_rules"]
    assert otel.histogram_points("mcp.server.operation.duration")


HIDE_PRIVATE_NAMES = '''
import importlib, sys, types
for module_name, name in {names!r}:
    real = importlib.import_module(module_name)
    shown = types.ModuleType(module_name)
    shown.__dict__.update({{k: v for k, v in vars(real).items() if k != name}})
    setattr(shown, name + "_renamed", getattr(real, name))  # as a release that renamed it
    sys.modules[module_name] = shown
    parent, _, child = module_name.rpartition(".")
    setattr(sys.modules[parent], child, shown)
'''


@pytest.mark.anyio
async def test_server_runs_and_exports_on_the_stock_sdk_without_the_private_names(tmp_path: Path) -> None:
    """Every private name a fast path reads is renamed (the SDK's own code keeps working, as in a release that
    renamed them): the server starts, serves the workload and exports spans and metrics, and says it uses
    the stock SDK."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_PRIVATE_NAMES.format(names=sdk_internals.PRIVATE_NAMES))
    receiver = Receiver()
    env = {**FAST_EXPORT, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint("grpc"), "PYTHONPATH": str(site)}
    try:
        with live_server(tmp_path, _seed(tmp_path / "rules.db"), env, name="renamed") as server:
            results = await _calls(server.url)
            log = server.stop()
    finally:
        receiver.close()
    first_missing = "{}.{}".format(*sdk_internals.PRIVATE_NAMES[0])
    assert f"telemetry: stock OpenTelemetry SDK ({first_missing} is gone)" in log, log[-3000:]
    assert "Traceback" not in log
    assert [r[1] for r in results[:6]] == [False, False, False, False, False, True]  # the last is a missing rule
    assert any(name.startswith("tools/call compose_rules") for name in receiver.received.spans)
    assert "mcp.server.operation.duration" in receiver.received.metrics


def test_boundary_modules_import_nothing_private_at_module_level() -> None:
    """Imported lazily: importing the boundary reaches no private SDK module yet."""
    for module in (sdk_internals, mcp_internals):
        tree = ast.parse(Path(module.__file__ or "").read_text())
        top: list[Any] = [n for n in tree.body if isinstance(n, ast.ImportFrom | ast.Import)]
        for node in top:
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert not any(part.startswith("_") and part != "__future__" for m in modules for part in m.split(".")), (
                module.__name__, modules)
    importlib.reload(mcp_internals)
