"""otel_mcp.stack without the real binaries: installer paths and builds with a fake `go`,
the supervisor's process handling with stand-in processes, and the CLI wiring.

Stand-ins listen on free ports chosen here (through the same environment variables the
config files read), so these tests run even while the session's real stack is up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from otel_mcp.stack import (
    Binaries,
    InstallError,
    StackError,
    cache_dir,
    config_root,
    default_state_dir,
    down,
    find_binaries,
    format_status,
    install,
    register_cli,
    status,
    up,
)
from otel_mcp.stack import installer as install_mod
from otel_mcp.stack import supervisor as sup

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# A stand-in component: serves 200 on every path of the port in $PORT_VAR, forks a grandchild
# (to prove down() stops the whole process group), and writes its pid to $CHILD_FILE.
FAKE_SERVER = """\
import http.server, os, subprocess, sys
port = int(os.environ[os.environ["PORT_VAR"]].rpartition(":")[2])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(os.environ["CHILD_FILE"] + "." + os.path.basename(sys.argv[0]), "w").write(str(child.pid))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def prebuilt_ui(folder: Path) -> Path:
    """A stand-in for built Jaeger UI assets, as the jaeger-ui release's assets.tar.gz lays them out."""
    build = folder / "packages" / "jaeger-ui" / "build"
    (build / "static").mkdir(parents=True)
    (build / "index.html").write_text("<title>Jaeger UI</title>")
    return folder


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cache, state and every stack port moved to tmp_path and free ports; the Jaeger UI
    source is a stand-in of prebuilt assets (no Node build, no network)."""
    monkeypatch.setenv("OTEL_MCP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OTEL_MCP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("OTEL_MCP_JAEGER_UI_SOURCE", str(prebuilt_ui(tmp_path / "ui-assets")))
    for var in ("OTELCOL_HEALTH_ENDPOINT", "OTELCOL_OTLP_GRPC_ENDPOINT", "OTELCOL_OTLP_HTTP_ENDPOINT",
                "JAEGER_HEALTH_ENDPOINT", "JAEGER_OTLP_GRPC_ENDPOINT", "JAEGER_QUERY_HTTP_ENDPOINT",
                "OTEL_MCP_PROMETHEUS_ADDRESS"):
        monkeypatch.setenv(var, f"127.0.0.1:{free_port()}")
    return tmp_path


def fake_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Binaries:
    bin_dir = tmp_path / "fakebin"
    monkeypatch.setenv("CHILD_FILE", str(tmp_path / "child"))
    # Each stand-in answers its component's health probe on the port the supervisor checks.
    ports = {"otelcol": "OTELCOL_HEALTH_ENDPOINT", "jaeger": "JAEGER_HEALTH_ENDPOINT",
             "prometheus": "OTEL_MCP_PROMETHEUS_ADDRESS"}
    paths = {}
    for name, var in ports.items():
        paths[name] = script(bin_dir / name, f"import os\nos.environ['PORT_VAR'] = {var!r}\n" + FAKE_SERVER)
    paths["promtool"] = script(bin_dir / "promtool", "print('ok')\n")
    return Binaries(**paths)


# -- settings ---------------------------------------------------------------------------------


def test_directories_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OTEL_MCP_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("OTEL_MCP_STATE_DIR", str(tmp_path / "s"))
    assert cache_dir() == tmp_path / "c"
    assert default_state_dir() == tmp_path / "s"
    monkeypatch.delenv("OTEL_MCP_CACHE_DIR")
    monkeypatch.delenv("OTEL_MCP_STATE_DIR")
    assert cache_dir().parts[-2:] == ("otel-mcp", "bin")
    assert default_state_dir().parts[-2:] == ("otel-mcp", "stack")


def test_config_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert config_root() == REPO
    monkeypatch.setenv("OTEL_MCP_STACK_CONFIG_DIR", str(REPO))
    assert config_root() == REPO
    monkeypatch.setenv("OTEL_MCP_STACK_CONFIG_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("otel_mcp.stack._settings.__file__", str(tmp_path / "a" / "b" / "c.py"))
    with pytest.raises(FileNotFoundError, match="OTEL_MCP_STACK_CONFIG_DIR"):
        config_root()


# -- installer --------------------------------------------------------------------------------


def fake_go(tmp_path: Path) -> Path:
    """A `go` that fakes the three commands the installer runs, and logs its argv."""
    source = tmp_path / "modcache" / "jaeger@v1.75.0"
    (source / "cmd" / "jaeger").mkdir(parents=True)
    (source / "go.mod").write_text("module github.com/jaegertracing/jaeger\n")
    (source / "go.mod").chmod(0o444)
    builder = textwrap.dedent(f"""\
        #!{sys.executable}
        import os, sys, yaml
        manifest = yaml.safe_load(open(sys.argv[sys.argv.index("--config") + 1]))
        out = manifest["dist"]["output_path"]
        os.makedirs(out, exist_ok=True)
        assert "--skip-compilation" in sys.argv
        open(os.path.join(out, "main.go"), "w").write("package main\\n")
        print("Sources created", flush=True)
        """)
    go = script(tmp_path / "gobin" / "go", f"""\
        import json, os, sys
        open({str(tmp_path / 'go.log')!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
        args = sys.argv[1:]
        if args[:1] == ["install"]:
            path = os.path.join(os.environ["GOBIN"], "builder")
            open(path, "w").write({builder!r})
            os.chmod(path, 0o755)
        elif args[:2] == ["mod", "download"]:
            print(json.dumps({{"Path": "github.com/jaegertracing/jaeger", "Dir": {str(source)!r}}}))
        elif args[:1] == ["build"]:
            out = args[args.index("-o") + 1]
            name = os.path.basename(out)
            what = "collector" if name.startswith("otelcol") else "jaeger"
            open(out, "w").write("#!/bin/sh\\necho " + what + "\\n")
            print("building", name, os.getcwd(), os.environ["GOFLAGS"])
        else:
            sys.exit("unexpected: " + " ".join(args))
        """)
    return go


def fake_toolchain(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``fake_go`` on PATH and stand-ins for prometheus/promtool; returns the latter's folder."""
    go = fake_go(isolated)
    monkeypatch.setenv("PATH", f"{go.parent}{os.pathsep}{os.environ['PATH']}")
    prom_dir = isolated / "prom"
    script(prom_dir / "prometheus", "")
    script(prom_dir / "promtool", "")
    monkeypatch.setenv("OTEL_MCP_PROMETHEUS_BIN_DIR", str(prom_dir))
    return prom_dir


def test_install_builds_collector_and_jaeger_with_go(isolated: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    prom_dir = fake_toolchain(isolated, monkeypatch)
    assert find_binaries() is None

    binaries = install(progress=True)

    assert binaries.otelcol == install_mod.collector_path()
    assert binaries.otelcol.read_text().endswith("echo collector\n")
    assert binaries.jaeger.read_text().endswith("echo jaeger\n")
    assert binaries.prometheus == prom_dir / "prometheus"
    assert binaries.otelcol.parent.name.startswith("otelcol-otel-mcp-v0.165.0-")
    assert binaries.jaeger.parent.name == "jaeger-v1.75.0"
    log = (isolated / "go.log").read_text()
    assert "install -p 2 -trimpath -ldflags=-s -w go.opentelemetry.io/collector/cmd/builder@v0.165.0" in log
    assert log.count("build -p 2 -trimpath -ldflags=-s -w -v -o") == 2  # collector and jaeger, streamed
    err = capsys.readouterr().err
    assert "building the Collector" in err and "[jaeger]" in err and "-mod=mod" in err
    assert binaries.jaeger_ui == isolated / "cache" / "jaeger-ui-v1.75.0"
    assert (binaries.jaeger_ui / "index.html").read_text() == "<title>Jaeger UI</title>"
    assert find_binaries() == binaries

    # Second run: everything cached, go is not called again.
    before = log
    assert install(progress=False) == binaries
    assert (isolated / "go.log").read_text() == before


def test_install_builds_the_scaleout_collector_only_when_asked(isolated: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    fake_toolchain(isolated, monkeypatch)

    assert install(progress=False).otelcol_scaleout is None
    args = parser().parse_args(["stack", "install", "--quiet", "--scale-out"])
    assert args.func(args) == 0
    binaries = find_binaries()

    assert binaries is not None
    assert binaries.otelcol_scaleout == install_mod.collector_path(install_mod.SCALEOUT_COLLECTOR)
    assert f"otelcol_scaleout {binaries.otelcol_scaleout}" in capsys.readouterr().out.splitlines()
    assert binaries.otelcol_scaleout.parent.name.startswith("otelcol-otel-mcp-scaleout-v0.161.0-")
    assert "cmd/builder@v0.161.0" in (isolated / "go.log").read_text()
    # Rebuilding the main distribution clears its own stale builds, not the scale-out one's.
    assert install(progress=False, force=True).otelcol_scaleout == binaries.otelcol_scaleout
    assert binaries.otelcol_scaleout.is_file() and find_binaries() == binaries


def test_install_without_go_says_so(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(isolated / "empty"))
    with pytest.raises(InstallError, match="`go` is not on PATH"):
        install(progress=False)


def test_run_streamed_reports_the_failure_tail() -> None:
    with pytest.raises(InstallError, match=r"exited 3[\s\S]*boom"):
        install_mod.run_streamed([sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
                                 label="t", progress=False)
    with pytest.raises(InstallError, match="cannot run"):
        install_mod.run_streamed(["/nonexistent/tool"], label="t", progress=False)


def test_prometheus_missing_without_apt(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(isolated / "empty"))
    monkeypatch.delenv("OTEL_MCP_PROMETHEUS_BIN_DIR", raising=False)
    assert install_mod.prometheus_paths() is None
    with pytest.raises(InstallError, match="OTEL_MCP_PROMETHEUS_BIN_DIR"):
        install_mod._install_prometheus(progress=False)


def test_prometheus_install_uses_apt(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(install_mod.shutil, "which", lambda name: f"/usr/bin/{name}" if name == "apt-get" else None)

    def fake_run(argv: list[str], cwd: Path | None = None, **_: object) -> str:
        calls.append(list(argv))
        if "download" in argv and cwd is not None:
            (cwd / "prometheus_2.42.0+ds-5+deb12u1_amd64.deb").write_bytes(b"")
        if argv[0] == "dpkg-deb" or "install" in argv:
            target = install_mod._prometheus_cache_bin()
            script(target / "prometheus", "")
            script(target / "promtool", "")
        return ""

    monkeypatch.setattr(install_mod, "run_streamed", fake_run)
    monkeypatch.setattr(install_mod.os, "geteuid", lambda: 1000)
    prom, tool = install_mod._install_prometheus(progress=False)
    assert prom.name == "prometheus" and tool.name == "promtool"
    assert calls[0][1] == "download"
    assert calls[1][0] == "dpkg-deb"

    calls.clear()
    monkeypatch.setattr(install_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(install_mod, "_POLICY_RC_D", isolated / "policy-rc.d")
    install_mod._install_prometheus(progress=False)
    lock_wait = ["-o", "DPkg::Lock::Timeout=600"]
    assert calls == [["/usr/bin/apt-get", *lock_wait, "update"],
                     ["/usr/bin/apt-get", *lock_wait, "install", "-y", "--no-install-recommends", "prometheus"]]
    assert not (isolated / "policy-rc.d").exists()  # the temporary guard is removed


# -- supervisor -------------------------------------------------------------------------------


def test_status_and_down_with_nothing_running(isolated: Path) -> None:
    st = status()
    assert not st.running and not st.healthy
    assert set(st.components) == {"collector", "jaeger", "prometheus"}
    assert "stopped" in format_status(st)
    assert down() == []


def test_stale_pid_file_is_not_running(isolated: Path) -> None:
    state = isolated / "state"
    (state / "run").mkdir(parents=True)
    (state / "run" / "jaeger.json").write_text(json.dumps({"pid": os.getpid(), "create_time": 1.0, "argv": []}))
    (state / "run" / "collector.json").write_text("not json")
    st = status(state)
    assert st.components["jaeger"].pid is None
    assert st.components["collector"].pid is None
    assert down(state) == []
    assert not (state / "run" / "jaeger.json").exists()


def test_up_down_with_stand_in_processes(isolated: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    binaries = fake_binaries(isolated, monkeypatch)
    state = isolated / "state"
    extra = isolated / "extra-rules.yaml"
    extra.write_text("groups: []\n")
    mine = isolated / "my-collector.yaml"
    st = up(state, binaries=binaries, timeout=30, test_overlay=True, persistent_traces=True,
            extra_rule_files=[extra], collector_overlays=[mine])
    assert st.running and st.healthy
    assert "healthy" in format_status(st) and "endpoints:" in format_status(st)
    err = capsys.readouterr().err
    assert "starting jaeger" in err
    # no UI in these binaries: the stack still comes up, and says so in one line with how to get one
    no_ui = [line for line in err.splitlines() if "no UI" in line]
    assert len(no_ui) == 1 and "OTEL_MCP_JAEGER_UI_SOURCE" in no_ui[0], err
    argv = json.loads((state / "run" / "collector.json").read_text())["argv"]
    assert argv[-3].endswith("otelcol-config.test.yaml")
    assert argv[-2:] == ["--config", str(mine)]
    assert json.loads((state / "run" / "jaeger.json").read_text())["argv"][-1].endswith("jaeger-config.badger.yaml")
    prom_argv = json.loads((state / "run" / "prometheus.json").read_text())["argv"]
    assert f"--config.file={state / 'prometheus.yml'}" in prom_argv
    generated = yaml.safe_load((state / "prometheus.yml").read_text())
    assert generated["rule_files"] == [str(REPO / "prometheus" / "rules" / "*.yaml"), str(extra)]
    targets = {j["job_name"]: j.get("static_configs", [{}])[0].get("targets") for j in generated["scrape_configs"]}
    assert targets["prometheus"] == [os.environ["OTEL_MCP_PROMETHEUS_ADDRESS"]]  # moved port followed
    assert targets["otel-collector-exporter"] == [os.environ.get("OTELCOL_PROMETHEUS_ENDPOINT", "127.0.0.1:8889")]
    # status() from a process with other settings still probes where this stack listens.
    monkeypatch.setenv("JAEGER_HEALTH_ENDPOINT", "127.0.0.1:1")
    assert status(state).healthy
    direct = next(j for j in generated["scrape_configs"] if j["job_name"] == "otel-mcp-direct")
    assert direct["file_sd_configs"][0]["files"] == [str(REPO / "prometheus" / "targets" / "otel-mcp-direct.yml")]
    pids = [c.pid for c in st.components.values() if c.pid]
    grandchildren = [int(p.read_text()) for p in isolated.glob("child.*")]
    assert len(pids) == 3 and len(grandchildren) == 3

    # A second up() finds them running and starts nothing.
    again = up(state, binaries=binaries, timeout=30, progress=False)
    assert [c.pid for c in again.components.values()] == [c.pid for c in st.components.values()]

    assert sorted(down(state)) == ["collector", "jaeger", "prometheus"]
    for pid in pids + grandchildren:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not status(state).running


def test_up_fails_cleanly_when_a_component_exits(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binaries = fake_binaries(isolated, monkeypatch)
    broken = script(isolated / "fakebin" / "broken", "import sys\nprint('bad config: port 1')\nsys.exit(2)\n")
    binaries = Binaries(otelcol=broken, jaeger=binaries.jaeger, prometheus=binaries.prometheus,
                        promtool=binaries.promtool)
    state = isolated / "state"
    with pytest.raises(StackError, match=r"collector exited with code 2[\s\S]*bad config"):
        up(state, binaries=binaries, timeout=30, progress=False)
    assert not status(state).running  # jaeger and prometheus were stopped again


def test_up_refuses_a_taken_port(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binaries = fake_binaries(isolated, monkeypatch)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        monkeypatch.setenv("JAEGER_QUERY_HTTP_ENDPOINT", f"127.0.0.1:{sock.getsockname()[1]}")
        with pytest.raises(StackError, match="already in use"):
            up(isolated / "state", binaries=binaries, timeout=5, progress=False)


def test_stop_escalates_to_sigkill(isolated: Path) -> None:
    state = isolated / "state"
    stubborn = script(isolated / "stubborn", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                             "print('ready', flush=True)\ntime.sleep(300)\n")
    spec = sup._Spec(name="jaeger", argv=[str(stubborn)], health_url="http://127.0.0.1:1/", ports=[],
                     urls={}, env={})
    proc = sup._spawn(spec, state, die_with_parent=True)
    assert sup._wait(lambda: "ready" in sup._log_tail(state / "logs" / "jaeger.log"), 10)
    assert down(state, timeout=0.5) == ["jaeger"]
    # It ignores SIGTERM, so only the SIGKILL after the timeout can have ended it.
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE


# -- CLI --------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otel-mcp")
    register_cli(p.add_subparsers(dest="command"))
    return p


def test_cli_parses_every_subcommand() -> None:
    args = parser().parse_args(["stack", "up", "--foreground", "--test-overlay", "--state-dir", "/tmp/x",
                                "--collector-config", "a.yaml", "--collector-config", "b.yaml"])
    assert args.foreground and args.test_overlay and args.state_dir == Path("/tmp/x")
    assert args.collector_config == [Path("a.yaml"), Path("b.yaml")]
    assert callable(args.func)
    for sub in ("install", "down", "status"):
        assert callable(parser().parse_args(["stack", sub]).func)
    with pytest.raises(SystemExit):
        parser().parse_args(["stack"])


def test_cli_status_down_and_install(isolated: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["stack", "status", "--json"])
    assert args.func(args) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["healthy"] is False and set(doc["components"]) == {"collector", "jaeger", "prometheus"}
    args = parser().parse_args(["stack", "status"])
    assert args.func(args) == 3
    args = parser().parse_args(["stack", "down"])
    assert args.func(args) == 0
    assert "nothing was running" in capsys.readouterr().out

    monkeypatch.setenv("PATH", str(isolated / "empty"))
    args = parser().parse_args(["stack", "install", "--quiet"])
    assert args.func(args) == 1
    assert "go" in capsys.readouterr().err


def test_cli_up_detached_then_down(isolated: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    binaries = fake_binaries(isolated, monkeypatch)
    monkeypatch.setattr(sup, "find_binaries", lambda: binaries)
    args = parser().parse_args(["stack", "up", "--timeout", "30"])
    assert args.func(args) == 0
    assert "otel-mcp stack down" in capsys.readouterr().out
    args = parser().parse_args(["stack", "status"])
    assert args.func(args) == 0
    args = parser().parse_args(["stack", "down"])
    assert args.func(args) == 0
    assert "collector" in capsys.readouterr().out


def test_cli_up_foreground_stops_everything_on_sigterm(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_binaries(isolated, monkeypatch)
    # A real `otel-mcp stack up --foreground` in a subprocess, stopped like a service manager would.
    code = textwrap.dedent(f"""\
        import argparse, sys
        from otel_mcp.stack import Binaries, register_cli, supervisor
        from pathlib import Path
        b = Path({str(isolated / 'fakebin')!r})
        supervisor.find_binaries = lambda: Binaries(b / "otelcol", b / "jaeger", b / "prometheus", b / "promtool")
        p = argparse.ArgumentParser()
        register_cli(p.add_subparsers())
        args = p.parse_args(["stack", "up", "--foreground", "--timeout", "30"])
        sys.exit(args.func(args))
        """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while not seen or "Ctrl-C stops it" not in seen[-1]:
        assert time.monotonic() < deadline, "".join(seen)
        with contextlib.suppress(queue.Empty):
            seen.append(lines.get(timeout=1.0))
    pids = [c.pid for c in status().components.values()]
    proc.terminate()
    assert proc.wait(timeout=30) == 0, "".join(seen)
    with contextlib.suppress(queue.Empty):
        while True:
            seen.append(lines.get(timeout=2.0))
    out = "".join(seen)
    assert "stopped: collector, prometheus, jaeger" in out
    assert not status().running
    for pid in pids:
        assert pid is not None
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_postgresql_is_found_by_globbing_and_installed_when_missing(
        isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The newest /usr/lib/postgresql/<major>/bin wins; when none exists, apt-get installs `postgresql`."""
    lib = isolated / "lib" / "postgresql"
    monkeypatch.setattr(install_mod.s, "POSTGRESQL_LIB_DIR", str(lib))
    monkeypatch.setattr(install_mod, "_POLICY_RC_D", isolated / "policy-rc.d")
    monkeypatch.setattr(install_mod.os, "geteuid", lambda: 0)
    apt = script(isolated / "fakeapt" / "apt-get", f"""\
        import os, sys
        open({str(isolated / "apt.log")!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
        if "install" in sys.argv:
            for major in ("9.6", "13", "16"):
                os.makedirs(os.path.join({str(lib)!r}, major, "bin"), exist_ok=True)
                for tool in ("initdb", "pg_ctl", "postgres"):
                    path = os.path.join({str(lib)!r}, major, "bin", tool)
                    open(path, "w").close()
                    os.chmod(path, 0o755)
        """)
    monkeypatch.setenv("PATH", f"{apt.parent}{os.pathsep}{os.environ['PATH']}")
    assert install_mod.postgres_bin_dir() is None

    assert install_mod.ensure_postgresql(progress=True) == lib / "16" / "bin"
    assert "install -y --no-install-recommends postgresql" in (isolated / "apt.log").read_text()
    assert "installing Debian's postgresql" in capsys.readouterr().err
    # Cached: found, apt-get not run again.
    before = (isolated / "apt.log").read_text()
    assert install_mod.ensure_postgresql(progress=False) == lib / "16" / "bin"
    assert (isolated / "apt.log").read_text() == before


def test_missing_package_without_root_says_how_to_install(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install_mod, "haproxy_path", lambda: None)
    monkeypatch.setattr(install_mod.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(install_mod, "_passwordless_sudo", lambda: False)
    with pytest.raises(InstallError, match="sudo apt-get install --no-install-recommends haproxy"):
        install_mod.ensure_haproxy(progress=False)


def test_without_root_a_passwordless_sudo_installs_the_package(
        isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI runner: not root, but `sudo -n` works; apt-get runs through it."""
    installed = isolated / "usr" / "sbin" / "haproxy"
    monkeypatch.setattr(install_mod, "haproxy_path", lambda: installed if installed.exists() else None)
    monkeypatch.setattr(install_mod, "_POLICY_RC_D", isolated / "policy-rc.d")
    monkeypatch.setattr(install_mod.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(install_mod, "_passwordless_sudo", lambda: True)
    log = isolated / "sudo.log"
    script(isolated / "fakebin" / "sudo", f"""\
        import os, sys
        open({str(log)!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
        if "install" in sys.argv:
            os.makedirs({str(installed.parent)!r}, exist_ok=True)
            open({str(installed)!r}, "w").close()
        """)
    script(isolated / "fakebin" / "apt-get", "raise SystemExit('apt-get must run through sudo')\n")
    monkeypatch.setenv("PATH", f"{isolated / 'fakebin'}{os.pathsep}{os.environ['PATH']}")
    assert install_mod.ensure_haproxy(progress=False) == installed
    calls = log.read_text().splitlines()
    through_sudo = f"-n env DEBIAN_FRONTEND=noninteractive {isolated}/fakebin/apt-get"
    assert [c.split(" -o ")[0] for c in calls] == [through_sudo] * 2
    assert calls[1].endswith("install -y --no-install-recommends haproxy")


def test_install_without_root_goes_on_without_the_server_packages(
        isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    built = script(isolated / "bin" / "built", "")
    monkeypatch.setattr(install_mod, "_ensure_collector", lambda *args: built)
    monkeypatch.setattr(install_mod, "jaeger_path", lambda: built)
    monkeypatch.setattr(install_mod, "prometheus_paths", lambda: (isolated / "p", isolated / "pt"))
    monkeypatch.setattr(install_mod.jaeger_ui, "find_ui", lambda: isolated)
    monkeypatch.setattr(install_mod, "postgres_bin_dir", lambda: None)
    monkeypatch.setattr(install_mod.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(install_mod, "_passwordless_sudo", lambda: False)
    binaries = install(progress=False)
    assert binaries.postgres_bin is None and binaries.haproxy is not None
    assert "sudo apt-get install --no-install-recommends postgresql" in capsys.readouterr().err
