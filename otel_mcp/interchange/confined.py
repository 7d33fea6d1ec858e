"""Reading and writing files below a root without ever following a symlink.

A path is walked from a descriptor of the root one folder at a time (``openat``
with ``O_NOFOLLOW``), so a symlink anywhere below the root, planted before a
read or write or swapped in while it runs, is refused instead of followed. A file is
first written to a temporary file with an unpredictable name, created
exclusively (``O_EXCL | O_NOFOLLOW``) in the target folder, then renamed over
the target: readers see the old file or the new one, never a part.

``tempfile.mkstemp`` makes the same kind of temporary file but takes a path,
which the kernel would resolve again from the top, reopening the race the
descriptor walk closes; so the name comes from ``secrets`` and the file from
``os.open(..., dir_fd=...)``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path, PurePosixPath

from otel_mcp.errors import InvalidRule

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a rule file must not hang the reader; a regular file ignores it.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOT_A_FOLDER = (errno.ELOOP, errno.ENOTDIR)  # what O_NOFOLLOW | O_DIRECTORY answers for a symlink or a file


class ConfinedFiles:
    """Files at paths relative to ``root``: ``read`` one, or ``check`` all first and then ``write`` each."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def check(self, relative: PurePosixPath) -> None:
        """Refuse ``relative`` before anything is created: each existing folder on its way must be a
        real folder (not a symlink) and an existing file a regular file.

        :raises InvalidRule: naming the path that would redirect the write
        """
        folder = self._walk(relative.parent, create=False)
        if folder is None:  # a folder on the way is missing: what we create below it is ours
            return
        try:
            self._check_target(folder, relative)
        finally:
            os.close(folder)

    def write(self, relative: PurePosixPath, text: str) -> None:
        """Create the folders on the way and replace the file at ``relative`` with ``text`` (UTF-8).

        :raises InvalidRule: as ``check`` (again: something may have changed since)
        :raises OSError: when the file system refuses (no space, no permission, name too long)
        """
        folder = self._walk(relative.parent, create=True)
        assert folder is not None  # create=True makes every folder or raises
        try:
            self._check_target(folder, relative)
            temporary = f".{relative.name}.{secrets.token_hex(8)}.tmp"
            fd = os.open(temporary, _NEW_FILE_FLAGS, 0o666, dir_fd=folder)
            try:
                with open(fd, "wb") as out:
                    out.write(text.encode("utf-8"))
                os.replace(temporary, relative.name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=folder)
                raise
        finally:
            os.close(folder)

    def read(self, relative: PurePosixPath, max_bytes: int) -> bytes:
        """The bytes of the regular file at ``relative``, reached through no symlink.

        :raises InvalidRule: a symlink on the way, not a regular file, or larger than ``max_bytes``
        :raises OSError: when the file system refuses (missing, no permission)
        """
        folder = self._walk(relative.parent, create=False)
        if folder is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), relative.as_posix())
        try:
            fd = os.open(relative.name, _READ_FLAGS, dir_fd=folder)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise InvalidRule(
                f"refusing to read {relative.as_posix()!r}: it is a symlink (a loop, or a link swapped in meanwhile)"
            ) from None
        finally:
            os.close(folder)
        with open(fd, "rb") as file:
            found = os.fstat(file.fileno())
            if not stat.S_ISREG(found.st_mode):
                raise InvalidRule(f"refusing to read {relative.as_posix()!r}: it is not a regular file")
            if found.st_size > max_bytes:
                raise InvalidRule(f"file is larger than {max_bytes} bytes")
            return file.read(max_bytes + 1)

    def _walk(self, folder: PurePosixPath, *, create: bool) -> int | None:
        """A descriptor of ``folder`` reached without following symlinks, or None if it is missing."""
        if folder.is_absolute() or any(part in ("", ".", "..") for part in folder.parts):
            raise InvalidRule(f"refusing to write below {folder.as_posix()!r}: not a plain relative path")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for depth, part in enumerate(folder.parts, start=1):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    with contextlib.suppress(FileExistsError):  # another writer made it meanwhile
                        os.mkdir(part, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in _NOT_A_FOLDER:
                        raise
                    shown = PurePosixPath(*folder.parts[:depth]).as_posix()
                    raise InvalidRule(f"refusing to go through {shown!r}: it is a symlink or not a folder") from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _check_target(folder: int, relative: PurePosixPath) -> None:
        try:
            found = os.stat(relative.name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(found.st_mode):
            raise InvalidRule(f"refusing to write {relative.as_posix()!r}: it is a symlink or not a regular file")
