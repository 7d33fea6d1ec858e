"""The ``cluster`` fixture: ``cluster(n, db=..., env={...})`` starts replicas behind HAProxy for one test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from replica_cluster import Cluster, start_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """``cluster(n, db=..., env={...})``: ``n`` replicas on ``db`` behind HAProxy, stopped after the test."""
    started: list[Cluster] = []

    def start(n: int, *, db: str | Path, env: Mapping[str, str] | None = None) -> Cluster:
        started.append(start_cluster(n, db, tmp_path / f"cluster-{len(started)}", env))
        return started[-1]

    yield start
    for running in started:
        running.stop()
