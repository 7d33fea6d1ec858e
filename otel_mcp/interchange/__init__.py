"""Rule files of other tools (Cursor, Claude, Copilot, AGENTS.md) in and out of the store."""

from otel_mcp.interchange.files import FileResult, confine, export_directory, file_error, import_directory
from otel_mcp.interchange.formats import FORMATS, detect_format

__all__ = ["FORMATS", "FileResult", "confine", "detect_format", "export_directory", "file_error", "import_directory"]
