"""The built wheel, installed into a fresh virtualenv outside the checkout: it carries the stack's config files
(equal to the repository's folders) and no top-level ``perf`` module, and there ``otel-mcp stack up`` runs
the cached Collector/Jaeger/Prometheus on those files and ``otel-mcp perf list`` lists the scenarios."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import psutil
import pytest
from stack_helpers import free_port

from otel_mcp.stack import Binaries

pytestmark = [pytest.mark.stack, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STACK_DIRS = ("collector", "jaeger", "prometheus", "grafana", "haproxy")
PACKAGED = "otel_mcp/stack/config/"
TIMEOUT = 300  # seconds per step: a loaded 2-core machine, pip unpacking numpy and matplotlib


def source_files() -> list[str]:
    """The checkout's files as a clean clone would have them (tracked, plus new files not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True, timeout=TIMEOUT).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from a copy of the checkout (build/ and egg-info stay out of the repository)."""
    work = tmp_path_factory.mktemp("wheel")
    for name in source_files():
        (work / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, work / "src" / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(work / "dist"),
                    str(work / "src")], check=True, timeout=TIMEOUT)
    (built,) = (work / "dist").glob("otel_mcp-*.whl")
    return built


def test_the_wheel_carries_the_stack_files_and_no_top_level_perf(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        packaged = {name.removeprefix(PACKAGED): archive.read(name) for name in names if name.startswith(PACKAGED)}
        top_level = next(archive.read(n) for n in names if n.endswith(".dist-info/top_level.txt")).decode()
    sources = {name: (REPO / name).read_bytes() for name in source_files() if name.split("/")[0] in STACK_DIRS}
    assert {name.split("/")[0] for name in sources} == set(STACK_DIRS)
    assert packaged.keys() == sources.keys()
    assert [name for name in sources if packaged[name] != sources[name]] == []
    assert top_level.split() == ["otel_mcp"]
    assert not [name for name in names if name.startswith("perf/")]
    assert any(name.startswith("otel_mcp/loadtest/scenarios/") for name in names)


def test_stack_up_and_perf_list_from_the_installed_wheel(wheel: Path, stack_binaries: Binaries,
                                                          stack_ports: dict[str, str], tmp_path: Path) -> None:
    venv, elsewhere, state = tmp_path / "venv", tmp_path / "elsewhere", tmp_path / "state"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT)
    # The test environment's pip installs into the new venv (the same resolver and wheel cache bootstrap uses).
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    f"{wheel}[perf]"], check=True, timeout=TIMEOUT)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_MCP_", "COV_", "COVERAGE_", "PYTHON", "VIRTUAL_ENV"))}
    # Ports of its own: the session's stack may already hold the session's ports.
    env |= {var: f"127.0.0.1:{free_port()}" if ":" in value else str(free_port())
            for var, value in stack_ports.items()}

    def otel_mcp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "otel-mcp"), *args], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)

    listed = otel_mcp("perf", "list")
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines()} >= {"reference", "compose-hot", "soak"}

    started = otel_mcp("stack", "up", "--state-dir", str(state))
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        report = otel_mcp("stack", "status", "--json", "--state-dir", str(state))
        assert report.returncode == 0, report.stdout + report.stderr
        components = json.loads(report.stdout)["components"]
        assert all(c["healthy"] for c in components.values()), components
        collector = psutil.Process(components["collector"]["pid"]).cmdline()
        config = Path(collector[collector.index("--config") + 1])
        site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        assert config == site / PACKAGED / "collector" / "otelcol-config.yaml"
    finally:
        stopped = otel_mcp("stack", "down", "--state-dir", str(state))
        assert stopped.returncode == 0, stopped.stderr
