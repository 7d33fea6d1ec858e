"""Fixtures of the reliability suite; the helpers they use are in ``relwire.py``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from relwire import HttpProc, RawStdio, start_http


@pytest.fixture
def raw_stdio(
    tmp_path: Path, db_path: Path, files_root: Path, server_env: dict[str, str]
) -> Iterator[Callable[..., RawStdio]]:
    """``raw_stdio(*extra_args, env={...})`` -> a started ``RawStdio`` (closed at teardown)."""
    started: list[RawStdio] = []

    def start(*extra: str, env: Mapping[str, str] | None = None, db: Path | None = None) -> RawStdio:
        args = [
            sys.executable, "-m", "otel_mcp.cli", "serve", "--db", str(db or db_path),
            "--files-root", str(files_root), *extra,
        ]
        server = RawStdio(args, {**server_env, **(env or {})}, tmp_path / f"stdio-{len(started)}.stderr")
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.close()



@pytest.fixture(scope="module")
def module_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., HttpProc]]:
    """``module_http(*extra_args, env={...})`` -> an HTTP server shared by the tests of one module."""
    started: list[HttpProc] = []

    def start(*extra: str, env: Mapping[str, str] | None = None) -> HttpProc:
        server = start_http(tmp_path_factory.mktemp("http"), *extra, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
