"""Raw JSON-RPC fuzzing of the stdio transport (a real server process, pipes).

Cases are pipelined in batches, each closed by a sentinel ping. Every reply line
must be a well-formed JSON-RPC message; every request whose id can be read gets
exactly as many replies as it was sent (duplicates included); every malformed
message is answered with an error; nothing carries a traceback; the process
survives and exits 0 at end of input.
"""

from __future__ import annotations

import json
import queue
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from fuzzgen import generate
from relwire import REPLY_TIMEOUT, RawStdio, assert_no_traceback, is_jsonrpc_error, is_jsonrpc_response

SEED = 7_302_026
STDIO_CASES = 5000
BATCH = 250
LINE_LIMIT = 64 * 1024


def _collect(server: RawStdio, owed: Counter[str], sentinel: str) -> list[Any]:
    """Read replies until the sentinel and every owed id have arrived (bounded)."""
    got: list[Any] = []
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + REPLY_TIMEOUT * 3
    while time.monotonic() < deadline:
        if seen[sentinel] and all(seen[k] >= n for k, n in owed.items()):
            break
        try:
            line = server.receive_raw(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        assert line is not None, f"server closed stdout:\n{server.stderr()[-3000:]}"
        text = line.decode("utf-8", "replace")
        assert_no_traceback(text)
        message = json.loads(text)
        if isinstance(message, dict) and "method" in message:
            continue  # a server notification (log message, list changed)
        assert is_jsonrpc_response(message), text[:500]
        seen[json.dumps(message["id"])] += 1
        got.append(message)
    missing = {k: n - seen[k] for k, n in owed.items() if seen[k] < n}
    assert not missing and seen[sentinel] == 1, f"unanswered requests: {list(missing)[:10]}"
    extra = {k: seen[k] - n for k, n in owed.items() if seen[k] > n}
    assert not extra, f"requests answered more than once: {extra}"
    return got


def test_stdio_fuzz(raw_stdio: Callable[..., RawStdio]) -> None:
    server = raw_stdio(env={"OTEL_MCP_MAX_REQUEST_BYTES": str(LINE_LIMIT)})
    server.initialize()
    cases = generate(SEED, STDIO_CASES)
    errors_by_id: dict[str, bool] = {}
    must_error_ids: set[str] = set()
    null_errors = 0
    for start in range(0, len(cases), BATCH):
        batch = cases[start : start + BATCH]
        owed: Counter[str] = Counter()
        for case in batch:
            if case.reply_id is not None:
                owed[case.reply_id] += 1
                if case.must_error:
                    must_error_ids.add(case.reply_id)
        sentinel = json.dumps(f"sentinel-{start}")
        payload = b"".join(case.payload + b"\n" for case in batch)
        payload += json.dumps({"jsonrpc": "2.0", "id": f"sentinel-{start}", "method": "ping"}).encode() + b"\n"
        server.send_bytes(payload)
        for message in _collect(server, owed, sentinel):
            key = json.dumps(message["id"])
            errors_by_id[key] = errors_by_id.get(key, False) or is_jsonrpc_error(message)
            null_errors += message["id"] is None
    assert all(errors_by_id.get(k) for k in must_error_ids), "a malformed request got a success reply"
    assert null_errors > 0  # the malformed lines without a readable id were answered too
    assert server.process.poll() is None
    assert server.close() == 0
    assert_no_traceback(server.stderr())


def test_stdio_oversized_lines_and_truncated_stream(raw_stdio: Callable[..., RawStdio]) -> None:
    server = raw_stdio(env={"OTEL_MCP_MAX_REQUEST_BYTES": str(LINE_LIMIT)})
    server.initialize()
    for size in (LINE_LIMIT + 1, LINE_LIMIT * 3, 1024 * 1024):
        body = "x" * size
        line = json.dumps({"jsonrpc": "2.0", "id": size, "method": "tools/call",
                           "params": {"name": "create_rule", "arguments": {"id": "big", "body": body}}})
        server.send_bytes(line.encode() + b"\n")
        reply = server.receive()
        assert is_jsonrpc_error(reply) and reply["id"] is None
        assert str(LINE_LIMIT) in reply["error"]["message"] and "max_request_bytes" in reply["error"]["message"]
        # The line after an oversized one is read normally (nothing of the big one leaks into it).
        assert server.request({"jsonrpc": "2.0", "id": f"after-{size}", "method": "ping"})["result"] == {}
    # A line just under the limit is accepted.
    fits = json.dumps({"jsonrpc": "2.0", "id": "fits", "method": "ping", "params": {"pad": ""}})
    pad = LINE_LIMIT - len(fits) - 1
    fits = json.dumps({"jsonrpc": "2.0", "id": "fits", "method": "ping", "params": {"pad": "y" * pad}})
    server.send_bytes(fits.encode() + b"\n")
    assert server.receive()["id"] == "fits"
    # A request cut off by end of input: a parse error, then a clean exit.
    server.send_bytes(b'{"jsonrpc":"2.0","id":"cut","method":"tools/li')
    assert server.close() == 0
    lines = []
    while (line := server.receive_raw(timeout=REPLY_TIMEOUT)) is not None:
        lines.append(json.loads(line))
    assert any(is_jsonrpc_error(m) and m["error"]["code"] == -32700 for m in lines), lines
    assert_no_traceback(server.stderr())


def test_requests_in_flight_at_end_of_input_are_answered(raw_stdio: Callable[..., RawStdio]) -> None:
    server = raw_stdio()
    server.initialize()
    ids = [f"eof-{i}" for i in range(50)]
    payload = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                    "params": {"name": "compose_rules", "arguments": {"context_files": ["a.py"]}}}).encode() + b"\n"
        for i in ids
    )
    server.send_bytes(payload)
    assert server.close() == 0
    answered = set()
    while (line := server.receive_raw(timeout=REPLY_TIMEOUT)) is not None:
        answered.add(json.loads(line).get("id"))
    assert set(ids) <= answered
