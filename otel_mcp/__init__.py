"""otel-mcp: an MCP server that stores coding-agent rules and composes them, observed with OpenTelemetry."""

__version__ = "0.1.0"

__all__ = ["__version__"]
