"""The exceptions peregrine-ws raises, and whose fault each one is.

* :class:`ProtocolError`: the peer broke RFC 6455 or RFC 7692 (or exceeded a limit). It
  carries the close code the connection is failed with (1002, 1007, 1009...). The runtime
  turns it into a close frame; it never leaves the WebSocket thread.
* :class:`ConnectionClosed`: something was sent on a connection whose closing handshake has
  started. Not a bug as such: the peer may close at any moment.
* :class:`BackpressureError`: the connection's outgoing queue is above its high-water mark
  because the peer is not reading fast enough. Dropping or retrying is the caller's choice.
* A bad argument (an illegal close code, a reason longer than 123 bytes) is a bug in the
  caller and raises :class:`peregrine_core.LocalProtocolError` (a ``ValueError``).
"""

from __future__ import annotations

from peregrine_core import PeregrineError, RemoteProtocolError

__all__ = ["BackpressureError", "ConnectionClosed", "ProtocolError", "WebSocketError"]


class WebSocketError(PeregrineError):
    """Base class of the WebSocket-specific exceptions."""


class ProtocolError(RemoteProtocolError, WebSocketError):
    """The peer violated the WebSocket protocol; the connection is failed.

    Attributes:
        code: the close code sent to the peer: 1002 (protocol error), 1007 (invalid
            data such as bad UTF-8), 1009 (message too big) or 1011 (internal error).
    """

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message, status_hint=400)
        self.code = code


class ConnectionClosed(WebSocketError):
    """The connection is closing or closed: nothing more can be sent on it.

    Attributes:
        code: the close code of the connection, when known (``None`` while the closing
            handshake is still in progress).
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class BackpressureError(WebSocketError):
    """The outgoing queue is above its high-water mark: the peer is not reading.

    Attributes:
        queued_bytes: bytes waiting to be written when the send was refused.
        limit_bytes: the configured high-water mark.
    """

    def __init__(self, queued_bytes: int, limit_bytes: int) -> None:
        super().__init__(
            f"{queued_bytes} bytes are already queued for this WebSocket, over the "
            f"high-water mark of {limit_bytes} bytes; the peer is not reading"
        )
        self.queued_bytes = queued_bytes
        self.limit_bytes = limit_bytes
