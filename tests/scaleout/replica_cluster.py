"""Replicas of the HTTP server on one database behind a real HAProxy (``tests/load_balancer.py``).

``start_cluster(n, db, workdir)`` starts ``n`` replicas at once (they share ``workdir``'s cache directory,
so their L2 too) and HAProxy in front of them. ``cluster.client()`` connects through HAProxy,
``cluster.replica(i).client()`` to one replica directly. A client made with ``seen=`` records, for every
HTTP response, which replica answered (the ``X-Otel-Mcp-Replica`` header HAProxy sets).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from load_balancer import REPLICA_HEADER, HAProxy, replica_name, start_haproxy
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from server_process import HttpServer, server_environment, spawn_http_server, wait_healthy


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
    workdir: Path
    env: Mapping[str, str] = field(repr=False)

    def client(self, *, seen: list[str] | None = None, **kwargs: Any) -> Client:
        """An SDK client through HAProxy; ``seen`` collects the replica of every response."""
        if seen is None:
            return Client(self.balancer.url, **kwargs)
        return Client(_recording_transport(self.balancer.url, seen), **kwargs)

    def replica(self, index: int) -> HttpServer:
        return self.replicas[index]

    def name(self, index: int) -> str:
        """The replica's name in HAProxy (and in the responses' ``X-Otel-Mcp-Replica``)."""
        return replica_name(index)

    def kill(self, index: int) -> None:
        """SIGKILL: no drain, no cleanup, whatever it was doing."""
        process = self.replicas[index].process
        process.kill()
        process.wait(timeout=10)

    def restart(self, index: int) -> HttpServer:
        """Start replica ``index`` again on its port; HAProxy finds it back by its health checks."""
        old = self.replicas[index]
        new = spawn_http_server(db=self.db, files_root=old.files_root, log_dir=self.workdir, env=self.env,
                                port=old.port)
        self.replicas[index] = new
        wait_healthy(new)
        return new

    def stop(self) -> None:
        self.balancer.stop()
        for replica in self.replicas:  # all drain at once, then each is waited for
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas:
            replica.stop()


def start_cluster(n: int, db: str | Path, workdir: Path, env: Mapping[str, str] | None = None) -> Cluster:
    """``n`` replicas on database ``db`` (a SQLite path or a PostgreSQL URL) behind HAProxy, all healthy."""
    files_root = workdir / "files"
    files_root.mkdir(parents=True, exist_ok=True)
    full_env = {**server_environment(workdir), **(env or {})}
    replicas = [spawn_http_server(db=db, files_root=files_root, log_dir=workdir, env=full_env) for _ in range(n)]
    try:
        for replica in replicas:  # started together: the waits overlap
            wait_healthy(replica)
        balancer = start_haproxy([r.port for r in replicas], workdir / "haproxy")
    except BaseException:
        for replica in replicas:
            replica.stop()
        raise
    return Cluster(replicas, balancer, str(db), workdir, full_env)
