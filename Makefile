# The two entry points a new user needs; see README.md.
.PHONY: demo test bootstrap lint test-latest-otel screenshots

# CI and offline machines: `otel-mcp stack install` builds the Jaeger UI from the vendored
# source beside the checkout (../shared/vendor) instead of cloning it from GitHub.
export OTEL_MCP_JAEGER_UI_SOURCE ?= $(wildcard $(abspath $(CURDIR)/../shared/vendor/jaeger-ui-v1.75.0.tar.gz))

demo: bootstrap   ## install everything, start the stack and the server, run a demo workload
	.venv/bin/otel-mcp demo

test:             ## install everything and run lint, types, tests (coverage) and the perf gate
	bash scripts/test.sh

bootstrap:
	bash scripts/bootstrap.sh

lint: bootstrap
	.venv/bin/ruff check otel_mcp tests && .venv/bin/mypy

# Not part of `make test` (the newest releases change under it): the telemetry tests in a venv of their own
# with the newest OpenTelemetry SDK, exporters and contrib instrumentations, fast paths on and off.
OTEL_PACKAGES = opentelemetry-api opentelemetry-sdk opentelemetry-proto opentelemetry-exporter-otlp \
	opentelemetry-exporter-otlp-proto-common opentelemetry-exporter-otlp-proto-grpc \
	opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-prometheus opentelemetry-instrumentation \
	opentelemetry-instrumentation-sqlite3 opentelemetry-instrumentation-psycopg opentelemetry-instrumentation-dbapi opentelemetry-instrumentation-asyncio \
	opentelemetry-instrumentation-system-metrics opentelemetry-semantic-conventions
LATEST = .venv-latest-otel
test-latest-otel:  ## the telemetry tests on the newest OpenTelemetry releases (separate venv)
	[ -x $(LATEST)/bin/python ] || python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q -e ".[dev]"
	$(LATEST)/bin/python -m pip install -q --upgrade --pre $(OTEL_PACKAGES)
	$(LATEST)/bin/python -m pip list 2>/dev/null | grep -i '^opentelemetry'
	OTEL_MCP_FASTPATH=on $(LATEST)/bin/python -m pytest tests/telemetry -q -p no:cacheprovider \
		-k "not tested_range and not tested_version"
	OTEL_MCP_FASTPATH=off $(LATEST)/bin/python -m pytest tests/telemetry -q -p no:cacheprovider \
		-k "not tested_range and not tested_version"
	$(LATEST)/bin/python -m pytest tests/telemetry/test_boundaries.py -q -p no:cacheprovider \
		-k "tested_range or tested_version" || echo "newer than the tested range: see pyproject.toml's comment"

screenshots: bootstrap   ## re-take the UI screenshots in docs/images (real stack, real browser)
	.venv/bin/otel-mcp stack install
	OTEL_MCP_SCREENSHOT_DIR=$(CURDIR)/docs/images .venv/bin/pytest tests/stack/test_ui_e2e.py -q -p no:cacheprovider
	rm -f docs/images/*-failed.png
