"""The load suite (scenarios, load generator, runner, HTML report, regression gate) and the benchmarks of
other areas; run each as ``python -m otel_mcp.loadtest.<name>``, or the suite as ``otel-mcp perf``.

Baselines and results live in the repository's ``perf/`` folder when this package runs from a source
checkout, else in ``./perf`` under the working directory.
"""

from pathlib import Path


def _checkout() -> Path:
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "perf").is_dir() else Path.cwd()


CHECKOUT = _checkout()
PERF_DIR = CHECKOUT / "perf"
RESULTS_DIR = PERF_DIR / "results"
BASELINE_DIR = PERF_DIR / "baselines"
LOAD_RESULTS_DIR = RESULTS_DIR / "load"
