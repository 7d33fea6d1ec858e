"""The server freezes its startup heap: full collections walk only what requests leave behind."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

from relwire import start_http

from otel_mcp.config import Settings
from otel_mcp.server.runner import freeze_startup_heap, tune_young_collections


def test_a_served_process_has_its_startup_heap_frozen(tmp_path: Path) -> None:
    server = start_http(tmp_path)
    try:
        raw = server.raw()
        raw.open_session()
        reply = raw.post({"jsonrpc": "2.0", "id": 7, "method": "resources/read",
                          "params": {"uri": "otel-mcp://stats"}})
        stats = json.loads(reply.messages[-1]["result"]["contents"][0]["text"])
        process = stats["process"]
    finally:
        assert server.stop() == 0
    assert process["gc_frozen_objects"] > 50_000  # modules, the store, the providers
    assert len(process["gc_collections"]) == 3
    assert process["gc_thresholds"][0] == Settings().gc_young_threshold == 10_000  # the served process's default


def test_young_collections_threshold_is_set_or_left_alone() -> None:
    before = gc.get_threshold()
    try:
        tune_young_collections(0)
        assert gc.get_threshold() == before
        tune_young_collections(5_000)
        assert gc.get_threshold() == (5_000, *before[1:])
    finally:
        gc.set_threshold(*before)


def test_freezing_collects_garbage_first_and_moves_the_rest_out_of_reach() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the cyclic GC frees it

    garbage = weakref.ref(Node())  # unreachable at freeze time: collected, not frozen
    kept = Node()
    try:
        freeze_startup_heap()
        assert garbage() is None
        assert gc.get_freeze_count() > 0
        assert not any(obj is kept for obj in gc.get_objects())  # in the permanent generation, walked by none
    finally:
        gc.unfreeze()
    assert any(obj is kept for obj in gc.get_objects())
