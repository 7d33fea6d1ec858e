"""A real HAProxy (Debian's ``/usr/sbin/haproxy``) in front of otel-mcp HTTP replicas, for tests.

The configuration is the one users get, ``haproxy/haproxy.cfg`` (sticky on ``Mcp-Session-Id`` for
handshake-era sessions, round-robin for sessionless 2026-07-28 requests), with its ``server`` lines replaced
by the test's replicas on loopback and its frontend bound to a free loopback port.

Usage::

    balancer = start_haproxy([replica.port for replica in replicas], tmp_path)
    async with Client(balancer.url) as client: ...
    balancer.stop()
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from server_process import free_port, wait_healthy

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "haproxy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
START_TIMEOUT = 10.0  # seconds; a bound, not a performance assertion
REPLICA_HEADER = "X-Otel-Mcp-Replica"  # set by the template on every response: which replica answered


def replica_name(index: int) -> str:
    return f"replica-{index + 1}"


def render_config(replica_ports: Sequence[int], template: Path = TEMPLATE) -> str:
    """The template with its ``server`` lines replaced by one per replica port on 127.0.0.1."""
    lines = [line for line in template.read_text().splitlines() if not line.lstrip().startswith("server ")]
    indent = "    "
    servers = [f"{indent}server {replica_name(i)} 127.0.0.1:{port} check" for i, port in enumerate(replica_ports)]
    return "\n".join(lines + servers) + "\n"


@dataclass
class HAProxy:
    """A running ``haproxy`` process in front of the replicas."""

    process: subprocess.Popen[bytes]
    port: int
    config: Path
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # immediate stop: the tests are done with it
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_haproxy(replica_ports: Sequence[int], workdir: Path) -> HAProxy:
    """Start HAProxy on a free loopback port and wait until it answers ``/healthz`` through a replica."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "haproxy.cfg"
    config.write_text(render_config(replica_ports))
    port = free_port()
    log = workdir / "haproxy.log"
    env = {**os.environ, "OTEL_MCP_LB_BIND": f"127.0.0.1:{port}"}
    with log.open("wb") as out:
        # -db: stay in the foreground (no daemon), so the process is ours to stop.
        process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
    balancer = HAProxy(process, port, config, log)
    wait_healthy(balancer, START_TIMEOUT, name="haproxy")  # /healthz through the balancer: a replica answers
    return balancer
