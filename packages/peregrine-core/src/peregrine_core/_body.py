"""``BodyBuffer``: a request body arriving, in memory up to a threshold, then in a file.

Bodies up to ``spool_bytes`` stay in a ``bytearray``; once a body grows past it, what has
arrived moves to an anonymous temporary file (``tempfile.TemporaryFile``: on Linux it never
has a name, so nothing is left on disk whatever happens to the process) and the rest is
written there as it comes. Memory per upload stays bounded by the threshold however large
the body is. A write that fails (no space left, no descriptor) is answered ``503``.
"""

from __future__ import annotations

import tempfile
from typing import IO, TYPE_CHECKING

from ._errors import RemoteProtocolError

if TYPE_CHECKING:
    from ._request import Request

__all__ = ["BodyBuffer"]


class BodyBuffer:
    """The body of one request while it arrives.

    Args:
        spool_bytes: the most bytes kept in memory.
        initial: the body's first bytes.
    """

    __slots__ = ("_data", "_file", "_limit", "size")

    def __init__(self, spool_bytes: int, initial: bytes | memoryview = b"") -> None:
        self._limit = spool_bytes
        self._data = bytearray(initial)
        self._file: IO[bytes] | None = None
        self.size = len(self._data)
        if self.size > spool_bytes:
            self._spill()

    def __len__(self) -> int:
        return self.size

    @property
    def spooled(self) -> bool:
        """Whether the body is in a temporary file."""
        return self._file is not None

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``.

        Raises:
            RemoteProtocolError: (503) the temporary file could not be created or written.
        """
        file = self._file
        if file is None:
            self._data += data
            if len(self._data) > self._limit:
                self._spill()
        else:
            try:
                file.write(data)
            except OSError as exc:
                self.close()
                raise RemoteProtocolError(f"cannot store the request body: {exc}", 503) from exc
        self.size += len(data)

    def _spill(self) -> None:
        try:
            file = tempfile.TemporaryFile()  # noqa: SIM115 - it outlives this call: the request's
        except OSError as exc:
            self._data = bytearray()
            raise RemoteProtocolError(f"cannot store the request body: {exc}", 503) from exc
        try:
            file.write(self._data)
        except OSError as exc:
            file.close()
            self._data = bytearray()
            raise RemoteProtocolError(f"cannot store the request body: {exc}", 503) from exc
        self._file = file
        self._data = bytearray()

    def give(self, request: Request) -> None:
        """Make the complete body ``request``'s (bytes, or the temporary file)."""
        file = self._file
        if file is None:
            request._body = bytes(self._data)
        else:
            try:
                file.flush()
            except OSError as exc:
                self.close()
                raise RemoteProtocolError(f"cannot store the request body: {exc}", 503) from exc
            self._file = None
            request._spool(file)
        self._data = bytearray()

    def getvalue(self) -> bytes:
        """The bytes received so far (read back from the file when spooled)."""
        file = self._file
        if file is None:
            return bytes(self._data)
        file.flush()
        at = file.tell()
        file.seek(0)
        try:
            return file.read()
        finally:
            file.seek(at)

    def close(self) -> None:
        """Drop the body (the connection ended before it was complete)."""
        file, self._file = self._file, None
        self._data = bytearray()
        if file is not None:
            try:
                file.close()
            except OSError:  # pragma: no cover - closing an anonymous temporary file
                pass
