"""HTTP shutdown with a standalone GET (SSE) stream open.

The stream must not hold shutdown for the drain period (2 s, for POSTs in flight): it is ended at once,
and ended properly (the chunked response terminated, not cut: no ``IncompleteRead`` for the client,
no "ASGI callable returned without completing response" in the log).
"""

from __future__ import annotations

import time
from pathlib import Path

from relwire import RawHttp, open_get_stream, read_in_background, start_http


def timed_stop(tmp: Path, with_stream: bool) -> tuple[float, dict[str, object], str]:
    server = start_http(tmp)
    raw = RawHttp(server.port)
    raw.open_session()
    outcome: dict[str, object] = {}
    if with_stream:
        response = open_get_stream(server.port, raw.session_id or "")
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("text/event-stream")
        reader, outcome = read_in_background(response)
        time.sleep(0.3)
    started = time.monotonic()
    code = server.stop()
    took = time.monotonic() - started
    assert code == 0
    if with_stream:
        reader.join(timeout=30)
        assert not reader.is_alive(), "the GET stream was not ended"
    return took, outcome, server.output()


def test_open_get_stream_does_not_hold_shutdown(tmp_path: Path) -> None:
    plain, _, _ = timed_stop(tmp_path / "plain", with_stream=False)
    streamed, outcome, log = timed_stop(tmp_path / "stream", with_stream=True)
    assert "error" not in outcome, outcome  # ended properly, not cut
    assert "ASGI callable returned without completing response" not in log, log[-2000:]
    assert "Traceback" not in log
    # A stream held until the drain period ends (2 s) would add 2 s to the plain stop.
    assert streamed < plain + 1.0, (streamed, plain)
    print(f"stop with GET stream {streamed:.2f}s, without {plain:.2f}s")
