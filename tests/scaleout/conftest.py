"""Replicas of the HTTP server on one database behind a real HAProxy (``tests/load_balancer.py``).

``cluster(n, db=...)`` starts ``n`` replicas with ``http_server_factory`` (they share the test's cache
directory, so their L2 too) and HAProxy in front of them. ``cluster.client()`` connects through HAProxy,
``cluster.replica(i).client()`` to one replica directly. A client made with ``seen=`` records, for every
HTTP response, which replica answered (the ``X-Otel-Mcp-Replica`` header HAProxy sets).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from load_balancer import REPLICA_HEADER, HAProxy, start_haproxy
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from server_process import HttpServer


@contextlib.asynccontextmanager
async def _recording_transport(url: str, seen: list[str]) -> AsyncIterator[Any]:
    async def record(response: httpx2.Response) -> None:
        seen.append(response.headers.get(REPLICA_HEADER, "?"))

    async with create_mcp_http_client() as http:
        http.event_hooks["response"].append(record)
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


@dataclass
class Cluster:
    replicas: list[HttpServer]
    balancer: HAProxy
    db: str
    start_replica: Callable[..., HttpServer] = field(repr=False)

    def client(self, *, seen: list[str] | None = None, **kwargs: Any) -> Client:
        """An SDK client through HAProxy; ``seen`` collects the replica of every response."""
        if seen is None:
            return Client(self.balancer.url, **kwargs)
        return Client(_recording_transport(self.balancer.url, seen), **kwargs)

    def replica(self, index: int) -> HttpServer:
        return self.replicas[index]

    def restart(self, index: int) -> HttpServer:
        """Start replica ``index`` again on its port (after a stop or a kill); HAProxy finds it by its checks."""
        old = self.replicas[index]
        self.replicas[index] = self.start_replica(db=self.db, port=old.port)
        return self.replicas[index]


@pytest.fixture
def cluster(http_server_factory: Callable[..., HttpServer], tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """``cluster(n, db=..., env={...})``: ``n`` replicas on database ``db`` (a path or a URL) behind HAProxy."""
    balancers: list[HAProxy] = []

    def start(n: int, *, db: str | Path, env: dict[str, str] | None = None) -> Cluster:
        def start_replica(db: str | Path, port: int | None = None) -> HttpServer:
            return http_server_factory(db=db, env=env, port=port)

        replicas = [start_replica(db=db) for _ in range(n)]
        balancer = start_haproxy([r.port for r in replicas], tmp_path / f"haproxy-{len(balancers)}")
        balancers.append(balancer)
        return Cluster(replicas, balancer, str(db), start_replica)

    yield start
    for balancer in balancers:
        balancer.stop()
