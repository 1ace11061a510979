"""The codec feeding driver shared by the codec tests: the worker's own protocol object.

:class:`Feeder` hands each read to :class:`~peregrine_core._protocol.H1Protocol`, the
object the worker drives, and collects the requests it yields, exactly as
``Worker._process`` does (a read that cannot complete anything is not parsed; a request
that does not keep the connection alive is the last one parsed).
"""

from __future__ import annotations

from peregrine_core._h1 import Head, HeadMemo, Limits
from peregrine_core._protocol import H1Protocol

__all__ = ["Feeder"]


class Feeder:
    """Feeds reads to one connection's :class:`H1Protocol`."""

    def __init__(self, limits: Limits, memo: HeadMemo | None = None) -> None:
        self.protocol = H1Protocol(limits, memo, None)
        self.requests: list[Head] = []
        self.closed = False  # a request ended the connection: nothing more is parsed
        self._after_close = b""

    def feed(self, data: bytes) -> None:
        if self.closed:
            self._after_close += data
            return
        if not self.protocol.receive(data):
            return
        while True:
            head = self.protocol.next_request(0.0)
            if head is None:
                return
            self.requests.append(head)
            if not head.keep_alive:
                self.closed = True
                self._after_close = self.protocol.rest()
                return

    @property
    def buf(self) -> bytes:
        """The bytes received and not yet part of a request (the body in progress aside)."""
        if self.closed:
            return self._after_close
        protocol = self.protocol
        return protocol._buf[protocol._pos :]

    @property
    def head(self) -> Head | None:
        """A complete head whose body is still arriving."""
        return self.protocol._head
