"""What the streaming scenario downloads: 1 GiB made on the fly, in 256 KiB pieces.

The body is never held whole: :func:`pieces` yields the same prepared piece again and again,
so a server that streams it keeps its memory flat, and one that buffers it shows it in its
RSS. Every streaming app (``peregrine_stream_app`` with ``resp.set_stream``, and
``wsgi_scenario_app`` as a WSGI iterable) sends it with ``Content-Length`` set, so every
server frames it alike (no chunked encoding).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

STREAM_PATH: Final = "/stream1g"
STREAM_BYTES: Final = 1 << 30
"""1 GiB: 1,073,741,824 bytes."""
PIECE_BYTES: Final = 256 * 1024
STREAM_CONTENT_TYPE: Final = "application/octet-stream"

_PATTERN: Final = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n"


def make_piece(size_bytes: int = PIECE_BYTES) -> bytes:
    """``size_bytes`` bytes of printable text (deterministic)."""
    return (_PATTERN * (size_bytes // len(_PATTERN) + 1))[:size_bytes]


_PIECE: Final = make_piece()


def pieces(total_bytes: int = STREAM_BYTES, piece_bytes: int = PIECE_BYTES) -> Iterator[bytes]:
    """Yield ``total_bytes`` bytes in pieces of ``piece_bytes`` (the last one may be shorter).

    The full pieces are one bytes object, made once: producing the body costs no copy.
    """
    piece = _PIECE if piece_bytes == PIECE_BYTES else make_piece(piece_bytes)
    full, rest = divmod(total_bytes, piece_bytes)
    for _ in range(full):
        yield piece
    if rest:
        yield piece[:rest]
