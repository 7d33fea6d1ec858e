"""Every span, metric and attribute otel-mcp emits, in one table.

Semantic-convention names come from ``opentelemetry.semconv``; the names that
are ours start with ``otel_mcp.`` and are declared here once. ``CATALOG`` and
``SPANS`` are the source of ``docs/telemetry.md`` (``python -m
otel_mcp.telemetry.docs`` regenerates it; a test fails when the two differ),
and the tests check that everything emitted is listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROMPT_NAME,
    GEN_AI_TOOL_CALL_ARGUMENTS,
    GEN_AI_TOOL_NAME,
)
from opentelemetry.semconv._incubating.attributes.jsonrpc_attributes import JSONRPC_REQUEST_ID
from opentelemetry.semconv._incubating.attributes.mcp_attributes import (
    MCP_METHOD_NAME,
    MCP_PROTOCOL_VERSION,
    MCP_SESSION_ID,
)
from opentelemetry.semconv._incubating.attributes.rpc_attributes import RPC_RESPONSE_STATUS_CODE
from opentelemetry.semconv._incubating.metrics.mcp_metrics import (
    MCP_SERVER_OPERATION_DURATION,
    MCP_SERVER_SESSION_DURATION,
)
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS, CLIENT_PORT
from opentelemetry.semconv.attributes.db_attributes import (
    DB_COLLECTION_NAME,
    DB_OPERATION_NAME,
    DB_SYSTEM_NAME,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PROTOCOL_NAME,
    NETWORK_PROTOCOL_VERSION,
    NETWORK_TRANSPORT,
)
from opentelemetry.semconv.metrics.db_metrics import DB_CLIENT_OPERATION_DURATION

# -- our metric names --------------------------------------------------------
ACTIVE_SESSIONS: Final = "otel_mcp.mcp.active_sessions"
REQUESTS_IN_FLIGHT: Final = "otel_mcp.mcp.requests_in_flight"
REQUEST_SIZE: Final = "otel_mcp.mcp.request.size"
RESPONSE_SIZE: Final = "otel_mcp.mcp.response.size"
TOOL_ERRORS: Final = "otel_mcp.tool.errors"
COMPOSE_DURATION: Final = "otel_mcp.compose.duration"
COMPOSE_RULES: Final = "otel_mcp.compose.rules"
COMPOSE_PROBLEMS: Final = "otel_mcp.compose.problems"
CACHE_REQUESTS: Final = "otel_mcp.cache.requests"
CACHE_ERRORS: Final = "otel_mcp.cache.errors"
CACHE_EVICTIONS: Final = "otel_mcp.cache.evictions"
CACHE_PUTS: Final = "otel_mcp.cache.puts"
CACHE_BYTES: Final = "otel_mcp.cache.bytes"
CACHE_ENTRIES: Final = "otel_mcp.cache.entries"
CACHE_COMPRESSION_RATIO: Final = "otel_mcp.cache.compression.ratio"
DB_SLOW_QUERIES: Final = "otel_mcp.db.slow_queries"
ALERTS: Final = "otel_mcp.alerts"
STORAGE_SIZE: Final = "otel_mcp.storage.size"
TELEMETRY_DROPPED: Final = "otel_mcp.telemetry.dropped"
PROCESS_NETWORK_IO: Final = "process.network.io"  # semconv name; system-metrics lacks it

# -- our attribute names -----------------------------------------------------
STEP: Final = "step"
OUTCOME: Final = "outcome"
RESULT: Final = "result"
TIER: Final = "tier"
ALERT: Final = "alert"
COMPONENT: Final = "component"
SIGNAL: Final = "signal"
NETWORK_IO_DIRECTION: Final = "network.io.direction"
COMPOSE_CACHE_HIT: Final = "otel_mcp.compose.cache_hit"
COMPOSE_CONTEXT_FILES: Final = "otel_mcp.compose.context_files"
COMPOSE_TOKEN_BUDGET: Final = "otel_mcp.compose.token_budget"
COMPOSE_RULES_SELECTED: Final = "otel_mcp.compose.rules.selected"
COMPOSE_RULES_INCLUDED: Final = "otel_mcp.compose.rules.included"
COMPOSE_RULES_DROPPED: Final = "otel_mcp.compose.rules.dropped"
COMPOSE_RULES_STUBBED: Final = "otel_mcp.compose.rules.stubbed"
COMPOSE_CONFLICTS: Final = "otel_mcp.compose.conflicts"
COMPOSE_OUTPUT_BYTES: Final = "otel_mcp.compose.output.bytes"
COMPOSE_TOKEN_ESTIMATE: Final = "otel_mcp.compose.token_estimate"
COMPOSE_GENERATION: Final = "otel_mcp.compose.generation"

# -- span names ----------------------------------------------------------------
SPAN_COMPOSE: Final = "otel_mcp.compose"
SPAN_COMPOSE_STEP_PREFIX: Final = "otel_mcp.compose."  # + step name
EVENT_COMPOSE_PROBLEM: Final = "otel_mcp.compose.problem"  # an event on SPAN_COMPOSE per broken rule skipped

# -- values ----------------------------------------------------------------------
TOOL_ERROR: Final = "tool_error"
OTHER: Final = "_OTHER"
# JSON-RPC codes that blame the client: not server errors (no error.type, status left unset).
PROTOCOL_ERROR_CODES: Final = frozenset({-32700, -32600, -32601, -32602, -32002})

# -- buckets -------------------------------------------------------------------
# The semantic conventions' explicit buckets for mcp.server.*.duration (seconds).
SEMCONV_DURATION_BUCKETS: Final = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# The View's finer buckets: our calls take 0.1-10 ms, where the semconv ones see nothing (seconds).
FINE_DURATION_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, *SEMCONV_DURATION_BUCKETS)
# Composition steps and DB statements: microseconds to a second (seconds).
STEP_DURATION_BUCKETS: Final = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)
SIZE_BUCKETS: Final = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)  # bytes
COUNT_BUCKETS: Final = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)  # rules
RATIO_BUCKETS: Final = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)  # uncompressed / stored


@dataclass(frozen=True)
class Instrument:
    name: str
    kind: str  # histogram, counter, updowncounter, observable counter, observable gauge, ...
    unit: str
    description: str
    attributes: tuple[str, ...]
    source: str  # which instrumentor emits it


@dataclass(frozen=True)
class SpanSpec:
    name: str
    kind: str
    attributes: tuple[str, ...]
    source: str
    note: str


_MCP_OP_ATTRS = (
    MCP_METHOD_NAME, MCP_PROTOCOL_VERSION, GEN_AI_OPERATION_NAME, GEN_AI_TOOL_NAME, GEN_AI_PROMPT_NAME, ERROR_TYPE,
    RPC_RESPONSE_STATUS_CODE, NETWORK_TRANSPORT, NETWORK_PROTOCOL_NAME,
)

CATALOG: Final[tuple[Instrument, ...]] = (
    Instrument(MCP_SERVER_OPERATION_DURATION, "histogram", "s",
               "Duration of one MCP request as seen by the server (semconv; finer buckets by View)",
               _MCP_OP_ATTRS, "McpInstrumentor"),
    Instrument(MCP_SERVER_SESSION_DURATION, "histogram", "s",
               "Duration of an MCP session, from initialize to the connection's end (semconv)",
               (MCP_PROTOCOL_VERSION, NETWORK_TRANSPORT, NETWORK_PROTOCOL_NAME, ERROR_TYPE), "McpInstrumentor"),
    Instrument(ACTIVE_SESSIONS, "observable updowncounter", "{session}", "MCP sessions open now",
               (NETWORK_TRANSPORT,), "McpInstrumentor"),
    Instrument(REQUESTS_IN_FLIGHT, "observable updowncounter", "{request}", "MCP requests being handled now",
               (NETWORK_TRANSPORT,), "McpInstrumentor"),
    Instrument(REQUEST_SIZE, "histogram", "By",
               "Bytes of each message the client sends (stdio: a JSON-RPC line; HTTP: a POST body, Content-Length)",
               (NETWORK_TRANSPORT, NETWORK_PROTOCOL_NAME), "McpInstrumentor"),
    Instrument(RESPONSE_SIZE, "histogram", "By",
               "Bytes of each message the server sends (stdio: a JSON-RPC line; HTTP: a POST's response body)",
               (NETWORK_TRANSPORT, NETWORK_PROTOCOL_NAME), "McpInstrumentor"),
    Instrument(TOOL_ERRORS, "counter", "{error}", "Tool calls that failed (isError results and exceptions), by tool",
               (GEN_AI_TOOL_NAME, ERROR_TYPE), "McpInstrumentor"),
    Instrument(COMPOSE_DURATION, "histogram", "s", "Duration of one composition step (cache misses only)",
               (STEP,), "ComposeInstrumentor"),
    Instrument(COMPOSE_RULES, "histogram", "{rule}", "Rules per composition, by outcome",
               (OUTCOME,), "ComposeInstrumentor"),
    Instrument(COMPOSE_PROBLEMS, "counter", "{rule}",
               "Broken rules a composition skipped (manifest `problems`), by error.type: missing_import, "
               "import_cycle, import_depth or invalid_glob; also an otel_mcp.compose.problem span event each",
               (ERROR_TYPE,), "ComposeInstrumentor"),
    Instrument(DB_CLIENT_OPERATION_DURATION, "histogram", "s",
               "Duration of one rules-database statement, SQLite or PostgreSQL (semconv)",
               (DB_SYSTEM_NAME, DB_OPERATION_NAME, DB_COLLECTION_NAME, ERROR_TYPE), "StoreInstrumentor"),
    Instrument(DB_SLOW_QUERIES, "counter", "{query}", "Rules-database statements slower than slow_query_ms",
               (DB_OPERATION_NAME, DB_COLLECTION_NAME), "StoreInstrumentor"),
    Instrument(CACHE_REQUESTS, "observable counter", "{request}",
               "Composition cache lookups by tier and result; an L2 lookup follows every L1 miss",
               (TIER, RESULT), "CacheInstrumentor"),
    Instrument(CACHE_PUTS, "observable counter", "{put}", "Compositions stored in the cache", (), "CacheInstrumentor"),
    Instrument(CACHE_ERRORS, "observable counter", "{error}", "Cache failures turned into misses", (),
               "CacheInstrumentor"),
    Instrument(CACHE_EVICTIONS, "observable counter", "{entry}", "Entries evicted from L1 by its policy", (TIER,),
               "CacheInstrumentor"),
    Instrument(CACHE_BYTES, "observable gauge", "By", "Bytes held by each cache tier", (TIER,), "CacheInstrumentor"),
    Instrument(CACHE_ENTRIES, "observable gauge", "{entry}", "Entries held by each cache tier", (TIER,),
               "CacheInstrumentor"),
    Instrument(CACHE_COMPRESSION_RATIO, "histogram", "1", "Uncompressed / stored bytes of a composition put in L2",
               (), "CacheInstrumentor"),
    Instrument(STORAGE_SIZE, "observable gauge", "By", "Bytes on disk: the database (with WAL) and the cache directory",
               (COMPONENT,), "ResourceInstrumentor"),
    Instrument(PROCESS_NETWORK_IO, "observable counter", "By",
               "Bytes sent and received by the process's network namespace (/proc/self/net/dev)",
               (NETWORK_IO_DIRECTION,), "ResourceInstrumentor"),
    Instrument(ALERTS, "counter", "{alert}", "Performance thresholds crossed (also logged as WARNING)",
               (ALERT,), "alerts"),
    Instrument(TELEMETRY_DROPPED, "observable counter", "{item}",
               "Spans, log records and metric points dropped before reaching the backend: a full span queue "
               "(error.type=queue_full) or a failed export (export_failed); logged once per outage",
               (SIGNAL, ERROR_TYPE), "setup"),
    Instrument("asyncio.process.duration", "histogram", "s",
               "Duration of a coroutine/function named in OTEL_PYTHON_ASYNCIO_*_NAMES_TO_TRACE (contrib asyncio)",
               ("type", "name", "state"), "NamedAsyncioInstrumentor"),
    Instrument("asyncio.process.created", "counter", "{process}",
               "Named coroutines/functions run (contrib asyncio; nothing when no name is configured)",
               ("type", "name", "state"), "NamedAsyncioInstrumentor"),
)

LINK: Final = "otel_mcp.link"  # on a server span's link: which context it points to
LINK_HTTP_SERVER: Final = "http.server"  # the ambient HTTP-level span when ``_meta`` chose the parent
LINK_HTTP_REQUEST: Final = "http.request"  # the request's ``traceparent`` header when it is not the parent

SYSTEM_METRICS: Final[dict[str, tuple[str, ...] | None]] = {
    "process.cpu.time": ("user", "system"), "process.cpu.utilization": ("user", "system"),
    "process.memory.usage": None, "process.memory.virtual": None, "process.open_file_descriptor.count": None,
    "process.thread.count": None, "process.context_switches": ("involuntary", "voluntary"),
    "process.disk.io": ("read", "write"), "cpython.gc.collections": None, "cpython.gc.collected_objects": None,
    "cpython.gc.uncollectable_objects": None, "system.cpu.utilization": ("idle", "user", "system", "irq"),
    "system.memory.usage": ("used", "free", "cached"), "system.memory.utilization": ("used", "free", "cached"),
    "system.disk.io": ("read", "write"), "system.network.io": ("transmit", "receive"),
}
"""Metrics asked of ``opentelemetry-instrumentation-system-metrics`` (its names and config values, semconv)."""

SPANS: Final[tuple[SpanSpec, ...]] = (
    SpanSpec("{mcp.method.name} [{target}]", "SERVER",
             (MCP_METHOD_NAME, MCP_PROTOCOL_VERSION, JSONRPC_REQUEST_ID, GEN_AI_OPERATION_NAME, GEN_AI_TOOL_NAME,
              GEN_AI_PROMPT_NAME, MCP_SESSION_ID, NETWORK_TRANSPORT, NETWORK_PROTOCOL_NAME, NETWORK_PROTOCOL_VERSION,
              CLIENT_ADDRESS, CLIENT_PORT, ERROR_TYPE, RPC_RESPONSE_STATUS_CODE, COMPOSE_CACHE_HIT,
              GEN_AI_TOOL_CALL_ARGUMENTS),
             "mcp SDK + McpInstrumentor",
             "The SDK's span, enriched; parent from params._meta, link to the HTTP context; "
             "otel_mcp.compose.cache_hit=true when a composition came from the cache; "
             "gen_ai.tool.call.arguments only with OTEL_MCP_CAPTURE_TOOL_ARGUMENTS=true (opt-in)"),
    SpanSpec(SPAN_COMPOSE, "INTERNAL",
             (COMPOSE_CACHE_HIT, COMPOSE_GENERATION, COMPOSE_CONTEXT_FILES, COMPOSE_TOKEN_BUDGET,
              COMPOSE_RULES_INCLUDED, COMPOSE_RULES_DROPPED, COMPOSE_RULES_STUBBED, COMPOSE_CONFLICTS,
              COMPOSE_OUTPUT_BYTES, COMPOSE_TOKEN_ESTIMATE, ERROR_TYPE),
             "ComposeInstrumentor", "One per composition the engine runs (no cache or a cache miss; "
             "a hit makes no span); an otel_mcp.compose.problem event (error.type = the kind) per broken rule "
             "it skipped"),
    SpanSpec(SPAN_COMPOSE_STEP_PREFIX + "{step}", "INTERNAL", (STEP, COMPOSE_RULES_SELECTED, ERROR_TYPE),
             "ComposeInstrumentor", "Children of otel_mcp.compose, only when it composes (cache miss)"),
    SpanSpec("{db.operation.name} [{db.collection.name}]", "CLIENT",
             ("db.system.name", "db.query.text", "db.namespace"), "opentelemetry-instrumentation-sqlite3",
             "Store writes and transactions; reads only with OTEL_MCP_DB_TRACE_READS=true"),
    SpanSpec("{db.operation.name}", "CLIENT",
             ("db.system.name", "db.query.text", "db.namespace", "net.peer.name", "net.peer.port"),
             "opentelemetry-instrumentation-psycopg",
             "The same statements on PostgreSQL (db.system.name=postgresql, db.namespace = the database)"),
    SpanSpec("{db.operation.name}", "CLIENT",
             ("db.system.name", "db.query.text", DB_OPERATION_NAME, DB_COLLECTION_NAME), "StoreInstrumentor",
             "A read slower than slow_query_ms, made after the fact with its measured start and end"),
    SpanSpec("asyncio coro-{name}", "INTERNAL", (), "NamedAsyncioInstrumentor",
             "Coroutines named in OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE (none by default)"),
)
