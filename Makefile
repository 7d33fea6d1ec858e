# The two entry points a new user needs; see README.md.
.PHONY: demo test bootstrap lint

demo: bootstrap   ## install everything, start the stack and the server, run a demo workload
	.venv/bin/otel-mcp demo

test:             ## install everything and run lint, types, tests (coverage) and the perf gate
	bash scripts/test.sh

bootstrap:
	bash scripts/bootstrap.sh

lint: bootstrap
	.venv/bin/ruff check otel_mcp tests && .venv/bin/mypy
