"""Wire validation: every JSON-RPC message of a streamable-HTTP session, checked against the MCP schema.

``CapturingTransport`` wraps the httpx transport of an SDK client and sees the
real bytes: each POST body (the client's requests/notifications) and the
response it gets (a JSON body or an SSE stream, teed as it is read), and GET
streams. ``WireValidator`` checks each message:

- the JSON-RPC 2.0 envelope (``jsonrpc: "2.0"``; request, notification, result
  or error response; id a string or integer);
- the message against the schema models of the *negotiated* protocol version
  (``mcp_types._v2025_11_25`` or ``mcp_types._v2026_07_28``, generated from the
  spec's JSON schema): requests by method, results by the method of the
  request they answer, errors, server notifications;
- id matching: every request in a POST is answered exactly once, on that POST,
  and no response carries an id that was not asked.

A violation is kept with the offending message (``violations``) and saved by
``save()``; the scenario fails on any.
"""

from __future__ import annotations

import json
import threading
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types._v2025_11_25 as v2025
import mcp_types._v2026_07_28 as v2026
from pydantic import BaseModel, ValidationError

MODERN = "2026-07-28"
HEADER = "mcp-protocol-version"


class VersionModels:
    """The schema models of one protocol version, indexed by method."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.requests: dict[str, type[BaseModel]] = {}
        self.notifications: dict[str, type[BaseModel]] = {}
        for name in dir(module):
            model = getattr(module, name)
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                continue
            field = model.model_fields.get("method")
            args = getattr(field.annotation, "__args__", ()) if field is not None else ()
            if not args or not isinstance(args[0], str):
                continue
            if name.endswith("Request"):
                self.requests[args[0]] = model
            elif name.endswith("Notification"):
                self.notifications[args[0]] = model

    def model(self, name: str) -> type[BaseModel] | None:
        model = getattr(self.module, name, None)
        return model if isinstance(model, type) and issubclass(model, BaseModel) else None

    def result_models(self, method: str) -> list[type[BaseModel]]:
        request = self.requests.get(method)
        models: list[type[BaseModel]] = []
        if request is not None:
            specific = self.model(request.__name__[: -len("Request")] + "Result")
            if specific is not None:
                models.append(specific)
        for fallback in ("InputRequiredResult",) if models else ("Result",):
            model = self.model(fallback)
            if model is not None:
                models.append(model)
        return models


MODELS = {"2025-11-25": VersionModels(v2025), MODERN: VersionModels(v2026)}


def models_for(version: str | None) -> VersionModels:
    return MODELS[MODERN] if version == MODERN else MODELS["2025-11-25"]


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


class WireValidator:
    """Collects messages and violations from any number of sessions (thread-safe counters)."""

    def __init__(self) -> None:
        self.violations: list[dict[str, Any]] = []
        self.messages = 0
        self.requests = 0
        self.responses = 0
        self.notifications = 0
        self.versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def violation(self, kind: str, detail: str, message: Any, context: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.violations.append({"kind": kind, "detail": detail, "message": message, **(context or {})})

    def _validate(self, model: type[BaseModel], payload: Any) -> str | None:
        try:
            model.model_validate(payload)
        except ValidationError as exc:
            return _errors(exc)
        return None

    def _envelope(self, msg: Any, direction: str) -> str | None:
        if not isinstance(msg, dict):
            return "not a JSON object"
        if msg.get("jsonrpc") != "2.0":
            return "jsonrpc is not '2.0'"
        has_id = "id" in msg
        if has_id and (isinstance(msg["id"], bool) or not isinstance(msg["id"], str | int)):
            return "id is neither a string nor an integer"
        if "method" in msg:
            if not isinstance(msg["method"], str):
                return "method is not a string"
            if "result" in msg or "error" in msg:
                return "a request carries result/error"
        elif has_id:
            if ("result" in msg) == ("error" in msg):
                return "a response must carry exactly one of result and error"
        else:
            return "neither a request, a notification nor a response"
        return None

    def client_message(self, msg: Any, version: str | None) -> None:
        with self._lock:
            self.messages += 1
        problem = self._envelope(msg, "client")
        if problem:
            self.violation("envelope", problem, msg, {"direction": "client->server"})
            return
        models = models_for(version)
        method = msg["method"]
        table = models.requests if "id" in msg else models.notifications
        model = table.get(method)
        if "id" in msg:
            with self._lock:
                self.requests += 1
        if model is None:
            if method.startswith("notifications/") and "id" not in msg:
                return  # a client notification this version does not define (e.g. initialized in modern mode)
            self.violation("unknown-method", f"{method!r} is not a request of {version}", msg)
            return
        problem = self._validate(model, msg)
        if problem:
            self.violation("schema", f"{model.__name__}: {problem}", msg, {"direction": "client->server"})

    def server_message(self, msg: Any, version: str | None, pending: dict[Any, str]) -> None:
        with self._lock:
            self.messages += 1
        problem = self._envelope(msg, "server")
        if problem:
            self.violation("envelope", problem, msg, {"direction": "server->client"})
            return
        models = models_for(version)
        if "method" in msg:
            with self._lock:
                self.notifications += 1
            model = models.notifications.get(msg["method"]) if "id" not in msg else None
            if "id" not in msg and model is None:
                self.violation("unknown-notification", f"{msg['method']!r} is not a server notification", msg)
            elif model is not None:
                problem = self._validate(model, msg)
                if problem:
                    self.violation("schema", f"{model.__name__}: {problem}", msg)
            return
        with self._lock:
            self.responses += 1
        rid = msg["id"]
        if rid not in pending:
            self.violation("id-mismatch", f"response id {rid!r} answers no request of this exchange "
                                          f"(asked: {sorted(map(str, pending))})", msg)
            return
        method = pending.pop(rid)
        if "error" in msg:
            model = models.model("JSONRPCErrorResponse")
            problem = self._validate(model, msg) if model is not None else None
            if problem:
                self.violation("schema", f"error response: {problem}", msg, {"method": method})
            return
        candidates = models.result_models(method)
        failures = []
        for model in candidates:
            problem = self._validate(model, msg["result"])
            if problem is None:
                return
            failures.append(f"{model.__name__}: {problem}")
        self.violation("schema", " | ".join(failures), msg, {"method": method})

    def exchange(self, request_body: bytes, version: str | None, content_type: str, status: int,
                 body: bytes) -> None:
        """One POST: the client's message(s) and everything the server answered on it."""
        try:
            sent = json.loads(request_body) if request_body else None
        except ValueError:
            self.violation("json", "request body is not JSON", request_body[:2000].decode(errors="replace"))
            return
        batch = sent if isinstance(sent, list) else [sent]
        pending: dict[Any, str] = {}
        for msg in batch:
            self.client_message(msg, version)
            if isinstance(msg, dict) and "id" in msg and isinstance(msg.get("method"), str):
                pending[msg["id"]] = msg["method"]
        if not pending:
            if status not in (200, 202, 204):
                self.violation("http", f"notification answered with HTTP {status}", sent)
            return
        received = parse_body(content_type, body)
        for item in received:
            if isinstance(item, Exception):
                self.violation("json", str(item), body[:2000].decode(errors="replace"))
                continue
            for msg in item if isinstance(item, list) else [item]:
                self.server_message(msg, version, pending)
        if pending and status < 400:
            self.violation("id-mismatch", f"requests never answered: {pending}", sent)
        if status >= 400 and not received:
            self.violation("http", f"HTTP {status} without a JSON-RPC error", sent)
        if isinstance(sent, dict) and sent.get("method") == "initialize":
            for item in received:
                if isinstance(item, dict) and isinstance(item.get("result"), dict):
                    negotiated = item["result"].get("protocolVersion")
                    with self._lock:
                        self.versions[str(negotiated)] = self.versions.get(str(negotiated), 0) + 1

    def stream(self, version: str | None, body: bytes) -> None:
        """A GET (standalone SSE) stream: server notifications and requests only."""
        for item in parse_body("text/event-stream", body):
            if isinstance(item, Exception):
                self.violation("json", str(item), body[:2000].decode(errors="replace"))
            else:
                self.server_message(item, version, {})

    def note_version(self, version: str | None) -> None:
        if version:
            with self._lock:
                self.versions[version] = self.versions.get(version, 0) + 1

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for v in self.violations:
            kinds[v["kind"]] = kinds.get(v["kind"], 0) + 1
        return {"messages": self.messages, "requests": self.requests, "responses": self.responses,
                "notifications": self.notifications, "violations": len(self.violations),
                "violations_by_kind": kinds, "versions": dict(self.versions)}

    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, v in enumerate(self.violations[:100]):
            path = folder / f"violation-{i:03d}.json"
            path.write_text(json.dumps(v, indent=2, default=str))
            paths.append(path)
        return paths


def parse_body(content_type: str, body: bytes) -> list[Any]:
    """JSON-RPC messages of a response body (JSON or SSE ``data:`` events); bad JSON becomes a ValueError."""
    if not body.strip():
        return []
    out: list[Any] = []
    if content_type.startswith("text/event-stream"):
        for event in body.decode(errors="replace").replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip(" ") if line.startswith("data:") else "" for line in event.split("\n")
                             if line.startswith("data:"))
            if data.strip():
                try:
                    out.append(json.loads(data))
                except ValueError as exc:
                    out.append(ValueError(f"SSE data is not JSON: {exc}"))
        return out
    try:
        out.append(json.loads(body))
    except ValueError as exc:
        out.append(ValueError(f"body is not JSON: {exc}"))
    return out


class _Tee(httpx2.AsyncByteStream):
    def __init__(self, inner: Any, on_close: Any) -> None:
        self._inner = inner
        self._chunks: list[bytes] = []
        self._on_close = on_close
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._chunks.append(chunk)
            yield chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._on_close(b"".join(self._chunks))
            finally:
                await self._inner.aclose()


class CapturingTransport(httpx2.AsyncBaseTransport):
    """Sees every request and response body of one SDK client and hands them to the validator."""

    def __init__(self, validator: WireValidator, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.validator = validator
        self.inner = inner or httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.content if request.method == "POST" else b""
        version = request.headers.get(HEADER)
        response = await self.inner.handle_async_request(request)
        content_type = response.headers.get("content-type", "").lower()
        status = response.status_code
        if request.method == "POST":
            def done(data: bytes) -> None:
                self.validator.exchange(body, version, content_type, status, data)
        elif request.method == "GET" and content_type.startswith("text/event-stream"):
            def done(data: bytes) -> None:
                self.validator.stream(version, data)
        else:
            return response
        self.validator.note_version(version)
        response.stream = _Tee(response.stream, done)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def capturing_client_factory(validator: WireValidator) -> Any:
    """An ``http_client_factory`` for ``PoolConfig``: the engine's load client, capturing under its containment."""
    from otel_mcp.loadtest.loadgen.engine import http_transport, load_http_client

    def factory() -> httpx2.AsyncClient:
        return load_http_client(CapturingTransport(validator, inner=http_transport()))

    return factory
