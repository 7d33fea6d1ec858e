"""Deterministic JSON-RPC fuzz cases (a seeded ``random.Random``: the same cases on every run).

Each case is the raw bytes of one message plus what a correct server must do:
``reply_id`` is the JSON-encoded id a reply must carry when the message is a
request whose id can be read (``None``: no reply is owed, though an ``id: null``
error is allowed), and ``must_error`` says every reply must be a JSON-RPC error.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from typing import Any

TOOLS = (
    "list_rules", "get_rule", "create_rule", "update_rule", "delete_rule", "compose_rules", "search_rules",
    "rule_history", "rollback_rule", "validate_rule", "import_rules", "export_rules",
)
ARG_NAMES = (
    "id", "body", "description", "activation", "globs", "exclude_globs", "tags", "priority", "imports",
    "overrides", "settings", "enabled", "expected_version", "version", "to_version", "context_files",
    "rule_ids", "agent", "token_budget", "query", "limit", "cursor", "directory", "format",
)
METHODS = (
    "initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read",
    "resources/templates/list", "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
    "logging/setLevel", "completion/complete", "notifications/initialized", "notifications/cancelled",
    "notifications/roots/list_changed", "sampling/createMessage", "roots/list",
)
KINDS = (
    "garbage", "truncated", "scalar", "deep", "bad_envelope", "unknown_method", "wrong_params", "tool_args",
    "duplicate_id", "unicode", "response_shaped", "notification", "hostile",
)
# Arguments an attacker found tracebacks with: versions SQLite cannot hold, names longer than a file name.
HOSTILE_CALLS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    *(("tools/call", "get_rule", {"id": "a", "version": v}) for v in (2**63, 2**64, 10**30)),
    *(("tools/call", "rollback_rule", {"id": "a", "to_version": v}) for v in (2**63, 2**64)),
    *(("tools/call", tool, {"directory": d}) for tool in ("import_rules", "export_rules")
      for d in ("x" * 300, "é" * 200, ("d" * 250 + "/") * 20)),
    ("resources/read", "", {"uri": f"rules://a@{2**63}"}),
)
MUST_ERROR = {"garbage", "truncated", "scalar", "deep", "bad_envelope", "unknown_method"}


@dataclass(frozen=True)
class Case:
    kind: str
    payload: bytes
    reply_id: str | None  # json.dumps(id) of the reply owed, or None
    must_error: bool


def random_text(rng: random.Random, max_len: int = 24) -> str:
    alphabet = string.printable + "éß漢字🙂\u202e\u0000\ufeff"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len)))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randint(0, 9 if depth < 3 else 5)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64, 10**30, rng.randint(-1000, 1000)])
    if choice == 3:
        return rng.choice([0.5, -1e308, 1e-320, 3.0])
    if choice in (4, 5):
        return random_text(rng)
    if choice in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_text(rng, 8): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _encode(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=bool(random.getrandbits(1))).encode("utf-8", "surrogatepass")


def _request_id(rng: random.Random, index: int) -> int | str:
    return index if rng.random() < 0.5 else f"fz-{index}-{random_text(rng, 6)}"


def make_case(rng: random.Random, index: int, kind: str, previous_id: int | str | None) -> Case:
    rid = _request_id(rng, index)
    owed = json.dumps(rid)
    if kind == "garbage":
        raw = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 120))).replace(b"\n", b" ")
        return Case(kind, raw if raw.strip() else b"x", None, True)
    if kind == "truncated":
        text = json.dumps({"jsonrpc": "2.0", "id": rid, "method": rng.choice(METHODS), "params": random_json(rng)})
        return Case(kind, text[: rng.randint(1, len(text) - 1)].encode(), None, True)
    if kind == "scalar":
        value = rng.choice([None, True, 1, -2.5, "str", [], [1, 2], [{"jsonrpc": "2.0", "id": 1, "method": "ping"}]])
        return Case(kind, json.dumps(value).encode(), None, True)
    if kind == "deep":
        depth = rng.randint(200, 5000)
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        body = opener * depth + "1" + closer * depth
        if rng.random() < 0.5:
            body = '{"jsonrpc":"2.0","id":' + json.dumps(rid) + ',"method":"ping","params":{"x":' + body + "}}"
            # the server answers the ping or refuses the nesting (then with id null: too deep to read the id)
            return Case(kind, body.encode(), None, False)
        return Case(kind, body.encode(), None, True)
    if kind == "bad_envelope":
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": rng.choice(METHODS), "params": {}}
        mutation = rng.randint(0, 5)
        owed_id: str | None = owed
        if mutation == 0:
            message["jsonrpc"] = rng.choice(["1.0", "2", 2.0, None, ""])
        elif mutation == 1:
            del message["jsonrpc"]
        elif mutation == 2:
            message["id"] = rng.choice([None, 1.5, True, [1], {"a": 1}])
            owed_id = None
        elif mutation == 3:
            message["method"] = rng.choice([1, None, [], {}, True])
        elif mutation == 4:
            message["params"] = rng.choice(["x", 1, True, [1, 2]])
        else:
            del message["method"]
        return Case(kind, _encode(message), owed_id, True)
    if kind == "unknown_method":
        method = rng.choice(["", "foo", "tools/unknown", "rpc.discover", "../etc", random_text(rng), "tools/list/x"])
        if method.startswith("notifications/") or method in METHODS:
            method = "x-" + method
        return Case(kind, _encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": {}}), owed, True)
    if kind == "wrong_params":
        method = rng.choice([m for m in METHODS if not m.startswith("notifications/")])
        params = random_json(rng) if rng.random() < 0.5 else {"name": random_json(rng), "uri": random_json(rng)}
        if not isinstance(params, dict):
            params = {"value": params}
        return Case(kind, _encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}), owed, False)
    if kind == "tool_args":
        args = {name: random_json(rng) for name in rng.sample(ARG_NAMES, rng.randint(0, 6))}
        params = {"name": rng.choice(TOOLS), "arguments": args}
        return Case(kind, _encode({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}), owed, False)
    if kind == "duplicate_id":
        same = previous_id if previous_id is not None else rid
        message = {"jsonrpc": "2.0", "id": same, "method": rng.choice(["ping", "tools/list", "prompts/list"])}
        return Case(kind, _encode(message), json.dumps(same), False)
    if kind == "unicode":
        method = rng.choice(["ping", "tools/list", "tools/call"])
        text = '{"jsonrpc":"2.0","id":' + json.dumps(rid) + ',"method":"' + method + '","params":{"name":"'
        text += rng.choice(["\\ud800", "\\udfff\\ud800", "\\u0000", "é\\u202e", "\\uffff"]) + '","arguments":{}}}'
        return Case(kind, text.encode(), owed, False)
    if kind == "hostile":
        method, tool, args = rng.choice(HOSTILE_CALLS)
        params = {"name": tool, "arguments": args} if tool else args
        return Case(kind, _encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}), owed, False)
    if kind == "response_shaped":
        message = {"jsonrpc": "2.0", "id": rid, rng.choice(["result", "error"]): random_json(rng)}
        return Case(kind, _encode(message), None, False)
    # a notification: never answered (an id-null error is allowed if it is malformed)
    message = {"jsonrpc": "2.0", "method": rng.choice(METHODS), "params": random_json(rng)}
    if not isinstance(message["params"], dict):
        message["params"] = {}
    return Case("notification", _encode(message), None, False)


def generate(seed: int, count: int) -> list[Case]:
    rng = random.Random(seed)
    random.seed(seed)  # _encode's ensure_ascii coin
    cases: list[Case] = []
    previous: int | str | None = None
    for index in range(count):
        kind = KINDS[index % len(KINDS)] if index < len(KINDS) * 4 else rng.choice(KINDS)
        case = make_case(rng, index, kind, previous)
        if case.reply_id is not None:
            previous = json.loads(case.reply_id)
        cases.append(case)
    return cases
