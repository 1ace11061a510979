"""``FrameDecoder``: bytes in, WebSocket events out (RFC 6455 §5, §6.2; RFC 7692 §6).

Sans-IO and incremental: :meth:`FrameDecoder.receive_data` buffers whatever arrived (half
a header, several frames, a frame split anywhere) and :meth:`FrameDecoder.next_event`
returns the next complete event, or ``None`` when more bytes are needed.

Invariants:

* Every check that can be made on a frame header is made before its payload is read: the
  message size limit (1009) is enforced from the declared length, so an oversized frame
  is refused before a byte of it is buffered.
* Data-frame payloads are consumed as they arrive, unmasked piece by piece (the masking
  offset carries over) and, for text, fed to an incremental UTF-8 decoder, so invalid
  text fails (1007) as soon as the bad sequence has arrived, without waiting for the end
  of the frame or message. A whole unfragmented message already in the buffer takes a
  shorter path (one slice, one ``bytes.decode``). The decoder's buffer holds at most one
  frame header, one control frame or one read's worth of payload.
* Control frames (<= 125 bytes) are delivered whole, including between the fragments
  of a message (§5.4).
* After a violation, :meth:`next_event` raises the same :class:`ProtocolError` forever;
  after a close frame it returns ``None`` forever (§5.5.1: nothing follows a close).
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass
from typing import Final

from ._deflate import PerMessageDeflate
from ._errors import ProtocolError
from ._frames import (
    KNOWN_OPCODES,
    MAX_CONTROL_PAYLOAD_BYTES,
    CloseCode,
    Opcode,
    parse_close_payload,
    unmask,
)

__all__ = [
    "BinaryMessage",
    "Close",
    "Event",
    "FrameDecoder",
    "Ping",
    "Pong",
    "TextMessage",
]

_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")
_TEXT: Final = int(Opcode.TEXT)
_BINARY: Final = int(Opcode.BINARY)
_CONTROL_MIN: Final = 0x8


@dataclass(frozen=True, slots=True)
class TextMessage:
    """A complete text message, reassembled and decoded from UTF-8."""

    data: str


@dataclass(frozen=True, slots=True)
class BinaryMessage:
    """A complete binary message, reassembled."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping; the runtime answers it with a pong carrying the same payload (§5.5.2)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong (§5.5.3)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame: its code (1005 when it carried none) and reason (§5.5.1)."""

    code: int
    reason: str


Event = TextMessage | BinaryMessage | Ping | Pong | Close


def _fail(message: str, code: int = CloseCode.PROTOCOL_ERROR) -> ProtocolError:
    return ProtocolError(message, code)


class FrameDecoder:
    """Incremental decoder of the frames one peer sends.

    Args:
        max_message_bytes: largest message (after decompression) accepted; larger fails
            with 1009. ``None`` disables the limit.
        deflate: the connection's permessage-deflate state when the extension was
            negotiated; without it any RSV bit fails the connection (1002).
        client: ``True`` (the default) decodes what a client sends, which MUST be masked
            (§5.1); ``False`` decodes a server's frames, which MUST NOT be.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int | None = 1024 * 1024,
        deflate: PerMessageDeflate | None = None,
        client: bool = True,
    ) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max = max_message_bytes
        self._deflate = deflate
        self._masked = client
        self._error: ProtocolError | None = None
        self._closed = False
        # The frame being read.
        self._in_frame = False
        self._opcode = 0
        self._fin = False
        self._key: bytes | None = None
        self._length = 0
        self._done = 0
        # The message being assembled (_message == 0: none).
        self._message = 0
        self._compressed = False
        self._chunks: list[bytes] = []
        self._texts: list[str] = []
        self._size = 0
        self._wire_size = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet consumed."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the peer (after a close or an error they are ignored)."""
        if self._closed or self._error is not None:
            return
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> Event | None:
        """Return the next complete event, or ``None`` if more data is needed.

        Raises:
            ProtocolError: the peer violated the protocol or a limit; ``code`` is the close
                code to fail the connection with. Raised again on every later call.
        """
        if self._error is not None:
            raise self._error
        if self._closed:
            return None
        try:
            return self._next()
        except ProtocolError as exc:
            self._error = exc
            self._buf = bytearray()
            self._pos = 0
            self._chunks = []
            self._texts = []
            raise

    def _next(self) -> Event | None:
        buf = self._buf
        while True:
            if not self._in_frame and not self._read_header():
                return None
            pos = self._pos
            if self._opcode >= _CONTROL_MIN:
                end = pos + self._length
                if len(buf) < end:
                    return None
                payload = self._payload(pos, end, 0)
                self._pos = end
                self._in_frame = False
                return self._control(payload)
            take = min(len(buf) - pos, self._length - self._done)
            if (
                take == self._length
                and self._fin
                and self._opcode != Opcode.CONTINUATION
                and not self._compressed
            ):
                # Fast path: a whole unfragmented, uncompressed message is available.
                chunk = self._payload(pos, pos + take, 0)
                self._pos = pos + take
                self._in_frame = False
                self._message = 0
                if self._opcode == _BINARY:
                    return BinaryMessage(chunk)
                try:
                    return TextMessage(chunk.decode("utf-8"))
                except UnicodeDecodeError:
                    raise _fail("text message is not valid UTF-8", CloseCode.INVALID_DATA) from None
            if take > 0:
                chunk = self._payload(pos, pos + take, self._done)
                self._pos = pos + take
                self._done += take
                self._wire_size += take
                if self._compressed:
                    assert self._deflate is not None
                    chunk = self._deflate.inflate(chunk, self._budget())
                self._append(chunk)
            if self._done < self._length:
                return None
            self._in_frame = False
            if self._fin:
                return self._finish_message()

    def _payload(self, start: int, end: int, offset: int) -> bytes:
        if self._key is None:
            return bytes(self._buf[start:end])
        return unmask(self._buf[start:end], self._key, offset)

    def _read_header(self) -> bool:
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 2:
            return False
        b0 = buf[pos]
        b1 = buf[pos + 1]
        opcode = b0 & 0x0F
        fin = bool(b0 & 0x80)
        rsv1 = bool(b0 & 0x40)
        masked = bool(b1 & 0x80)
        length = b1 & 0x7F
        # §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the
        # WebSocket Connection_."
        if opcode not in KNOWN_OPCODES:
            raise _fail(f"reserved opcode {opcode:#x}")
        # §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings
        # for non-zero values". RFC 7692 §6: permessage-deflate defines RSV1, set on the
        # first frame of a compressed message only.
        if b0 & 0x30:
            raise _fail("RSV2 or RSV3 set, but no extension defines them")
        if rsv1:
            if self._deflate is None:
                raise _fail("RSV1 set, but no extension was negotiated")
            if opcode not in (_TEXT, _BINARY):
                raise _fail("RSV1 set on a control or continuation frame")
        # §5.1: "The server MUST close the connection upon receiving a frame that is not
        # masked" and "A client MUST close a connection if it detects a masked frame".
        if masked != self._masked:
            raise _fail("client frame is not masked" if self._masked else "server frame is masked")
        if opcode >= _CONTROL_MIN:
            # §5.5: "All control frames MUST have a payload length of 125 bytes or less
            # and MUST NOT be fragmented."
            if not fin:
                raise _fail("fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD_BYTES:
                raise _fail("control frame payload longer than 125 bytes")
        elif opcode == Opcode.CONTINUATION:
            if not self._message:
                raise _fail("continuation frame without a message to continue")
        elif self._message:
            # §5.4: the fragments of one message are not interleaved with another's.
            raise _fail("new data frame while a fragmented message is unfinished")
        size = 2 + (2 if length == 126 else 8 if length == 127 else 0)
        if len(buf) - pos < size + (4 if masked else 0):
            return False
        if length == 126:
            (length,) = _U16.unpack_from(buf, pos + 2)
            if length < 126:
                raise _fail("payload length not minimally encoded")
        elif length == 127:
            (length,) = _U64.unpack_from(buf, pos + 2)
            # §5.2: "the most significant bit MUST be 0".
            if length >> 63:
                raise _fail("64-bit payload length with the most significant bit set")
            if length < 0x10000:
                raise _fail("payload length not minimally encoded")
        if opcode < _CONTROL_MIN:
            if opcode != Opcode.CONTINUATION:
                self._start_message(opcode, rsv1)
            limit = self._max
            if limit is not None:
                seen = self._wire_size if self._compressed else self._size
                if seen + length > limit:
                    raise _fail(f"message longer than {limit} bytes", CloseCode.MESSAGE_TOO_BIG)
        self._key = bytes(buf[pos + size : pos + size + 4]) if masked else None
        self._pos = pos + size + (4 if masked else 0)
        self._in_frame = True
        self._opcode = opcode
        self._fin = fin
        self._length = length
        self._done = 0
        return True

    def _start_message(self, opcode: int, compressed: bool) -> None:
        self._message = opcode
        self._compressed = compressed
        self._chunks = []
        self._texts = []
        self._size = 0
        self._wire_size = 0
        if opcode == _TEXT:
            self._utf8.reset()

    def _budget(self) -> int | None:
        return None if self._max is None else self._max - self._size

    def _append(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._size += len(chunk)
        if self._message == _TEXT:
            try:
                text = self._utf8.decode(chunk, False)
            except UnicodeDecodeError:
                raise _fail("text message is not valid UTF-8", CloseCode.INVALID_DATA) from None
            if text:
                self._texts.append(text)
        else:
            self._chunks.append(chunk)

    def _finish_message(self) -> TextMessage | BinaryMessage:
        if self._compressed:
            assert self._deflate is not None
            self._append(self._deflate.finish(self._budget()))
        self._message, opcode = 0, self._message
        if opcode == _TEXT:
            try:
                self._utf8.decode(b"", True)
            except UnicodeDecodeError:
                raise _fail("text message ends inside a UTF-8 sequence", CloseCode.INVALID_DATA) from None
            texts, self._texts = self._texts, []
            return TextMessage(texts[0] if len(texts) == 1 else "".join(texts))
        chunks, self._chunks = self._chunks, []
        return BinaryMessage(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _control(self, payload: bytes) -> Ping | Pong | Close:
        opcode = self._opcode
        if opcode == Opcode.PING:
            return Ping(payload)
        if opcode == Opcode.PONG:
            return Pong(payload)
        code, reason = parse_close_payload(payload)
        self._closed = True
        self._buf = bytearray()
        self._pos = 0
        return Close(code, reason)
