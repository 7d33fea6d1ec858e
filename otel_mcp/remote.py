"""Reading a running HTTP server from the command line (``otel-mcp stats``, ``otel-mcp cache stats --url``).

The URL may be the server's base (``http://127.0.0.1:8000``, what ``otel-mcp demo`` prints) or its MCP
endpoint (``.../mcp``); unset, it is the ``host``/``port`` settings' address and the token is the
``auth_token`` setting's. Every failure (nothing listening, a refused token, a page that is not an MCP
endpoint, a timeout, a server without the resource) becomes one ``RemoteError`` whose message says what
failed and what to try; ``otel-mcp`` prints it as one line and exits 1.
"""

from __future__ import annotations

import argparse
import json
import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from otel_mcp.config import Settings

MCP_PATH = "/mcp"
TIMEOUT_S = 10.0
ANY_ADDRESS = ("", "0.0.0.0", "::")  # a server bound to every interface is reached on loopback


class RemoteError(Exception):
    """A running server could not be read; the message says what failed and what to try."""


def add_server_flags(parser: argparse.ArgumentParser, url_help: str | None = None) -> None:
    parser.add_argument("--url", default=None,
                        help=url_help or "the server's base URL or MCP endpoint (default: the host and port "
                                         f"settings, {default_url(Settings())})")
    parser.add_argument("--token", default=None, help="bearer token (default: the auth_token setting)")


def read_server_json(args: argparse.Namespace, uri: str) -> dict[str, Any]:
    """Read ``uri`` from the server that ``--url``/``--token`` name, or else the settings."""
    settings = Settings.load()
    return read_json_resource(args.url or default_url(settings), uri, args.token or settings.bearer_token())


def default_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ANY_ADDRESS else settings.host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


def mcp_endpoint(url: str) -> str:
    """The MCP endpoint of ``url``: a base URL (no path) gets ``/mcp``; any other path is kept."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RemoteError(f"{url!r} is not an http(s) URL: give the server's address, "
                          "e.g. --url http://127.0.0.1:8000")
    if parts.path in ("", "/"):
        parts = parts._replace(path=MCP_PATH)
    return urlunsplit(parts)


def read_json_resource(url: str, uri: str, token: str | None) -> dict[str, Any]:
    """Read the JSON resource ``uri`` of the server at ``url`` with the official MCP client."""
    import anyio

    endpoint = mcp_endpoint(url)
    refusals: list[int] = []  # HTTP statuses >= 400 seen: the SDK folds them into generic MCP errors
    try:
        text = anyio.run(_read, endpoint, uri, token, refusals)
    except Exception as exc:
        raise RemoteError(explain(endpoint, uri, exc, refusals[-1] if refusals else None)) from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise RemoteError(f"{endpoint} answered {uri} with something other than a JSON object: "
                          "is it an otel-mcp server of this version?")
    return data


async def _read(endpoint: str, uri: str, token: str | None, refusals: list[int]) -> str:
    import httpx2 as httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def note_refusal(response: httpx.Response) -> None:
        if response.status_code >= 400:
            refusals.append(response.status_code)

    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx.AsyncClient(headers=headers, timeout=TIMEOUT_S,
                                 event_hooks={"response": [note_refusal]}) as http, Client(
        streamable_http_client(endpoint, http_client=http)
    ) as client:
        result = await client.read_resource(uri)
    return "".join(getattr(c, "text", "") for c in result.contents)


def explain(endpoint: str, uri: str, exc: BaseException, status: int | None) -> str:
    """One line: what failed reading ``uri`` at ``endpoint``, and what to try."""
    import httpx2 as httpx
    from mcp.shared.exceptions import MCPError

    error = _first_leaf(exc)
    where = urlsplit(endpoint).netloc
    if status in (401, 403):
        return (f"{endpoint} refused the request (HTTP {status}): give the server's bearer token with --token "
                "or OTEL_MCP_AUTH_TOKEN")
    if status in (404, 405):
        return (f"no MCP endpoint at {endpoint} (HTTP {status}): give the server's base URL "
                f"(http://{where}) or its {MCP_PATH} endpoint")
    if status is not None:
        return f"{endpoint} answered HTTP {status} ({_text(error)}): see the server's log"
    if isinstance(error, httpx.TimeoutException):
        return f"{endpoint} did not answer within {TIMEOUT_S:g} s: is the server overloaded or stopped? try again"
    if _caused_by(error, ssl.SSLError):
        return f"TLS with {where} failed ({_text(error)}): if the server speaks plain HTTP, use an http:// URL"
    if isinstance(error, httpx.ConnectError):
        return (f"cannot connect to {where} ({_text(error)}): is `otel-mcp serve --transport http` running "
                "there? start it, or point --url at the server")
    if isinstance(error, MCPError):
        return f"{endpoint} refused to read {uri} ({error.message}): is it an otel-mcp server of this version?"
    return f"reading {uri} from {endpoint} failed: {_text(error)}"


def _first_leaf(exc: BaseException) -> BaseException:
    """The first real error inside the task groups the MCP client runs in."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _text(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
