"""Start, watch and stop the Collector, Jaeger and Prometheus as local child processes.

Layout of the state directory (default ``~/.local/state/otel-mcp/stack``)::

    logs/<name>.log        stdout+stderr of each process
    run/<name>.json        pid, start time and argv: lets ``down``/``status`` from another
                           process find them, and tells a live pid from a recycled one
    run/endpoints.json     health and public URLs (ports can be moved by env vars)
    prometheus.yml         generated from prometheus/prometheus.yml (moved ports, paths)
    prometheus/            Prometheus TSDB
    jaeger-badger/         Jaeger's store with ``persistent_traces``

Each process leads its own process group (``start_new_session``), so ``down`` signals the
whole group: SIGTERM, then SIGKILL after ``STOP_TIMEOUT``. Nothing is left orphaned.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from otel_mcp.stack import _settings as s
from otel_mcp.stack.installer import Binaries, find_binaries, install
from otel_mcp.stack.jaeger_ui import HOW_TO_GET

COMPONENTS = ("jaeger", "prometheus", "collector")  # start order: sinks before the source
_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A component failed to start, became unhealthy, or a port is taken."""


@dataclass(frozen=True)
class ComponentStatus:
    """One component as seen from its pid file and health endpoint."""

    name: str
    pid: int | None
    running: bool
    healthy: bool
    health_url: str
    log: Path
    urls: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackStatus:
    """All components; ``urls`` merges theirs for printing."""

    state_dir: Path
    components: dict[str, ComponentStatus]

    @property
    def running(self) -> bool:
        return all(c.running for c in self.components.values())

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.components.values())

    @property
    def urls(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for c in self.components.values():
            merged.update(c.urls)
        return merged


@dataclass(frozen=True)
class _Spec:
    name: str
    argv: list[str]
    health_url: str
    ports: list[str]  # host:port this component listens on (checked free before start)
    urls: dict[str, str]
    env: dict[str, str]


def component_urls() -> dict[str, dict[str, str]]:
    """Public endpoints per component (for printing and for clients)."""
    return {
        "collector": {
            "otlp_grpc": s.otlp_grpc_endpoint(),
            "otlp_http": f"http://{s.otlp_http_endpoint()}",
            "collector_metrics": s.collector_metrics_url(),
            "collector_prometheus_exporter": s.collector_prometheus_exporter_url(),
        },
        "jaeger": {
            "jaeger_ui": s.jaeger_query_url(),
            "jaeger_api": f"{s.jaeger_query_url()}/api/traces?service=otel-mcp",
            "jaeger_spm": f"{s.jaeger_query_url()}/api/metrics/calls?service=otel-mcp",
        },
        "prometheus": {
            "prometheus": s.prometheus_url(),
            "prometheus_alerts": f"{s.prometheus_url()}/api/v1/alerts",
        },
    }


# The scrape targets written in prometheus/prometheus.yml, and where each one really is
# (the same env vars the other config files read).
def _target_map() -> dict[str, str]:
    return {
        "127.0.0.1:8889": s.collector_prometheus_exporter_endpoint(),
        "127.0.0.1:8888": s.collector_metrics_endpoint(),
        "127.0.0.1:14269": s.jaeger_metrics_endpoint(),
        "127.0.0.1:9090": s.prometheus_listen_address(),
    }


def _prometheus_config(state_dir: Path, extra_rule_files: Sequence[Path]) -> Path:
    """Write ``<state>/prometheus.yml`` from the repo's ``prometheus/prometheus.yml``.

    Prometheus 2.42 expands no environment variables, so the copy carries what the other
    configs take from the environment: scrape targets on moved ports, absolute paths for
    rule and target files, and ``extra_rule_files``. The repo file stays the one source.
    """
    source = s.config_root() / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(source.read_text())
    rule_files = [str((source.parent / r).resolve()) for r in config.get("rule_files", [])]
    config["rule_files"] = rule_files + [str(Path(p).resolve()) for p in extra_rule_files]
    targets = _target_map()
    for job in config.get("scrape_configs", []):
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str((source.parent / f).resolve()) for f in sd["files"]]
        for static in job.get("static_configs", []):
            static["targets"] = [targets.get(t, t) for t in static["targets"]]
    target = state_dir / "prometheus.yml"
    target.write_text(f"# generated by otel-mcp stack up from {source}\n" + yaml.safe_dump(config, sort_keys=False))
    return target


def _specs(binaries: Binaries, state_dir: Path, *, test_overlay: bool, persistent_traces: bool,
           prometheus_config: Path | None, extra_rule_files: Sequence[Path],
           collector_overlays: Sequence[Path]) -> dict[str, _Spec]:
    root = s.config_root()
    urls = component_urls()
    collector_argv = [str(binaries.otelcol), "--config", str(root / "collector" / "otelcol-config.yaml")]
    if test_overlay:
        collector_argv += ["--config", str(root / "collector" / "otelcol-config.test.yaml")]
    for overlay in collector_overlays:
        collector_argv += ["--config", str(Path(overlay).resolve())]
    jaeger_argv = [str(binaries.jaeger), "--config", str(root / "jaeger" / "jaeger-config.yaml")]
    if persistent_traces:
        jaeger_argv += ["--config", str(root / "jaeger" / "jaeger-config.badger.yaml")]
    prom_cfg = prometheus_config or _prometheus_config(state_dir, extra_rule_files)
    return {
        "jaeger": _Spec(
            name="jaeger",
            argv=jaeger_argv,
            health_url=s.jaeger_health_url(),
            ports=[s.jaeger_otlp_grpc_endpoint(),
                   s.env_endpoint("JAEGER_QUERY_HTTP_ENDPOINT", "127.0.0.1:16686"),
                   s.env_endpoint("JAEGER_HEALTH_ENDPOINT", "127.0.0.1:14133")],
            urls=urls["jaeger"],
            env={"JAEGER_BADGER_DIR": str(state_dir / "jaeger-badger"),
                 "JAEGER_UI_ASSETS_PATH": str(binaries.jaeger_ui or ""),
                 "JAEGER_PROMETHEUS_URL": os.environ.get("JAEGER_PROMETHEUS_URL") or s.prometheus_url()},
        ),
        "prometheus": _Spec(
            name="prometheus",
            argv=[
                str(binaries.prometheus),
                f"--config.file={prom_cfg}",
                f"--storage.tsdb.path={state_dir / 'prometheus'}",
                "--storage.tsdb.retention.time=7d",
                f"--web.listen-address={s.prometheus_listen_address()}",
                "--web.enable-lifecycle",  # POST /-/reload after editing rules
                # The scale-out tiers (collector/scaleout/) push their metrics here; loopback only.
                "--web.enable-remote-write-receiver",
            ],
            health_url=f"{s.prometheus_url()}/-/ready",
            ports=[s.prometheus_listen_address()],
            urls=urls["prometheus"],
            env={},
        ),
        "collector": _Spec(
            name="collector",
            argv=collector_argv,
            health_url=s.collector_health_url(),
            ports=[s.otlp_grpc_endpoint(), s.otlp_http_endpoint(),
                   s.env_endpoint("OTELCOL_HEALTH_ENDPOINT", "127.0.0.1:13133")],
            urls=urls["collector"],
            env={"OTELCOL_JAEGER_OTLP_ENDPOINT": os.environ.get("OTELCOL_JAEGER_OTLP_ENDPOINT")
                 or s.jaeger_otlp_grpc_endpoint()},
        ),
    }


# --- pid files -------------------------------------------------------------------------------


def _pid_file(state_dir: Path, name: str) -> Path:
    return state_dir / "run" / f"{name}.json"


def _endpoints_file(state_dir: Path) -> Path:
    return state_dir / "run" / "endpoints.json"


def _endpoints(state_dir: Path) -> dict[str, dict[str, Any]]:
    """Health and public URLs per component: as recorded by ``up`` for this state dir
    (ports may have been moved by env vars in that process), else from our environment."""
    try:
        recorded: dict[str, dict[str, Any]] = json.loads(_endpoints_file(state_dir).read_text())
        if set(recorded) == set(COMPONENTS):
            return recorded
    except (OSError, ValueError):
        pass
    urls = component_urls()
    health = {"jaeger": s.jaeger_health_url(), "prometheus": f"{s.prometheus_url()}/-/ready",
              "collector": s.collector_health_url()}
    return {name: {"health_url": health[name], "urls": urls[name]} for name in COMPONENTS}


def _log_file(state_dir: Path, name: str) -> Path:
    return state_dir / "logs" / f"{name}.log"


def _read_pid(state_dir: Path, name: str) -> int | None:
    """The pid recorded for ``name`` if that very process still runs, else None."""
    try:
        record = json.loads(_pid_file(state_dir, name).read_text())
        pid = int(record["pid"])
        proc = psutil.Process(pid)
        # A recycled pid belongs to a process started at another time.
        if abs(proc.create_time() - float(record["create_time"])) > 1.0:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None
    return pid


def _write_pid(state_dir: Path, name: str, proc: subprocess.Popen[bytes], argv: list[str]) -> None:
    path = _pid_file(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "argv": argv}
    path.write_text(json.dumps(record))


# --- probes ----------------------------------------------------------------------------------


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=s.HTTP_TIMEOUT) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _port_in_use(endpoint: str) -> bool:
    host, _, port = endpoint.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host or "127.0.0.1", int(port))) == 0


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- lifecycle -------------------------------------------------------------------------------


def _die_with_parent_hook() -> Callable[[], None]:
    """A preexec_fn asking the kernel to SIGTERM the child when its parent dies (Linux).

    libc is resolved here, in the parent: between fork and exec the child only calls prctl.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


def _spawn(spec: _Spec, state_dir: Path, *, die_with_parent: bool) -> subprocess.Popen[bytes]:
    log_path = _log_file(state_dir, spec.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n==> {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(spec.argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            spec.argv,
            cwd=state_dir,
            env=dict(os.environ) | spec.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: down() signals the whole group
            # prctl only, no Python-level locks: safe between fork and exec.
            preexec_fn=_die_with_parent_hook() if die_with_parent and sys.platform == "linux" else None,  # noqa: PLW1509
        )
    _write_pid(state_dir, spec.name, proc, spec.argv)
    return proc


def up(
    state_dir: Path | None = None,
    *,
    binaries: Binaries | None = None,
    test_overlay: bool = False,
    persistent_traces: bool = False,
    prometheus_config: Path | None = None,
    extra_rule_files: Sequence[Path] = (),
    collector_overlays: Sequence[Path] = (),
    timeout: float = s.HEALTH_TIMEOUT,
    die_with_parent: bool = False,
    progress: bool = True,
) -> StackStatus:
    """Start Jaeger, Prometheus and the Collector and wait until each one is healthy.

    Components already running from this state dir are left as they are. Missing binaries
    are installed first (see :func:`otel_mcp.stack.install`).

    :param Path state_dir: logs, data and pid files (default ``default_state_dir()``)
    :param Binaries binaries: executables to run (default: installed, or built now)
    :param bool test_overlay: add ``collector/otelcol-config.test.yaml`` (default False)
    :param bool persistent_traces: add ``jaeger/jaeger-config.badger.yaml``: traces kept in
        ``<state>/jaeger-badger`` across restarts (default False: in memory)
    :param Path prometheus_config: use this prometheus.yml instead of the repo's (default None)
    :param extra_rule_files: rule files loaded besides ``prometheus/rules/*.yaml``, e.g.
        ``prometheus/tests/e2e-alerts.yaml`` with lowered thresholds (default none)
    :param collector_overlays: the user's extra Collector config files, merged after ours
        in order (a merge replaces arrays: repeat a pipeline's full list) (default none)
    :param float timeout: seconds each component may take to become healthy (default 60)
    :param bool die_with_parent: children get SIGTERM when this process dies; for
        foreground runs and test sessions (default False: they outlive the caller)
    :param bool progress: print what is started and the URLs (default True)
    :raises StackError: a port is taken by something else, or a component did not become
        healthy in time (the started ones are stopped again, and the log tail is included)
    """
    state_dir = (state_dir or s.default_state_dir()).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    binaries = binaries or find_binaries() or install(progress=progress)
    specs = _specs(binaries, state_dir, test_overlay=test_overlay, persistent_traces=persistent_traces,
                   prometheus_config=prometheus_config, extra_rule_files=extra_rule_files,
                   collector_overlays=collector_overlays)

    if not any(_read_pid(state_dir, name) for name in COMPONENTS):
        endpoints = {n: {"health_url": spec.health_url, "urls": spec.urls} for n, spec in specs.items()}
        _endpoints_file(state_dir).parent.mkdir(parents=True, exist_ok=True)
        _endpoints_file(state_dir).write_text(json.dumps(endpoints, indent=2))
    recorded = _endpoints(state_dir)  # where components already running listen
    started: list[str] = []
    try:
        for name in COMPONENTS:
            spec = specs[name]
            health_url = spec.health_url
            if _read_pid(state_dir, name) is not None:
                health_url = str(recorded[name]["health_url"])
                if progress:
                    print(f"==> stack: {name} already running", file=sys.stderr)
            else:
                busy = [p for p in spec.ports if _port_in_use(p)]
                if busy:
                    raise StackError(
                        f"{name}: port(s) {', '.join(busy)} already in use by another process; "
                        "stop it (or another stack: `otel-mcp stack down --state-dir ...`) first"
                    )
                if progress:
                    print(f"==> stack: starting {name}", file=sys.stderr)
                proc = _spawn(spec, state_dir, die_with_parent=die_with_parent)
                started.append(name)

                def healthy_or_dead(proc: subprocess.Popen[bytes] = proc, url: str = spec.health_url) -> bool:
                    return proc.poll() is not None or _http_ok(url)

                _wait(healthy_or_dead, timeout)
                if proc.poll() is not None:
                    raise StackError(
                        f"{name} exited with code {proc.returncode} while starting; "
                        f"log {_log_file(state_dir, name)}:\n{_log_tail(_log_file(state_dir, name))}"
                    )
            if not _wait(functools.partial(_http_ok, health_url), timeout if name not in started else 0):
                raise StackError(
                    f"{name} not healthy at {health_url} after {timeout:.0f}s; "
                    f"log {_log_file(state_dir, name)}:\n{_log_tail(_log_file(state_dir, name))}"
                )
    except BaseException:
        for name in reversed(started):
            _stop(state_dir, name, s.STOP_TIMEOUT)
        raise

    result = status(state_dir)
    if progress:
        print(format_status(result), file=sys.stderr)
        if binaries.jaeger_ui is None:
            print(f"==> stack: Jaeger serves its API but no UI (none was built); to get it: {HOW_TO_GET}",
                  file=sys.stderr)
    return result


def _stop(state_dir: Path, name: str, timeout: float) -> bool:
    """Stop ``name``'s process group; True if something was running."""
    pid = _read_pid(state_dir, name)
    pid_path = _pid_file(state_dir, name)
    if pid is None:
        pid_path.unlink(missing_ok=True)
        return False
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pid_path.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    if not _wait(lambda: not _group_alive(pgid, pid), timeout, interval=0.1):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        _wait(lambda: not _group_alive(pgid, pid), 5.0, interval=0.1)
    pid_path.unlink(missing_ok=True)
    return True


def _group_alive(pgid: int, leader: int) -> bool:
    # Reap our own child if it is one, so it does not linger as a zombie.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(leader, os.WNOHANG)
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return False


def down(state_dir: Path | None = None, *, timeout: float = s.STOP_TIMEOUT) -> list[str]:
    """Stop every component started from ``state_dir``; return the names that were running.

    :param Path state_dir: as given to :func:`up` (default ``default_state_dir()``)
    :param float timeout: seconds between SIGTERM and SIGKILL, per component (default 10)
    """
    state_dir = (state_dir or s.default_state_dir()).resolve()
    # The source first, so the Collector flushes to sinks that are still up.
    return [name for name in reversed(COMPONENTS) if _stop(state_dir, name, timeout)]


def status(state_dir: Path | None = None) -> StackStatus:
    """Each component's pid, liveness and health (probing its health endpoint)."""
    state_dir = (state_dir or s.default_state_dir()).resolve()
    endpoints = _endpoints(state_dir)
    components: dict[str, ComponentStatus] = {}
    for name in COMPONENTS:
        pid = _read_pid(state_dir, name)
        health_url = str(endpoints[name]["health_url"])
        components[name] = ComponentStatus(
            name=name,
            pid=pid,
            running=pid is not None,
            healthy=pid is not None and _http_ok(health_url),
            health_url=health_url,
            log=_log_file(state_dir, name),
            urls={str(k): str(v) for k, v in endpoints[name]["urls"].items()},
        )
    return StackStatus(state_dir=state_dir, components=components)


def format_status(st: StackStatus) -> str:
    """A human summary: one line per component, then the URLs."""
    lines = [f"stack state dir: {st.state_dir}"]
    for c in st.components.values():
        state = "healthy" if c.healthy else ("running, unhealthy" if c.running else "stopped")
        pid = f"pid {c.pid}" if c.pid else "no pid"
        lines.append(f"  {c.name:<11} {state:<19} {pid:<11} log {c.log}")
    if st.running:
        lines.append("endpoints:")
        lines += [f"  {key:<30} {url}" for key, url in st.urls.items()]
    return "\n".join(lines)
