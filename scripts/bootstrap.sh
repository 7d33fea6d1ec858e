#!/usr/bin/env bash
# Create .venv and install otel-mcp with its dev extras. Re-runs only when
# pyproject.toml or setup.py changes (a stamp file records their hash), so later calls are instant.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.bootstrap-stamp
want=$(cat pyproject.toml setup.py | sha256sum | cut -d" " -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "==> bootstrap: creating .venv and installing Python dependencies"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --upgrade --progress-bar on pip >/dev/null
.venv/bin/python -m pip install --progress-bar on -e ".[dev]"
echo "$want" > "$stamp"
echo "==> bootstrap: done"
