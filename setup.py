"""The optional C extension (otlp_wire's C half); everything else is declared in pyproject.toml.

``optional=True``: without a C compiler the install goes on and otlp_wire encodes in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("otel_mcp.telemetry._wire", ["otel_mcp/telemetry/_wire.c"], optional=True)])
