"""A ``diskcache.Disk`` that brotli-compresses byte values.

Every bytes value gets one leading flag byte: ``FLAG_RAW`` or ``FLAG_BROTLI``.
Values under the threshold, and values that brotli shrinks by less than
``min_saving``, stay raw: decompressing them would cost time and save little.
Other value types pass through to diskcache unchanged (pickled, uncompressed).

Usage::

    cache = diskcache.Cache(path, disk=BrotliDisk, disk_compress_threshold=1024, disk_compress_quality=2)
"""

from __future__ import annotations

from typing import Any

import brotli
import diskcache

FLAG_RAW = 0x00
FLAG_BROTLI = 0x01
DEFAULT_COMPRESS_THRESHOLD = 1024  # 1 KiB; below it the flag byte and a call cost more than they save
DEFAULT_COMPRESS_QUALITY = 2  # brotli 0..11; the best ratio within 2 ms per 100 KiB here (docs/cache.md)
DEFAULT_MIN_SAVING = 0.10  # store raw unless compression saves at least 10%
BROTLI_MODE_TEXT = brotli.MODE_TEXT


class CorruptValue(ValueError):
    """A stored value has an unknown flag byte or does not decompress."""


def encode(value: bytes, threshold: int, quality: int, min_saving: float) -> bytes:
    """``value`` with its flag byte, compressed when that pays off."""
    if len(value) >= threshold:
        packed = bytes(brotli.compress(value, mode=BROTLI_MODE_TEXT, quality=quality))
        if len(packed) <= len(value) * (1.0 - min_saving):
            return bytes((FLAG_BROTLI,)) + packed
    return bytes((FLAG_RAW,)) + value


def decode(data: bytes) -> bytes:
    """The original bytes of an ``encode`` result.

    :raises CorruptValue: on an unknown flag or a damaged brotli stream
    """
    if not data:
        raise CorruptValue("empty value")
    flag = data[0]
    if flag == FLAG_RAW:
        return data[1:]
    if flag == FLAG_BROTLI:
        try:
            return bytes(brotli.decompress(data[1:]))
        except brotli.error as exc:
            raise CorruptValue(f"brotli stream does not decompress: {exc}") from None
    raise CorruptValue(f"unknown flag byte {flag:#04x}")


class BrotliDisk(diskcache.Disk):  # type: ignore[misc]
    """:param str directory: cache directory (given by diskcache)
    :param int compress_threshold: bytes at or above which values are compressed (default 1 KiB)
    :param int compress_quality: brotli quality, 0..11 (default 2)
    :param float min_saving: fraction compression must save to be kept (default 0.10)
    """

    def __init__(
        self,
        directory: str,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
        compress_quality: int = DEFAULT_COMPRESS_QUALITY,
        min_saving: float = DEFAULT_MIN_SAVING,
        **kwargs: Any,
    ) -> None:
        super().__init__(directory, **kwargs)
        self.compress_threshold = compress_threshold
        self.compress_quality = compress_quality
        self.min_saving = min_saving

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if not read and type(value) is bytes:
            value = encode(value, self.compress_threshold, self.compress_quality, self.min_saving)
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        data = super().fetch(mode, filename, value, read)
        if not read and type(data) is bytes:
            return decode(data)
        return data
