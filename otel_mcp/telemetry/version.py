"""The version our instrumentations report as their instrumentation scope version."""

from otel_mcp import __version__

__all__ = ["__version__"]
