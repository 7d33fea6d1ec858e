"""Database faults and process faults with the real server process.

- the database locked by another process (a separate process holding ``BEGIN IMMEDIATE``);
- a read-only database;
- SIGKILL in the middle of pipelined write bursts, then a restart: every acknowledged write is in the
  history, nothing is half-written, the history is consistent;
- SIGTERM: the request in flight finishes, new ones are refused, the popularity snapshot is saved.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from relwire import (
    ACCEPT,
    PROTOCOL,
    REPLY_TIMEOUT,
    RawHttp,
    RawStdio,
    assert_no_traceback,
    decode_body,
    start_http,
)

from otel_mcp.errors import InvalidRule
from otel_mcp.store import RuleStore

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
print("released", flush=True)
"""


class Locker:
    """Another process holding the database's write lock until ``release()``."""

    def __init__(self, db: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "released"
        self.process.wait(timeout=REPLY_TIMEOUT)


def call(request_id: Any, tool: str, **arguments: Any) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def result_of(reply: dict[str, Any]) -> tuple[bool, Any]:
    """(is_error, structured content or error text) of a tools/call reply."""
    assert "result" in reply, reply
    result = reply["result"]
    text = "\n".join(c.get("text", "") for c in result.get("content", []))
    assert_no_traceback(text)
    return bool(result.get("isError")), result.get("structuredContent") or text


@pytest.fixture
def stdio_server(raw_stdio: Callable[..., RawStdio]) -> Iterator[RawStdio]:
    server = raw_stdio()
    server.initialize()
    yield server


def test_database_locked_by_another_process(stdio_server: RawStdio, db_path: Path) -> None:
    failed, _ = result_of(stdio_server.request(call(1, "create_rule", id="before", body="b", activation="always")))
    assert not failed
    locker = Locker(db_path)
    try:
        # Readers are not blocked by a writer (WAL).
        failed, listed = result_of(stdio_server.request(call(2, "list_rules")))
        assert not failed and [r["id"] for r in listed["rules"]] == ["before"]
        # A writer waits for the busy timeout, then gets a clear, retryable error; nothing is written.
        failed, text = result_of(stdio_server.request(call(3, "create_rule", id="during", body="d")))
        assert failed and "locked" in text and "retry" in text
    finally:
        locker.release()
    failed, _ = result_of(stdio_server.request(call(4, "create_rule", id="during", body="d")))
    assert not failed
    assert stdio_server.close() == 0
    assert_no_traceback(stdio_server.stderr())


def test_read_only_database(tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    RuleStore(db).create({"id": "kept", "body": "x"})
    store = RuleStore(db, read_only=True)
    assert store.get("kept").body == "x"
    with pytest.raises(InvalidRule, match="read-only"):
        store.create({"id": "new", "body": "y"})
    store.close()
    if os.geteuid() != 0:  # root ignores file modes: only an unprivileged run can test a 0444 file
        db.chmod(0o444)
        with pytest.raises((sqlite3.OperationalError, InvalidRule)):
            RuleStore(db).create({"id": "new", "body": "y"})


def _check_consistent(db: Path, acked: dict[str, int], bodies: dict[tuple[str, int], str]) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, version, etag FROM rules")}
        history: dict[str, list[tuple[int, str, str]]] = {}
        for rule_id, version, etag, spec in conn.execute(
            "SELECT rule_id, version, etag, spec FROM rule_versions ORDER BY rule_id, version"
        ):
            history.setdefault(rule_id, []).append((version, etag, json.loads(spec)["body"]))
    finally:
        conn.close()
    # Every acknowledged write is there, with the body that was acknowledged.
    for rule_id, version in acked.items():
        assert rule_id in history, f"acknowledged rule {rule_id} lost"
        versions = {v: body for v, _, body in history[rule_id]}
        for v in range(1, version + 1):
            assert v in versions, f"acknowledged version {v} of {rule_id} lost"
            if (rule_id, v) in bodies:
                assert versions[v] == bodies[(rule_id, v)]
    # Nothing half-written: every row has its history entry, histories are gap-free from 1.
    for rule_id, entries in history.items():
        assert [v for v, _, _ in entries] == list(range(1, len(entries) + 1)), rule_id
        if rule_id in rows:
            version, etag = rows[rule_id]
            assert (version, etag) == entries[-1][:2], rule_id
    assert set(rows) <= set(history)


def test_sigkill_during_write_bursts_loses_no_acknowledged_write(
    raw_stdio: Callable[..., RawStdio], db_path: Path
) -> None:
    acked: dict[str, int] = {}
    bodies: dict[tuple[str, int], str] = {}
    for round_ in range(3):
        server = raw_stdio()
        server.initialize()
        # Pipelined: creates and chained updates of a few hot rules, all in flight at once.
        requests: dict[str, tuple[str, int, str]] = {}
        lines = []
        for i in range(300):
            rule_id = f"r{round_}-{i}"
            body = f"round {round_} rule {i} " + "x" * (i % 50)
            requests[f"c-{rule_id}"] = (rule_id, 1, body)
            lines.append(call(f"c-{rule_id}", "create_rule", id=rule_id, body=body))
        server.send_bytes(b"".join(json.dumps(m).encode() + b"\n" for m in lines))
        target = 60 + 70 * round_
        got = 0
        while got < target:
            reply = server.receive()
            if reply.get("id") in requests:
                failed, data = result_of(reply)
                assert not failed, data
                rule_id, version, body = requests[reply["id"]]
                assert data["version"] == version
                acked[rule_id] = version
                bodies[(rule_id, version)] = body
                got += 1
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=REPLY_TIMEOUT)
        _check_consistent(db_path, acked, bodies)
    # A restarted server serves the surviving data.
    store = RuleStore(db_path)
    assert set(acked) <= {r.id for r in store.snapshot()[1]}
    store.close()


def test_sigkill_during_updates_of_one_rule(raw_stdio: Callable[..., RawStdio], db_path: Path) -> None:
    server = raw_stdio()
    server.initialize()
    failed, _ = result_of(server.request(call("c", "create_rule", id="hot", body="v1")))
    assert not failed
    acked: dict[str, int] = {"hot": 1}
    bodies = {("hot", 1): "v1"}
    for version in range(1, 120):
        body = f"v{version + 1}"
        reply = server.request(call(f"u{version}", "update_rule", id="hot", expected_version=version, body=body))
        failed, data = result_of(reply)
        assert not failed, data
        acked["hot"] = data["version"]
        bodies[("hot", data["version"])] = body
        if version == 100:
            # Fire more updates without waiting, then kill while they are being written.
            for extra in range(version + 1, version + 40):
                server.send(call(f"x{extra}", "update_rule", id="hot", expected_version=extra, body=f"v{extra + 1}"))
            server.process.send_signal(signal.SIGKILL)
            break
    server.process.wait(timeout=REPLY_TIMEOUT)
    _check_consistent(db_path, acked, bodies)


# -- SIGTERM ----------------------------------------------------------------------


def test_sigterm_stdio_lets_the_request_in_flight_finish(
    raw_stdio: Callable[..., RawStdio], db_path: Path, tmp_path: Path
) -> None:
    server = raw_stdio()
    server.initialize()
    failed, _ = result_of(server.request(call(1, "create_rule", id="a", body="a", activation="always")))
    assert not failed
    assert not result_of(server.request(call(2, "compose_rules")))[0]  # something for the popularity snapshot
    locker = Locker(db_path)
    server.send(call("inflight", "create_rule", id="inflight", body="b"))  # waits for the lock
    # Lines are read in order: once this ping is answered, the create above is in flight.
    assert server.request({"jsonrpc": "2.0", "id": "marker", "method": "ping"})["result"] == {}
    server.process.send_signal(signal.SIGTERM)
    server.send({"jsonrpc": "2.0", "id": "late", "method": "ping"})
    locker.release()
    replies = {}
    while len(replies) < 2:
        reply = server.receive()
        if "id" in reply:  # the write's notifications (resources/list_changed) come in between
            replies[reply["id"]] = reply
    failed, data = result_of(replies["inflight"])
    assert not failed and data["version"] == 1
    late = replies["late"]
    assert ("error" in late and "shutting down" in late["error"]["message"]) or late.get("result") == {}
    server.process.wait(timeout=REPLY_TIMEOUT * 2)
    assert server.process.returncode == 0
    assert RuleStore(db_path).get("inflight").body == "b"
    snapshots = list((tmp_path / "cache").rglob("popularity.json"))
    assert snapshots, "the popularity snapshot was not saved on SIGTERM"
    assert_no_traceback(server.stderr())


def test_sigterm_http_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    server = start_http(tmp_path)
    raw = RawHttp(server.port)
    raw.open_session()
    assert raw.post(call(1, "compose_rules")).status == 200
    locker = Locker(server.db)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REPLY_TIMEOUT * 2)
    try:
        headers = {"Content-Type": "application/json", "Accept": ACCEPT, "Mcp-Session-Id": raw.session_id or "",
                   "Mcp-Protocol-Version": PROTOCOL}
        conn.request("POST", "/mcp", json.dumps(call(2, "create_rule", id="inflight", body="b")), headers)
        response = conn.getresponse()  # the SSE headers: the server has the request, the write waits for the lock
        assert response.status == 200
        server.process.send_signal(signal.SIGTERM)
    finally:
        locker.release()
    messages = decode_body(response.getheader("content-type") or "", response.read())
    conn.close()
    failed, data = result_of(messages[-1])
    assert not failed and data["version"] == 1
    assert server.process.wait(timeout=REPLY_TIMEOUT * 2) == 0
    assert RuleStore(server.db).get("inflight").body == "b"
    assert list((tmp_path / "cache").rglob("popularity.json")), "the popularity snapshot was not saved"
    assert_no_traceback(server.output())
