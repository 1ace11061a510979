"""The response body every server sends: 6150 bytes of HTML, the same bytes everywhere.

6150 bytes is the size of the original Peregrine's published benchmark response. The body is
built, not read from a file, so that every app and the static file written by the harness
agree by construction.
"""

from __future__ import annotations

from typing import Final

BODY_BYTES: Final = 6150
CONTENT_TYPE: Final = "text/html; charset=utf-8"


def make_body(size_bytes: int = BODY_BYTES) -> bytes:
    """Return ``size_bytes`` bytes of a small, valid HTML page (deterministic)."""
    head = b"<!DOCTYPE html>\n<html><head><title>Peregrine benchmark</title></head><body>\n"
    tail = b"</body></html>\n"
    line = b"<p>The quick brown fox jumps over the lazy dog, 0123456789.</p>\n"
    room = size_bytes - len(head) - len(tail)
    if room < 0:
        raise ValueError(f"a body of {size_bytes} bytes cannot hold the HTML frame")
    filler = (line * (room // len(line) + 1))[:room]
    if filler:
        filler = filler[:-1] + b"\n"
    body = head + filler + tail
    assert len(body) == size_bytes
    return body


BODY: Final = make_body()
