"""permessage-deflate (RFC 7692): negotiation, and the per-connection zlib state.

Strategy:

* Negotiation is a pure function of the client's ``Sec-WebSocket-Extensions`` offers and a
  :class:`~peregrine_ws.DeflateConfig`: the first acceptable offer wins (§5.1), an offer
  with an unknown, duplicate or invalid parameter is declined (§7.1), and the response
  never grants more than was offered.
* Inflating is bounded: every ``decompress`` call gets ``max_length`` = the bytes the
  message may still grow by, plus one. Output longer than the budget means the message is
  too big, so a compression bomb fails with 1009 after at most ``max_message_bytes + 1``
  bytes were produced, never after inflating it whole (CVE-2018-1000518).
* zlib objects are created on first use and, for a side without context takeover, dropped
  after each message: an idle connection holds no zlib memory.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Final

from ._config import DeflateConfig
from ._errors import ProtocolError
from ._frames import CloseCode

__all__ = [
    "DeflateParams",
    "PerMessageDeflate",
    "negotiate_deflate",
    "parse_extensions",
]

EXTENSION_NAME: Final = "permessage-deflate"
#: RFC 7692 §7.2.1: the sender removes these four octets from the end of each message;
#: §7.2.2: the receiver appends them before inflating.
_TAIL: Final = b"\x00\x00\xff\xff"
_EMPTY_STORED_BLOCK: Final = b"\x00" + _TAIL
#: RFC 7692 §7.1.2: window bits are "a decimal integer value without leading zeros
#: between 8 to 15, inclusive".
_WINDOW_BITS: Final = {str(n): n for n in range(8, 16)}

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED: Final = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t !-~])*)"')

Offer = tuple[str, list[tuple[str, str | None]]]


def parse_extensions(values: list[str]) -> list[Offer]:
    """Parse ``Sec-WebSocket-Extensions`` header values (RFC 6455 §9.1).

    ``extension = extension-token *( ";" extension-param )`` and
    ``extension-param = token [ "=" (token | quoted-string) ]``; several values and
    comma-separated lists are concatenated in order. Quoted values are unescaped.

    Raises:
        ValueError: the header is malformed.
    """
    offers: list[Offer] = []
    for text in values:
        pos = 0
        end = len(text)
        while True:
            pos = _skip_ows(text, pos)
            if pos < end and text[pos] == ",":  # empty list element (RFC 9110 §5.6.1)
                pos += 1
                continue
            if pos >= end:
                break
            name, pos = _token(text, pos)
            params: list[tuple[str, str | None]] = []
            while True:
                pos = _skip_ows(text, pos)
                if pos >= end or text[pos] != ";":
                    break
                pos = _skip_ows(text, pos + 1)
                key, pos = _token(text, pos)
                value: str | None = None
                after = _skip_ows(text, pos)
                if after < end and text[after] == "=":
                    pos = _skip_ows(text, after + 1)
                    quoted = _QUOTED.match(text, pos)
                    if quoted is not None:
                        value = re.sub(r"\\(.)", r"\1", quoted.group(1))
                        pos = quoted.end()
                    else:
                        value, pos = _token(text, pos)
                params.append((key.lower(), value))
            offers.append((name.lower(), params))
            if pos < end and text[pos] != ",":
                raise ValueError(f"unexpected {text[pos]!r} at offset {pos} in {text!r}")
    return offers


def _skip_ows(text: str, pos: int) -> int:
    end = len(text)
    while pos < end and text[pos] in " \t":
        pos += 1
    return pos


def _token(text: str, pos: int) -> tuple[str, int]:
    match = _TOKEN.match(text, pos)
    if match is None:
        raise ValueError(f"expected a token at offset {pos} in {text!r}")
    return match.group(), match.end()


@dataclass(frozen=True)
class DeflateParams:
    """What was agreed for one connection.

    Attributes:
        server_no_context_takeover: the server resets its compressor after each message.
        client_no_context_takeover: the client resets its compressor after each message.
        server_max_window_bits: the window the server compresses with.
        client_max_window_bits: the window the client may use (15 when not limited).
        config: the settings the agreement was made from (level, memLevel...).
    """

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int
    client_max_window_bits: int
    config: DeflateConfig
    response: str
    """The ``Sec-WebSocket-Extensions`` value of the 101 response."""


def negotiate_deflate(offers: list[Offer], config: DeflateConfig) -> DeflateParams | None:
    """Accept the first acceptable permessage-deflate offer, or none (RFC 7692 §7.1)."""
    for name, params in offers:
        if name != EXTENSION_NAME:
            continue
        agreed = _accept(params, config)
        if agreed is not None:
            return agreed
    return None


def _accept(params: list[tuple[str, str | None]], config: DeflateConfig) -> DeflateParams | None:
    seen: set[str] = set()
    server_bits: int | None = None
    client_bits: int | None = None
    client_bits_offered = False
    server_nct = client_nct = False
    for key, value in params:
        # §7.1: "A server MUST decline an extension negotiation offer [...] if the
        # negotiation offer contains an extension parameter not defined for use in an
        # offer, [...] an invalid value, [or] multiple extension parameters with the
        # same name".
        if key in seen:
            return None
        seen.add(key)
        if key == "server_no_context_takeover" and value is None:
            server_nct = True
        elif key == "client_no_context_takeover" and value is None:
            client_nct = True
        elif key == "server_max_window_bits" and value in _WINDOW_BITS:
            server_bits = _WINDOW_BITS[value]
        elif key == "client_max_window_bits" and (value is None or value in _WINDOW_BITS):
            client_bits_offered = True
            client_bits = None if value is None else _WINDOW_BITS[value]
        else:
            return None
    # §7.1.2.1: the server answers with "the same or smaller value as the offer", and MAY
    # include server_max_window_bits even when the offer did not. zlib cannot compress
    # with a window of 8 bits, so an offer demanding 8 is declined.
    bits = config.server_max_window_bits
    if server_bits is not None:
        if server_bits < 9:
            return None
        bits = min(bits, server_bits)
    # §7.1.2.2: client_max_window_bits may be answered only when it was offered, with a
    # value no greater than the offered one.
    inflate_bits = 15
    if client_bits_offered:
        inflate_bits = min(config.client_max_window_bits, client_bits or 15)
    # §7.1.1: server_no_context_takeover, once offered, must be honoured; either side's
    # no_context_takeover may be added by the server.
    server_nct = server_nct or config.server_no_context_takeover
    client_nct = client_nct or config.client_no_context_takeover
    parts = [EXTENSION_NAME]
    if server_nct:
        parts.append("server_no_context_takeover")
    if client_nct:
        parts.append("client_no_context_takeover")
    if bits < 15 or server_bits is not None:
        parts.append(f"server_max_window_bits={bits}")
    if client_bits_offered:
        parts.append(f"client_max_window_bits={inflate_bits}")
    return DeflateParams(
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=bits,
        client_max_window_bits=inflate_bits,
        config=config,
        response="; ".join(parts),
    )


class PerMessageDeflate:
    """The zlib state of one connection: a raw-deflate compressor and decompressor.

    Not thread-safe: the connection serialises :meth:`compress` under its send lock, and
    the inflating methods run on the connection's WebSocket thread only.
    """

    __slots__ = ("_compressor", "_decompressor", "params")

    def __init__(self, params: DeflateParams) -> None:
        self.params = params
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def compress(self, data: bytes) -> bytes:
        """Compress one whole message (RFC 7692 §7.2.1) for a frame with RSV1 set."""
        comp = self._compressor
        if comp is None:
            cfg = self.params.config
            comp = zlib.compressobj(
                cfg.level, zlib.DEFLATED, -self.params.server_max_window_bits, cfg.mem_level
            )
            if not self.params.server_no_context_takeover:
                self._compressor = comp
        out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
        # A sync flush always ends with an empty stored block, 00 00 ff ff: removed.
        return out[:-4]

    def inflate(self, data: bytes, budget: int | None) -> bytes:
        """Inflate one piece of a compressed message.

        Args:
            data: compressed bytes (any piece of the message, unmasked).
            budget: how many more bytes the message may grow by; ``None`` for no limit.

        Raises:
            ProtocolError: the message would exceed ``budget`` (1009) or the data is not
                valid deflate (1007).
        """
        dec = self._decompressor
        if dec is None:
            dec = self._decompressor = zlib.decompressobj(-max(9, self.params.client_max_window_bits))
        try:
            out = dec.decompress(data, 0 if budget is None else budget + 1)
        except zlib.error as exc:
            raise ProtocolError(f"invalid compressed data: {exc}", CloseCode.INVALID_DATA) from None
        if budget is not None and len(out) > budget:
            raise ProtocolError("message exceeds the size limit once decompressed", CloseCode.MESSAGE_TOO_BIG)
        # §7.2.3.4: a message may end with a block that has BFINAL set; the sender then
        # appends an empty stored block (00 00 00 ff ff) and strips its last 4 bytes.
        # Anything else after the final block is invalid.
        if dec.eof and not _EMPTY_STORED_BLOCK.startswith(dec.unused_data):
            raise ProtocolError("data after the final deflate block of a message", CloseCode.INVALID_DATA)
        return out

    def finish(self, budget: int | None) -> bytes:
        """Inflate the end of the current message (appending ``00 00 ff ff``, §7.2.2)."""
        dec = self._decompressor
        out = b""
        if dec is not None and not dec.eof:
            out = self.inflate(_TAIL, budget)
        if dec is not None and (dec.eof or self.params.client_no_context_takeover):
            # A block with BFINAL set ends the stream; the next message starts afresh.
            self._decompressor = None
        return out
