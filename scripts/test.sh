#!/usr/bin/env bash
# The README's test command: install everything, then lint, type-check, run the
# tests with coverage (>= 80%) and the perf regression gate. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "==> ruff"
ruff check otel_mcp tests
echo "==> mypy --strict otel_mcp"
mypy
echo "==> observability stack (built once from Go modules and Debian packages, then cached)"
otel-mcp stack install --scale-out   # the scale-out tiers' Collector too: tests/scaleout/ runs it
echo "==> pytest (with coverage, including the server processes the tests start)"
rm -f .coverage .coverage.*
coverage run -m pytest "$@"   # parallel data files, one per process (pyproject: [tool.coverage.run])
echo "==> pytest tests/telemetry on the stock OpenTelemetry SDK (OTEL_MCP_FASTPATH=off)"
OTEL_MCP_FASTPATH=off coverage run -m pytest tests/telemetry -q -p no:cacheprovider
coverage combine -q
echo "==> coverage"
coverage report --fail-under=80
coverage xml -q -o coverage.xml
echo "==> perf gate (short load profile; ratios vs same-run references, see otel_mcp/loadtest/gate.py)"
python -m otel_mcp.loadtest.runner --profile ci --gate --quiet --out perf/results/load
echo "==> telemetry overhead gate (server CPU per request on vs off, paired rounds, self-tested)"
python -m otel_mcp.loadtest.overhead_gate --out perf/results/overhead-gate.json
