"""HAProxy in front of replicas, configured from ``haproxy/haproxy.cfg``: handshake-era sessions stay on the
replica that opened them, sessionless 2026-07-28 requests go round-robin; docker-compose.scale-out.yml names
the same replicas the configuration does."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import yaml
from load_balancer import HAPROXY, TEMPLATE, render_config
from mcp.shared.exceptions import MCPError
from replica_cluster import Cluster

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.scale-out.yml"


def _haproxy_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30,
                          check=False, env={})  # the default bind; -c binds nothing


def test_the_shipped_and_the_rendered_configurations_are_valid(tmp_path: Path) -> None:
    shipped = _haproxy_check(TEMPLATE)
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    rendered = tmp_path / "haproxy.cfg"
    rendered.write_text(render_config([8001, 8002]))
    checked = _haproxy_check(rendered)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "127.0.0.1:8001" in rendered.read_text() and "replica-3" not in rendered.read_text()


def test_the_compose_topology_matches_the_load_balancer_configuration() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    replicas = sorted(name for name in services if name.startswith("replica-"))
    assert replicas == ["replica-1", "replica-2", "replica-3"]
    servers = [line.split()[1:3] for line in TEMPLATE.read_text().splitlines() if line.strip().startswith("server ")]
    assert servers == [[name, f"{name}:8000"] for name in replicas], "haproxy.cfg must name the compose replicas"
    for name in replicas:
        env = services[name]["environment"]
        assert env["OTEL_MCP_DB"].startswith("postgresql://") and "@postgres:5432/" in env["OTEL_MCP_DB"]
        assert env["OTEL_MCP_TRANSPORT"] == "http" and env["OTEL_MCP_PORT"] == "8000"
        assert env["OTEL_MCP_AUTH_TOKEN"].startswith("${OTEL_MCP_AUTH_TOKEN:?"), "a replica off loopback needs a token"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    balancer = services["haproxy"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in balancer["volumes"]}
    assert mounted == {"./haproxy/haproxy.cfg": "/usr/local/etc/haproxy/haproxy.cfg"}
    assert balancer["environment"]["OTEL_MCP_LB_BIND"] == "0.0.0.0:8000"
    dockerfile = (REPO_ROOT / services["replica-1"]["build"] / "Dockerfile").read_text()
    for name in replicas:  # a volume starts with the owner of the image's folder: it must exist there
        (target,) = [v.split(":")[1] for v in services[name]["volumes"]]
        assert target in dockerfile, f"{name} mounts {target}, which the image does not create for its user"
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"


async def test_sessionless_requests_spread_and_handshake_sessions_stick(
    cluster: Callable[..., Cluster], db_path: Path
) -> None:
    replicas = cluster(3, db=db_path)
    modern: list[str] = []
    async with replicas.client(seen=modern) as client:
        for _ in range(6):
            assert not (await client.call_tool("list_rules", {})).is_error
    assert set(modern) == {"replica-1", "replica-2", "replica-3"}, modern

    legacy: list[str] = []
    async with replicas.client(seen=legacy, mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        for _ in range(6):
            assert not (await client.call_tool("list_rules", {})).is_error
    # The initialize answer (which names the session) may come from any replica; every request after it
    # carries the session id and must reach that same replica.
    assert len(legacy) >= 7 and len(set(legacy)) == 1, legacy


async def test_a_session_whose_replica_died_gets_a_clear_error_and_a_new_session_works(
    cluster: Callable[..., Cluster], db_path: Path
) -> None:
    replicas = cluster(3, db=db_path)
    seen: list[str] = []
    async with replicas.client(seen=seen, mode="legacy") as client:
        assert not (await client.call_tool("list_rules", {})).is_error
        home = seen[-1]
        replicas.kill(int(home.rsplit("-", 1)[1]) - 1)
        # HAProxy cannot connect to it and sends the request to another replica (option redispatch), which does not
        # know the session: the client is told at once, it does not hang.
        with anyio.fail_after(10), pytest.raises(MCPError, match="Session not found"):
            await client.call_tool("list_rules", {})
    async with replicas.client(seen=seen, mode="legacy") as fresh:
        assert not (await fresh.call_tool("list_rules", {})).is_error
    assert seen[-1] != home
