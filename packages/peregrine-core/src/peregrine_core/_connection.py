"""One client connection: its state, its buffers and its output queue.

A connection belongs to exactly one worker thread, which alone reads, writes and closes it.
Its state is one of :class:`State`; the transitions are:

* ``IDLE`` (waiting for a request, no byte of it received) -> ``HEAD`` on the first byte;
* ``HEAD`` -> ``BODY`` when a head announcing a body is complete, or straight back to
  ``IDLE`` once a request is answered;
* ``BODY`` -> ``IDLE`` once the body is complete and the request answered;
* any state -> ``LINGER`` after a response that ends the connection (an error, ``Connection:
  close``, shutdown): the write side is shut, input is read and discarded until the peer
  closes or a short deadline passes, so the response is not destroyed by a TCP reset;
* ``UPGRADED`` once the socket has been handed to a protocol plugin;
* ``CALLING`` while a request waits for a handler call that runs on another thread, or for
  a free handler thread: the connection is out of the poller (nothing is read, and output
  already queued waits with it) until the call's result comes back.

Output is a queue of byte buffers and :class:`FileBody` regions. While it is not empty the
connection waits for writability only: nothing more is read from a client that is not reading
its responses, which bounds memory per connection.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final

from ._h1 import Head, HeadMemo, Limits
from ._protocol import H1Protocol, State
from ._response import FileBody

if TYPE_CHECKING:
    from ._request import Request
    from ._stream import BodyStream
    from .transport import Transport

__all__ = ["Connection", "State", "flush"]

_IOV_MAX: Final = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16, 64)
_JOIN_MAX_BYTES: Final = 64 * 1024
_FILE_CHUNK_BYTES: Final = 256 * 1024
#: File bytes sent to one connection per pass of the loop: a large download (or a client
#: reading slowly through a large window) takes its turn instead of holding the loop.
FILE_BYTES_PER_PASS: Final = 256 * 1024


class Connection(H1Protocol):
    """A client connection owned by one worker: its HTTP/1 framing (the base class), its
    transport, its deadline and its place in the poller."""

    __slots__ = (
        "batch_full",
        "calling",
        "close_after_flush",
        "deadline",
        "fd",
        "paused",
        "requests",
        "streaming",
        "transport",
        "upgrade",
        "writing",
    )

    def __init__(
        self,
        transport: Transport,
        addr: object,
        deadline: float,
        limits: Limits,
        memo: HeadMemo | None = None,
        ka10_tail: bytes = b"Connection: keep-alive\r\n\r\n",
    ) -> None:
        super().__init__(limits, memo, addr, ka10_tail)
        self.transport = transport
        self.where = transport
        self.fd = transport.fileno()
        self.writing = False  # registered for writability
        self.paused = False  # out of the poller while a handler call of it runs elsewhere
        self.close_after_flush = False
        self.batch_full = False  # stopped parsing at max_pipelined_requests; more may be buffered
        self.deadline = deadline
        self.requests = 0
        self.calling: Head | None = None  # the request whose handler call runs elsewhere
        self.streaming: BodyStream | None = None  # a streamed body the loop is sending
        # (plugin, request, bytes after the request, handshake state) once a 101 is queued
        self.upgrade: tuple[Any, Request, bytes, object] | None = None

    def discard_output(self) -> None:
        """Drop queued output, closing any file it holds, and a body still arriving."""
        self.drop_body()
        for item in self.out:
            if isinstance(item, FileBody):
                item.close()
        self.out.clear()


def flush(conn: Connection) -> bool:
    """Write as much queued output as the socket takes.

    Returns:
        True when the queue is empty, False when the socket is full (wait for writability).

    Raises:
        OSError: the peer is gone (reset, broken pipe) or a file region could not be read.
    """
    out = conn.out
    sock = conn.transport
    if len(out) == 1:
        only = out[0]
        if type(only) is bytes:  # the common case: one batch of responses
            try:
                sent = sock.send(only)
            except BlockingIOError:
                return False
            if sent == len(only):
                out.clear()
                return True
            out[0] = memoryview(only)[sent:]
            return False
    while out:
        item = out[0]
        if isinstance(item, FileBody):
            if not _send_file(conn, item):
                return False
            del out[0]
            item.close()
            continue
        # Gather the run of byte buffers at the head of the queue.
        if len(out) == 1 or isinstance(out[1], FileBody):
            try:
                sent = sock.send(item)
            except BlockingIOError:
                return False
            total = len(item)
            if sent == total:
                del out[0]
                continue
            out[0] = memoryview(item)[sent:]
            return False
        run: list[bytes | memoryview] = []
        size = 0
        for buf in out:
            if isinstance(buf, FileBody) or len(run) >= _IOV_MAX:
                break
            run.append(buf)
            size += len(buf)
        try:
            if size <= _JOIN_MAX_BYTES:
                sent = sock.send(b"".join(run))
            else:
                sent = sock.sendmsg(run)
        except BlockingIOError:
            return False
        for buf in run:
            n = len(buf)
            if sent >= n:
                sent -= n
                del out[0]
            else:
                out[0] = memoryview(buf)[sent:]
                return False
    return True


def _send_file(conn: Connection, item: FileBody) -> bool:
    """Send a file region, at most :data:`FILE_BYTES_PER_PASS` of it; True once all is sent.

    A region given as an opener is opened now, when its turn has come.
    """
    transport = conn.transport
    fd = item.open().fileno()
    quota = FILE_BYTES_PER_PASS
    while item.count > 0:
        if quota <= 0:
            return False  # the connection stays registered for writing: more next pass
        try:
            if transport.supports_sendfile:
                sent = transport.sendfile(fd, item.offset, min(item.count, quota))
            else:
                data = os.pread(fd, min(item.count, quota, _FILE_CHUNK_BYTES), item.offset)
                sent = transport.send(data) if data else 0
        except BlockingIOError:
            return False
        if sent == 0:
            raise OSError(f"file ended {item.count} bytes before the announced length")
        item.offset += sent
        item.count -= sent
        quota -= sent
    return True
