"""Build the Jaeger UI that matches the Jaeger we build, once, into the binary cache.

The Go module ``github.com/jaegertracing/jaeger`` has no UI assets (a Jaeger built from it
serves a placeholder page); Jaeger v2 serves a built UI from ``jaeger_query.ui.assets_path``,
which ``jaeger/jaeger-config.yaml`` reads from ``JAEGER_UI_ASSETS_PATH``.

Where the UI comes from, first match wins:

1. ``OTEL_MCP_JAEGER_UI_SOURCE``: a folder or ``.tar.gz`` holding either the UI's source
   (``packages/jaeger-ui/package.json``; built with Node) or built assets (``index.html`` +
   ``static/``, e.g. the jaeger-ui release's ``assets.tar.gz``). A tarball whose name is in
   ``KNOWN_SHA256`` must have that checksum.
2. A shallow ``git clone`` of the tag :data:`UI_TAG` from GitHub, then built with Node.

Node: the system ``node`` when its major version is at least the UI's ``.nvmrc``;
otherwise the npm registry's ``node-linux-<arch>@<major>`` package (``npm pack``) unpacked
into the cache. The system ``npm`` runs the build either way.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from otel_mcp.stack import _settings as s

UI_TAG = s.JAEGER_VERSION  # jaeger-ui tags follow the Jaeger release they ship with
UI_REPOSITORY = "https://github.com/jaegertracing/jaeger-ui"
SOURCE_ENV = "OTEL_MCP_JAEGER_UI_SOURCE"
# Source archives whose content we know (``git archive`` of the tag; see ../shared/vendor).
KNOWN_SHA256 = {
    "jaeger-ui-v1.75.0.tar.gz": "94b74b0e1515305bc575649131649daa8e57780958a310e16f5aada1d8aad306",
}
HOW_TO_GET = (f"set {SOURCE_ENV} to a jaeger-ui {UI_TAG} source or assets folder/.tar.gz "
              "(or give this machine git, node and npm with internet) and rerun `otel-mcp stack install`")

# run_streamed(argv, label=..., progress=..., cwd=..., env=...) -> output; the installer's.
Runner = Callable[..., str]


class UIError(RuntimeError):
    """The UI could not be obtained; the message says why in one line."""


def ui_path() -> Path:
    """Where the built UI lives (``index.html`` + ``static/``); it may not exist yet."""
    return s.cache_dir() / f"jaeger-ui-{UI_TAG}"


def find_ui() -> Path | None:
    path = ui_path()
    return path if (path / "index.html").is_file() else None


def build_ui(run: Runner, say: Callable[[str], None], progress: bool) -> Path:
    """Obtain the UI from the first source that works and place it at :func:`ui_path`.

    :raises UIError: no source or build worked (one line: why)
    """
    target = ui_path()
    with tempfile.TemporaryDirectory(prefix="jaeger-ui-build-", dir=s.cache_dir()) as tmp:
        work = Path(tmp)
        root = _fetch_source(work, run, say, progress)
        assets = _assets_in(root)
        if assets is None:
            source = _source_in(root)
            if source is None:
                raise UIError(f"{root} holds neither the jaeger-ui source nor built assets (index.html)")
            assets = _build(source, work, run, say, progress)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(assets, partial)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    return target


def _fetch_source(work: Path, run: Runner, say: Callable[[str], None], progress: bool) -> Path:
    configured = os.environ.get(SOURCE_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser()
        if path.is_dir():
            say(f"jaeger UI from the folder {path}")
            return path
        if path.is_file():
            return _unpack(path, work / "src", say)
        raise UIError(f"{SOURCE_ENV}={configured} is neither a folder nor a file")
    git = shutil.which("git")
    if git is None:
        raise UIError(f"{SOURCE_ENV} is not set and git is missing (needed to fetch {UI_REPOSITORY})")
    say(f"jaeger UI {UI_TAG}: cloning {UI_REPOSITORY}")
    run([git, "clone", "--depth", "1", "--branch", UI_TAG, UI_REPOSITORY, str(work / "src")],
        label="jaeger-ui", progress=progress)
    return work / "src"


def _unpack(archive: Path, into: Path, say: Callable[[str], None]) -> Path:
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    expected = KNOWN_SHA256.get(archive.name)
    if expected is not None and digest != expected:
        raise UIError(f"{archive} has sha256 {digest}, expected {expected}")
    say(f"jaeger UI from {archive} (sha256 {digest}{', verified' if expected else ''})")
    into.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")  # refuses absolute paths and ../ members
    except (tarfile.TarError, OSError) as exc:
        raise UIError(f"{archive} cannot be unpacked: {exc}") from exc
    return into


def _candidates(root: Path) -> list[Path]:
    """``root`` and its single top folder (archives made by ``git archive`` have one)."""
    subdirs = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    return [root, *subdirs] if len(subdirs) == 1 else [root]


def _assets_in(root: Path) -> Path | None:
    for base in _candidates(root):
        for folder in (base, base / "packages" / "jaeger-ui" / "build"):
            if (folder / "index.html").is_file() and (folder / "static").is_dir():
                return folder
    return None


def _source_in(root: Path) -> Path | None:
    for base in _candidates(root):
        if (base / "packages" / "jaeger-ui" / "package.json").is_file():
            return base
    return None


def _build(source: Path, work: Path, run: Runner, say: Callable[[str], None], progress: bool) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise UIError("npm is missing (needed to build the jaeger UI from source)")
    major = _wanted_node_major(source)
    node_dir = _node_bin_dir(major, npm, run, say, progress)
    env = dict(os.environ) | {"PATH": f"{node_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    # A configured source folder is left as it was (it may be read-only, as ../shared is): build a copy.
    if not source.is_relative_to(work):
        source = Path(shutil.copytree(source, work / "build-src", ignore=shutil.ignore_patterns("node_modules")))
    say(f"building the jaeger UI {UI_TAG} with Node {major} (npm ci + npm run build; minutes on 2 cores)")
    npm_flags = ["--no-audit", "--no-fund", "--loglevel=error"]
    run([npm, "ci", *npm_flags], label="jaeger-ui", progress=progress, cwd=source, env=env)
    run([npm, "run", "build"], label="jaeger-ui", progress=progress, cwd=source, env=env)
    built = source / "packages" / "jaeger-ui" / "build"
    if not (built / "index.html").is_file():
        raise UIError(f"the UI build finished but {built / 'index.html'} is missing")
    return built


def _wanted_node_major(source: Path) -> int:
    try:
        text = (source / ".nvmrc").read_text()
    except OSError:
        return 24  # the major jaeger-ui v1.75.0 asks for
    found = re.search(r"\d+", text)
    return int(found.group()) if found else 24


def node_major(node: str) -> int | None:
    """The major version ``node --version`` reports, or None when it does not run."""
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except OSError:
        return None
    found = re.match(r"v(\d+)\.", out.strip())
    return int(found.group(1)) if found else None


def _node_bin_dir(major: int, npm: str, run: Runner, say: Callable[[str], None], progress: bool) -> Path:
    """A folder whose ``node`` is at least ``major``: the system's, or one from npm."""
    system = shutil.which("node")
    if system is not None and (node_major(system) or 0) >= major:
        return Path(system).parent
    arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    if arch is None:
        raise UIError(f"Node >= {major} is needed and no npm Node package exists for {platform.machine()}")
    cached = s.cache_dir() / f"node-v{major}-linux-{arch}"
    node = cached / "package" / "bin" / "node"
    if not os.access(node, os.X_OK):
        package = f"node-linux-{arch}@{major}"
        say(f"system node is {'missing' if system is None else 'older than ' + str(major)}: "
            f"taking Node from the npm package {package}")
        with tempfile.TemporaryDirectory(prefix="node-", dir=s.cache_dir()) as tmp:
            run([npm, "pack", package, "--pack-destination", tmp, "--loglevel=error"],
                label="node", progress=progress, cwd=Path(tmp))
            tarballs = sorted(Path(tmp).glob("*.tgz"))
            if not tarballs:
                raise UIError(f"npm pack {package} produced no tarball")
            unpacked = Path(tmp) / "out"
            with tarfile.open(tarballs[0]) as tar:
                # The binary and its license; the C headers (most of the files) are not needed.
                wanted = [m for m in tar.getmembers() if m.name.startswith("package/bin/")
                          or m.name in ("package/LICENSE", "package/package.json")]
                tar.extractall(unpacked, members=wanted, filter="data")  # keeps the owner's exec bit
            shutil.rmtree(cached, ignore_errors=True)
            os.replace(unpacked, cached)
    if node_major(str(node)) != major:
        raise UIError(f"the Node from npm ({node}) does not run here")
    return node.parent
