"""``wsgi.file_wrapper`` (PEP 3333 §"Optional Platform-Specific File Handling").

An application returns ``environ["wsgi.file_wrapper"](filelike, block_size)``. When the
handler sees its own :class:`FileWrapper` come back and the file is a regular file with a
real descriptor, the body is sent with ``os.sendfile`` from the file's *current* position
(:meth:`FileWrapper.region`); anything else (a pipe, ``BytesIO``) is iterated in blocks.
Either way ``close()`` of the wrapper closes the file, and the server calls it.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["DEFAULT_BLOCK_BYTES", "FileWrapper"]

DEFAULT_BLOCK_BYTES: Final = 8192


class FileWrapper:
    """Wraps a file-like object as the body of a WSGI response.

    Args:
        filelike: an object with ``read(size)``; ``close()``, ``fileno()`` and ``tell()``
            are used when present.
        block_size: bytes read per piece when the file is iterated rather than sent with
            ``sendfile``.
    """

    __slots__ = ("block_size", "filelike")

    def __init__(self, filelike: Any, block_size: int = DEFAULT_BLOCK_BYTES) -> None:
        self.filelike = filelike
        self.block_size = (
            block_size if isinstance(block_size, int) and block_size > 0 else DEFAULT_BLOCK_BYTES
        )

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        size = self.block_size
        while True:
            data = read(size)
            if not data:
                return
            yield data

    def fileno(self) -> int:
        """The wrapped file's descriptor (``sendfile`` reads from it)."""
        fileno: int = self.filelike.fileno()
        return fileno

    def region(self) -> tuple[int, int] | None:
        """``(offset, bytes left)`` when the file can go out with ``sendfile``, else ``None``.

        Only a regular file with a working ``fileno()`` and ``tell()`` qualifies; the offset
        is its current position (an application may have read or seeked past a prefix).
        """
        try:
            fd = self.filelike.fileno()
            if not isinstance(fd, int) or fd < 0:
                return None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            offset = self.filelike.tell()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        if not isinstance(offset, int) or offset < 0:
            return None
        return offset, max(0, st.st_size - offset)

    def close(self) -> None:
        """Close the wrapped file (if it has ``close``)."""
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()
