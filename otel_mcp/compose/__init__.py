"""Rule composition: glob matching, token estimates and the composition engine."""

from otel_mcp.compose.engine import (
    STEPS,
    ComposeOptions,
    ComposeRequest,
    Composition,
    Conflict,
    compose,
)
from otel_mcp.compose.tokens import estimate_tokens

__all__ = ["STEPS", "ComposeOptions", "ComposeRequest", "Composition", "Conflict", "compose", "estimate_tokens"]
