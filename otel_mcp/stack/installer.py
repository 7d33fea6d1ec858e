"""Build or install the stack's binaries once, into a cache keyed by version.

- Collector: the official builder (``go install .../cmd/builder@v0.165.0``) compiles the
  distribution described by ``collector/builder-config.yaml``; with ``scale_out``, also the agent and
  gateway tiers' distribution, ``collector/scaleout/builder-config.yaml`` (builder v0.161.0).
- Jaeger v2: the ``github.com/jaegertracing/jaeger`` module is downloaded and built as the
  main module (its go.mod has a ``replace`` directive, so ``go install mod@version`` refuses it).
- Prometheus and promtool: taken from ``PATH`` when present, otherwise Debian's package via
  ``apt-get install --no-install-recommends`` (as root) or extracted from ``apt-get download``.
- PostgreSQL (the PostgreSQL rules store and its tests) and HAProxy (the replica tests' load
  balancer): Debian's ``postgresql`` and ``haproxy`` packages, installed with apt-get as root
  when missing; their system services are not started (we run our own instances).
- The Jaeger UI of the same release (see :mod:`otel_mcp.stack.jaeger_ui`); optional: without
  it Jaeger serves its API, and the installer says in one line why and how to get the UI.

Each binary lives in ``<cache>/<name>-<version>/``; a build writes to a temporary name and
renames, so an interrupted build never leaves a half binary that later runs would trust.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from otel_mcp.stack import _settings as s
from otel_mcp.stack import jaeger_ui

GO_BUILD_FLAGS = ["-p", "2", "-trimpath", "-ldflags=-s -w"]  # 2 cores; small binaries
_OUTPUT_TAIL = 40  # lines of a failed command's output kept in the error


class InstallError(RuntimeError):
    """A binary could not be built or installed; the message says which and why."""


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the stack's executables, of the Jaeger UI (None: API only) and of the scale-out
    tiers' Collector (None: not asked for)."""

    otelcol: Path
    jaeger: Path
    prometheus: Path
    promtool: Path
    jaeger_ui: Path | None = None
    postgres_bin: Path | None = None  # the folder holding initdb, pg_ctl and postgres
    haproxy: Path | None = None
    otelcol_scaleout: Path | None = None


@dataclass(frozen=True)
class Distribution:
    """A Collector distribution: its binary's name, release, builder release and manifest."""

    binary: str
    version: str
    builder_version: str
    manifest: str  # relative to the config root


COLLECTOR = Distribution(s.COLLECTOR_BINARY, s.COLLECTOR_VERSION, s.BUILDER_VERSION,
                         "collector/builder-config.yaml")
SCALEOUT_COLLECTOR = Distribution(s.SCALEOUT_COLLECTOR_BINARY, s.SCALEOUT_COLLECTOR_VERSION,
                                  s.SCALEOUT_BUILDER_VERSION, "collector/scaleout/builder-config.yaml")


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"==> stack install: {message}", file=sys.stderr, flush=True)


def _manifest(dist: Distribution) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((s.config_root() / dist.manifest).read_text())
    return manifest


def collector_path(dist: Distribution = COLLECTOR) -> Path:
    """Where the build of ``dist``'s current manifest lives (it may not exist yet).

    The folder is keyed by the core version and a hash of the manifest's content (not its
    comments), so adding a component to ``builder-config.yaml`` rebuilds instead of reusing
    a stale binary.
    """
    digest = hashlib.sha256(json.dumps(_manifest(dist), sort_keys=True).encode()).hexdigest()[:10]
    return s.cache_dir() / f"{dist.binary}-{dist.version}-{digest}" / dist.binary


def scaleout_collector_path() -> Path | None:
    """The scale-out tiers' Collector if it is built, else None."""
    path = collector_path(SCALEOUT_COLLECTOR)
    return path if os.access(path, os.X_OK) else None


def jaeger_path() -> Path:
    return s.cache_dir() / f"jaeger-{s.JAEGER_VERSION}" / "jaeger"


def _prometheus_cache_bin() -> Path:
    return s.cache_dir() / "prometheus-deb" / "usr" / "bin"


def prometheus_paths() -> tuple[Path, Path] | None:
    """``(prometheus, promtool)`` from ``$OTEL_MCP_PROMETHEUS_BIN_DIR``, ``PATH`` or the cache."""
    dirs: list[Path] = []
    override = os.environ.get("OTEL_MCP_PROMETHEUS_BIN_DIR")
    if override:
        dirs.append(Path(override))
    found = shutil.which("prometheus"), shutil.which("promtool")
    if found[0] and found[1]:
        dirs.append(Path(found[0]).parent)
    dirs.append(_prometheus_cache_bin())
    for d in dirs:
        prom, tool = d / "prometheus", d / "promtool"
        if os.access(prom, os.X_OK) and os.access(tool, os.X_OK):
            return prom, tool
    return None


def find_binaries() -> Binaries | None:
    """The installed binaries, or None when any is missing (nothing is built)."""
    otelcol, jaeger, prom = collector_path(), jaeger_path(), prometheus_paths()
    if prom is None or not (os.access(otelcol, os.X_OK) and os.access(jaeger, os.X_OK)):
        return None
    return Binaries(otelcol=otelcol, jaeger=jaeger, prometheus=prom[0], promtool=prom[1],
                    jaeger_ui=jaeger_ui.find_ui(), postgres_bin=postgres_bin_dir(), haproxy=haproxy_path(),
                    otelcol_scaleout=scaleout_collector_path())


def install(progress: bool = True, *, force: bool = False, scale_out: bool = False) -> Binaries:
    """Build or install whatever is missing and return the paths of all the binaries.

    Instant when everything is cached. A first build on 2 cores takes several minutes;
    with ``progress`` the go and apt output is streamed to stderr.

    :param bool progress: print steps and stream tool output (default True)
    :param bool force: rebuild the Collector and Jaeger even if cached (default False)
    :param bool scale_out: also build the scale-out tiers' Collector (default False: only
        ``Binaries.otelcol_scaleout`` of an earlier build is reported)
    :raises InstallError: a build or install step failed (with the tail of its output)
    """
    # One installer at a time (a test run and a CLI call may race); the second one waits
    # and then finds the binaries the first one built.
    with _locked_cache():
        otelcol = _ensure_collector(COLLECTOR, progress, force)
        scaleout = _ensure_collector(SCALEOUT_COLLECTOR, progress, force) if scale_out else scaleout_collector_path()
        jaeger = jaeger_path()
        if force or not os.access(jaeger, os.X_OK):
            _build_jaeger(jaeger, progress)
        else:
            _say(progress, f"jaeger cached: {jaeger}")
        prom = prometheus_paths()
        if prom is None:
            prom = _install_prometheus(progress)
        else:
            _say(progress, f"prometheus found: {prom[0]}")
        ui = jaeger_ui.find_ui()
        if force or ui is None:
            ui = _install_jaeger_ui(progress)
        else:
            _say(progress, f"jaeger UI cached: {ui}")
        postgres = _server_package(postgres_bin_dir, s.POSTGRESQL_DEB, progress)
        haproxy = _server_package(haproxy_path, s.HAPROXY_DEB, progress)
    return Binaries(otelcol=otelcol, jaeger=jaeger, prometheus=prom[0], promtool=prom[1], jaeger_ui=ui,
                    postgres_bin=postgres, haproxy=haproxy, otelcol_scaleout=scaleout)


def _ensure_collector(dist: Distribution, progress: bool, force: bool) -> Path:
    otelcol = collector_path(dist)
    if force or not os.access(otelcol, os.X_OK):
        _build_collector(dist, otelcol, progress)
    else:
        _say(progress, f"{dist.binary} cached: {otelcol}")
    return otelcol


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb`` and ``pg_ctl`` (Debian's layout)."""
    override = os.environ.get("OTEL_MCP_POSTGRES_BIN_DIR")
    candidates = [Path(override)] if override else sorted(
        Path(s.POSTGRESQL_LIB_DIR).glob("*/bin"), key=lambda d: _major(d.parent.name), reverse=True)
    for d in candidates:
        if all(os.access(d / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


def haproxy_path() -> Path | None:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    return Path(found) if found else None


def ensure_postgresql(progress: bool = True) -> Path:
    """The PostgreSQL server binaries' folder, installing Debian's package first when missing."""
    with _locked_cache():
        return _ensure_debian(postgres_bin_dir, s.POSTGRESQL_DEB, progress)


def ensure_haproxy(progress: bool = True) -> Path:
    """The ``haproxy`` executable, installing Debian's package first when missing."""
    with _locked_cache():
        return _ensure_debian(haproxy_path, s.HAPROXY_DEB, progress)


@contextmanager
def _locked_cache() -> Iterator[None]:
    s.cache_dir().mkdir(parents=True, exist_ok=True)
    with _locked(s.cache_dir() / ".install.lock"):
        yield


def _server_package(find: Callable[[], Path | None], package: str, progress: bool) -> Path | None:
    """PostgreSQL or HAProxy for ``install()``: without root to install one, say so (even when quiet) and go on,
    as the Collector, Jaeger and Prometheus do not need it; the tests that do need it fail with the same message."""
    try:
        return _ensure_debian(find, package, progress)
    except InstallError as exc:
        if os.geteuid() == 0:
            raise
        print(f"==> stack install: {exc}", file=sys.stderr, flush=True)
        return None


def _ensure_debian(find: Callable[[], Path | None], package: str, progress: bool) -> Path:
    found = find()
    if found is not None:
        _say(progress, f"{package} found: {found}")
        return found
    as_root = os.geteuid() == 0
    if not as_root and not _passwordless_sudo():
        raise InstallError(f"Debian's {package} package is missing and installing it needs root: "
                           f"run `sudo apt-get install --no-install-recommends {package}` "
                           f"(or `sudo otel-mcp stack install`)")
    apt_install([package], progress, sudo=not as_root)
    found = find()
    if found is None:
        raise InstallError(f"{package} was installed but its binaries are still not found")
    return found


def _install_jaeger_ui(progress: bool) -> Path | None:
    """Build the UI; on failure say in one line (even when quiet) why, and go on without it."""
    try:
        return jaeger_ui.build_ui(run_streamed, lambda message: _say(progress, message), progress)
    except (jaeger_ui.UIError, InstallError, OSError) as exc:
        reason = str(exc).splitlines()[0]
        print(f"==> stack install: no Jaeger UI ({reason}); Jaeger will serve its API only. "
              f"To get the UI: {jaeger_ui.HOW_TO_GET}", file=sys.stderr, flush=True)
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # -mod=mod lets go update go.sum for the generated/copied modules; GOTOOLCHAIN and
    # GOPROXY are passed through untouched (a go.mod needing a newer Go sets GOTOOLCHAIN).
    flags = env.get("GOFLAGS", "")
    if "-mod=" not in flags:
        env["GOFLAGS"] = (flags + " -mod=mod").strip()
    return env


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise InstallError(
            "the Go toolchain is needed to build the Collector and Jaeger: `go` is not on PATH"
        )
    return go


def run_streamed(argv: Sequence[str], *, label: str, progress: bool, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> str:
    """Run ``argv``; stream its output prefixed by ``label`` when ``progress``; return it.

    :raises InstallError: non-zero exit, with the last lines of output
    """
    _say(progress, f"[{label}] $ {' '.join(argv)}")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        )
    except OSError as exc:
        raise InstallError(f"[{label}] cannot run {argv[0]}: {exc}") from exc
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if progress:
            print(f"  [{label}] {line}", end="", file=sys.stderr, flush=True)
    code = proc.wait()
    elapsed = time.monotonic() - started
    if code != 0:
        tail = "\n".join(lines[-_OUTPUT_TAIL:])
        raise InstallError(f"[{label}] {' '.join(argv)} exited {code} after {elapsed:.0f}s:\n{tail}")
    _say(progress, f"[{label}] done in {elapsed:.0f}s")
    return "\n".join(lines)


def _ensure_builder(version: str, progress: bool) -> Path:
    return _go_install("go.opentelemetry.io/collector/cmd/builder", version, progress)


def go_tool(package: str, version: str, progress: bool = True) -> Path:
    """A Go command (``package@version``) built once into the binary cache beside the stack's; its path.

    The tests build their own tools this way (actionlint), sharing the cache and the install lock.
    """
    with _locked_cache():
        return _go_install(package, version, progress)


def _go_install(package: str, version: str, progress: bool) -> Path:
    name = package.rsplit("/", 1)[-1]
    binary = s.cache_dir() / f"{name}-{version}" / name
    if os.access(binary, os.X_OK):
        return binary
    _say(progress, f"installing {name} {version}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    run_streamed([_go(), "install", *GO_BUILD_FLAGS, f"{package}@{version}"], label=name, progress=progress,
                 env=_go_env() | {"GOBIN": str(binary.parent)})
    return binary


def _build_collector(dist: Distribution, target: Path, progress: bool) -> None:
    builder = _ensure_builder(dist.builder_version, progress)
    _say(progress, f"building the Collector {dist.binary} {dist.version} -> {target} (several minutes on 2 cores)")
    manifest = _manifest(dist)
    with tempfile.TemporaryDirectory(prefix="otelcol-build-", dir=s.cache_dir()) as tmp:
        work = Path(tmp)
        src = work / "src"
        manifest["dist"]["output_path"] = str(src)
        (work / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        # The builder generates the sources and resolves the modules; we compile, with the
        # builder's own flags (-trimpath -ldflags="-s -w", no cgo), because the builder
        # buffers go's output while `go build -v` here streams one line per package.
        run_streamed([str(builder), "--config", str(work / "manifest.yaml"), "--skip-compilation"],
                     label="collector", progress=progress, cwd=work, env=_go_env())
        binary = src / dist.binary
        run_streamed([_go(), "build", *GO_BUILD_FLAGS, *(["-v"] if progress else []), "-o", str(binary), "."],
                     label="collector", progress=progress, cwd=src, env=_go_env() | {"CGO_ENABLED": "0"})
        _place(binary, target)
    # Builds of older manifests are never used again (the key is the manifest's hash); "-v" keeps
    # otelcol-otel-mcp's cleanup off otelcol-otel-mcp-scaleout's builds.
    for stale in s.cache_dir().glob(f"{dist.binary}-v*"):
        if stale != target.parent and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _build_jaeger(target: Path, progress: bool) -> None:
    go = _go()
    module = f"{s.JAEGER_MODULE}@{s.JAEGER_VERSION}"
    _say(progress, f"building Jaeger {s.JAEGER_VERSION} (v2) -> {target} (several minutes on 2 cores)")
    out = run_streamed([go, "mod", "download", "-json", module], label="jaeger", progress=False,
                       env=_go_env())
    source = Path(json.loads(out)["Dir"])
    with tempfile.TemporaryDirectory(prefix="jaeger-build-", dir=s.cache_dir()) as tmp:
        # The module cache is read-only, and go.mod's replace directive only applies to the
        # main module: build a writable copy as the main module.
        work = Path(tmp) / "src"
        shutil.copytree(source, work, symlinks=True)
        for path in [work, *work.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        binary = Path(tmp) / "jaeger"
        run_streamed([go, "build", *GO_BUILD_FLAGS, *(["-v"] if progress else []), "-o", str(binary), "./cmd/jaeger"],
                     label="jaeger", progress=progress, cwd=work, env=_go_env())
        _place(binary, target)


def _place(built: Path, target: Path) -> None:
    if not built.is_file():
        raise InstallError(f"the build finished but {built} is missing")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copy2(built, partial)
    partial.chmod(0o755)
    os.replace(partial, target)


def _install_prometheus(progress: bool) -> tuple[Path, Path]:
    apt = shutil.which("apt-get")
    if apt is None:
        raise InstallError(
            "prometheus/promtool are not on PATH and apt-get is missing: install Prometheus 2.x "
            "and set OTEL_MCP_PROMETHEUS_BIN_DIR to the folder holding both"
        )
    s.cache_dir().mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        apt_install([s.PROMETHEUS_DEB], progress)
        _disable_system_service(progress)
    else:
        # Not root: take the same package's files without installing it system-wide.
        _say(progress, f"extracting Debian's {s.PROMETHEUS_DEB} package into {s.cache_dir()}")
        with tempfile.TemporaryDirectory(dir=s.cache_dir()) as tmp:
            run_streamed([apt, "download", s.PROMETHEUS_DEB], label="apt", progress=progress,
                         cwd=Path(tmp), env=_apt_env())
            debs = sorted(Path(tmp).glob("*.deb"))
            if not debs:
                raise InstallError("apt-get download produced no .deb")
            run_streamed(["dpkg-deb", "-x", str(debs[0]), str(s.cache_dir() / "prometheus-deb")],
                         label="apt", progress=progress)
    found = prometheus_paths()
    if found is None:
        raise InstallError("Prometheus was installed but prometheus/promtool are still not found")
    return found


def _apt_env() -> dict[str, str]:
    return dict(os.environ) | {"DEBIAN_FRONTEND": "noninteractive"}


def apt_install(packages: Sequence[str], progress: bool, *, sudo: bool = False) -> None:
    """``apt-get update`` then ``install --no-install-recommends`` as root (or through ``sudo -n``: a CI
    runner's passwordless sudo), starting no service as root.

    Waits up to 10 minutes for the dpkg lock, which another install on the machine may hold.

    :raises InstallError: apt-get is missing or failed
    """
    apt = shutil.which("apt-get")
    if apt is None:
        raise InstallError(f"apt-get is missing: install {' '.join(packages)} by other means")
    command = ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive", apt] if sudo else [apt]
    lock_wait = ["-o", "DPkg::Lock::Timeout=600"]
    _say(progress, f"installing Debian's {' '.join(packages)} (apt-get, --no-install-recommends"
                   f"{', through sudo' if sudo else ''})")
    run_streamed([*command, *lock_wait, "update"], label="apt", progress=progress, env=_apt_env())
    with _no_service_start():
        run_streamed([*command, *lock_wait, "install", "-y", "--no-install-recommends", *packages],
                     label="apt", progress=progress, env=_apt_env())


def _passwordless_sudo() -> bool:
    sudo = shutil.which("sudo")
    return sudo is not None and subprocess.run([sudo, "-n", "true"], stdin=subprocess.DEVNULL, check=False,
                                               capture_output=True).returncode == 0


_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


@contextmanager
def _no_service_start() -> Iterator[None]:
    """Stop the package's postinst from starting the system service on :9090.

    We run our own Prometheus with our config; a system one would take its port. Debian's
    policy-rc.d hook (exit 101 = "action forbidden") is the documented way to say so.
    """
    if _POLICY_RC_D.exists():
        yield
        return
    try:
        _POLICY_RC_D.write_text("#!/bin/sh\n# written by otel-mcp stack install; removed after\nexit 101\n")
        _POLICY_RC_D.chmod(0o755)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        _POLICY_RC_D.unlink(missing_ok=True)


def _disable_system_service(progress: bool) -> None:
    systemctl = shutil.which("systemctl")
    if systemctl and Path("/run/systemd/system").is_dir():
        subprocess.run([systemctl, "disable", "--now", "prometheus"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _say(progress, "disabled the prometheus system service (otel-mcp runs its own)")
