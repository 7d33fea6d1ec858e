"""The composition cache: L1 in memory, L2 on disk (diskcache + brotli), popularity and warming."""

from otel_mcp.cache.core import CacheStats, TieredCache, decode_composition, encode_composition
from otel_mcp.cache.disk import BrotliDisk, CorruptValue
from otel_mcp.cache.policy import LRUPolicy, S3FIFOPolicy, TinyLFUPolicy
from otel_mcp.cache.popularity import Popularity, request_from_key
from otel_mcp.cache.warm import WarmProgress, start_warming, warm

__all__ = [
    "BrotliDisk",
    "CacheStats",
    "CorruptValue",
    "LRUPolicy",
    "Popularity",
    "S3FIFOPolicy",
    "TieredCache",
    "TinyLFUPolicy",
    "WarmProgress",
    "decode_composition",
    "encode_composition",
    "request_from_key",
    "start_warming",
    "warm",
]
