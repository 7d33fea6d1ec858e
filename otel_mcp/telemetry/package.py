"""What each of our instrumentors instruments (``instrumentation_dependencies``)."""

_mcp_instruments = ("mcp >= 2.3, < 3",)
_otel_mcp_instruments = ("otel-mcp >= 0.1",)
_psutil_instruments = ("psutil >= 5",)

_instruments = (*_mcp_instruments, *_otel_mcp_instruments)
