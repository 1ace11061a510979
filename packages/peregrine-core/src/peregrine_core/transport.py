"""``Transport``: every socket operation of a connection, behind one small interface.

The HTTP worker and the protocol plugins (WebSockets) never call socket methods; they call
a transport's. :class:`SocketTransport` is the plain one; a TLS transport implements the
same interface over an encrypted channel (it then reports ``supports_sendfile = False``, and
file bodies are read and sent in pieces instead).

The plain transport's ``recv``, ``send`` and ``sendmsg`` are the socket's own bound methods,
stored on the instance: the hot path pays no wrapper call. All of them are non-blocking and
raise ``BlockingIOError`` when the socket would block, and ``OSError`` when the peer is gone.

A transport is closed exactly once, by whoever owns the connection at the time; closing it
also gives its slot back to the server's connection budget (``on_close``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

__all__ = ["SocketTransport", "Transport"]

_Buffer = bytes | bytearray | memoryview


@runtime_checkable
class Transport(Protocol):
    """What a connection's owner uses to talk to the peer."""

    supports_sendfile: bool

    def fileno(self) -> int:
        """The descriptor to register with a poller."""
        ...

    def recv(self, size: int, /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at end of input."""
        ...

    def send(self, data: _Buffer, /) -> int:
        """Bytes of ``data`` written (at least 1)."""
        ...

    def sendmsg(self, buffers: Sequence[_Buffer], /) -> int:
        """Bytes written from ``buffers`` in order, in one system call where possible."""
        ...

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Bytes of the file ``fd`` written from ``offset`` (0 at the file's end)."""
        ...

    def shutdown_write(self) -> None:
        """Send end-of-output (a TCP FIN); reading goes on."""
        ...

    def close(self) -> None:
        """Close the connection and release its slot; later calls do nothing."""
        ...

    @property
    def peername(self) -> object:
        """The peer's address as ``accept()`` gave it."""
        ...

    @property
    def local_address(self) -> object:
        """The local address the connection arrived on (``getsockname()``)."""
        ...

    @property
    def scheme(self) -> str:
        """The URI scheme requests on this transport have: ``http`` or ``https``."""
        ...


class SocketTransport:
    """A plain (unencrypted) connected socket.

    Args:
        sock: the connected, non-blocking socket; the transport owns it.
        peername: the address ``accept()`` returned.
        on_close: called once when the transport is closed (gives the slot back).
    """

    supports_sendfile = hasattr(os, "sendfile")

    scheme = "http"

    __slots__ = ("_fd", "_local", "_peername", "_sock", "on_close", "recv", "send", "sendmsg")

    def __init__(
        self,
        sock: socket.socket,
        peername: object = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._peername = peername
        self._local: object = None
        self.on_close = on_close
        self.recv = sock.recv
        self.send = sock.send
        self.sendmsg = sock.sendmsg

    def fileno(self) -> int:
        return self._fd

    @property
    def peername(self) -> object:
        return self._peername

    @property
    def local_address(self) -> object:
        local = self._local
        if local is None:  # asked for the first time (WSGI's SERVER_NAME, say)
            try:
                local = self._local = self._sock.getsockname()
            except OSError:
                return None
        return local

    @property
    def socket(self) -> socket.socket:
        """The underlying socket, for socket options (never for I/O)."""
        return self._sock

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        if self.supports_sendfile:
            return os.sendfile(self._fd, fd, offset, count)
        data = os.pread(fd, min(count, 256 * 1024), offset)  # pragma: no cover - no sendfile
        return self._sock.send(data) if data else 0  # pragma: no cover

    def shutdown_write(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self._fd < 0:
            return
        self._fd = -1
        on_close, self.on_close = self.on_close, None
        try:
            self._sock.close()
        finally:
            if on_close is not None:
                on_close()
