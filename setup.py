"""The build step pyproject.toml cannot declare: the stack's config files.

The stack's folders (Collector, Jaeger, Prometheus, Grafana, HAProxy) stay at the repository's top level, their one
editable source; setuptools ships only files inside a package, so the build copies them into
``otel_mcp/stack/config/`` of the wheel, where ``otel_mcp.stack`` reads them through importlib.resources.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

STACK_DIRS = ("collector", "jaeger", "prometheus", "grafana", "haproxy")
STACK_PACKAGE_DIR = Path("otel_mcp", "stack", "config")


class BuildPyWithStackFiles(build_py):
    """``build_py`` plus the stack's folders copied into the package (an editable install reads the checkout's)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        root = Path(__file__).resolve().parent
        for name in STACK_DIRS:
            shutil.copytree(root / name, Path(self.build_lib) / STACK_PACKAGE_DIR / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithStackFiles})
