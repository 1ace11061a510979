"""WebSocket frame primitives (RFC 6455 §5): opcodes, close codes, masking, frame building.

No I/O here: bytes in, bytes out. Two rules hold for everything in this module:

* No per-byte Python loops. Masking XORs the payload as one big integer
  (``int.from_bytes``), headers are packed with :mod:`struct`.
* Frames built here are always valid: control payloads are at most 125 bytes, close codes
  are ones allowed on the wire, lengths use the minimal encoding.

The wire format (RFC 6455 §5.2)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
    |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
    |N|V|V|V|       |S|             |   (if payload len==126/127)   |
    | |1|2|3|       |K|             |                               |
    +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from peregrine_core import LocalProtocolError

from ._errors import ProtocolError

__all__ = [
    "MAX_CLOSE_REASON_BYTES",
    "MAX_CONTROL_PAYLOAD_BYTES",
    "CloseCode",
    "Opcode",
    "build_close_payload",
    "build_frame",
    "frame_header",
    "is_valid_close_code",
    "parse_close_payload",
    "unmask",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2); 0x3-0x7 and 0xB-0xF are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """Close codes this package sends or reports (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RECEIVED = 1005
    """Reported when a close frame carried no code; never sent on the wire."""
    ABNORMAL_CLOSURE = 1006
    """Reported when the connection dropped without a close frame; never sent."""
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011


#: RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
MAX_CONTROL_PAYLOAD_BYTES: Final = 125
#: The close payload is a 2-byte code followed by the reason, 125 bytes at most.
MAX_CLOSE_REASON_BYTES: Final = MAX_CONTROL_PAYLOAD_BYTES - 2

CONTROL_OPCODES: Final = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
KNOWN_OPCODES: Final = frozenset(int(op) for op in Opcode)

_FIN: Final = 0x80
_RSV1: Final = 0x40
_MASK: Final = 0x80
_PACK_SHORT: Final = struct.Struct("!BB")
_PACK_MEDIUM: Final = struct.Struct("!BBH")
_PACK_LONG: Final = struct.Struct("!BBQ")
_PACK_CODE: Final = struct.Struct("!H")


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire.

    RFC 6455 §7.4.1 defines 1000-1003 and 1007-1011; 1004 is reserved and 1005, 1006 and
    1015 "MUST NOT be set as a status code in a Close control frame by an endpoint".
    §7.4.2: 3000-3999 are registered with IANA and 4000-4999 are for private use. Anything
    else is refused (a peer sending it fails the connection with 1002).
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999


def unmask(data: bytes | bytearray | memoryview, key: bytes, offset: int = 0) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` (RFC 6455 §5.3).

    ``offset`` is the position of ``data[0]`` within the frame's payload, so that a payload
    arriving in several pieces can be unmasked piece by piece. Masking and unmasking are
    the same operation. The XOR runs on two big integers: one C-level pass, no byte loop.
    """
    n = len(data)
    if n == 0:
        return b""
    shift = offset & 3
    if shift:
        key = key[shift:] + key[:shift]
    stream = key * ((n >> 2) + 1)
    # Little-endian conversions are the faster ones in CPython; XOR ignores byte order.
    value = int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")
    return value.to_bytes(n, "little")


def frame_header(opcode: int, length: int, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """The header of an unmasked frame (what a server sends, RFC 6455 §5.1).

    The payload length uses the minimal encoding (§5.2: "the minimal number of bytes MUST
    be used to encode the length").
    """
    b0 = opcode | (_FIN if fin else 0) | (_RSV1 if rsv1 else 0)
    if length < 126:
        return _PACK_SHORT.pack(b0, length)
    if length < 0x10000:
        return _PACK_MEDIUM.pack(b0, 126, length)
    return _PACK_LONG.pack(b0, 127, length)


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """Build one whole frame.

    Servers send unmasked frames (§5.1: "A server MUST NOT mask any frames that it sends
    to the client"); ``mask`` (4 bytes) builds a client frame, which tests use.

    Raises:
        LocalProtocolError: a control frame with a payload over 125 bytes or without FIN,
            or a masking key that is not 4 bytes.
    """
    length = len(payload)
    if opcode >= 0x8 and (length > MAX_CONTROL_PAYLOAD_BYTES or not fin):
        raise LocalProtocolError(
            f"control frames carry at most {MAX_CONTROL_PAYLOAD_BYTES} bytes and are never "
            f"fragmented (opcode {opcode:#x}, {length} bytes, fin={fin})"
        )
    header = frame_header(opcode, length, fin=fin, rsv1=rsv1)
    if mask is None:
        return header + payload
    if len(mask) != 4:
        raise LocalProtocolError(f"a masking key is 4 bytes, not {len(mask)}")
    header = bytes((header[0], header[1] | _MASK)) + header[2:]
    return header + mask + unmask(payload, mask)


def build_close_payload(code: int | None = CloseCode.NORMAL, reason: str = "") -> bytes:
    """The payload of a close frame: a 2-byte code and a UTF-8 reason (RFC 6455 §5.5.1).

    ``code=None`` builds the empty payload (a close without a status code).

    Raises:
        LocalProtocolError: the code may not be sent (1005, 1006, 1015, out of range...),
            a reason without a code, or a reason longer than 123 bytes once encoded.
    """
    if code is None:
        if reason:
            raise LocalProtocolError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise LocalProtocolError(f"close code {code} may not be sent; use 1000-1003, 1007-1011 or 3000-4999")
    data = reason.encode("utf-8")
    if len(data) > MAX_CLOSE_REASON_BYTES:
        raise LocalProtocolError(
            f"close reason is {len(data)} bytes in UTF-8; at most "
            f"{MAX_CLOSE_REASON_BYTES} fit in a close frame"
        )
    return _PACK_CODE.pack(code) + data


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Decode a received close payload into ``(code, reason)``.

    An empty payload gives ``(1005, "")`` (§7.1.5: "If this Close control frame contains
    no status code, _The WebSocket Connection Close Code_ is considered to be 1005").

    Raises:
        ProtocolError: a 1-byte payload or a code not allowed on the wire (1002); a
            reason that is not UTF-8 (1007, §5.5.1: the body "MAY contain UTF-8-encoded
            data").
    """
    if not payload:
        return CloseCode.NO_STATUS_RECEIVED, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte payload", CloseCode.PROTOCOL_ERROR)
    (code,) = _PACK_CODE.unpack_from(payload)
    if not is_valid_close_code(code):
        raise ProtocolError(f"close frame with invalid code {code}", CloseCode.PROTOCOL_ERROR)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("close frame reason is not valid UTF-8", CloseCode.INVALID_DATA) from None
    return code, reason
