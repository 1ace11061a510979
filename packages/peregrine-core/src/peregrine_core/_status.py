"""Status codes and precomputed status lines.

``Status`` is the standard library's :class:`http.HTTPStatus`: an ``IntEnum`` whose members
carry their reason phrase. Status lines for every code Python knows are built once at import;
other codes in 100..599 get a line built on demand (with an empty reason phrase, which RFC 9112
§4 allows).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

__all__ = ["Status", "status_line"]

Status = HTTPStatus

# RFC 9110 renamed a few reason phrases that older Pythons still spell the RFC 7231 way.
_RFC9110_PHRASES: Final = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}
_STATUS_LINES: Final[dict[int, bytes]] = {
    int(s): f"HTTP/1.1 {int(s)} {_RFC9110_PHRASES.get(int(s), s.phrase)}\r\n".encode("ascii")
    for s in HTTPStatus
}


def status_line(code: int) -> bytes:
    """Return ``HTTP/1.1 <code> <reason>\\r\\n`` for a status code in 100..599."""
    line = _STATUS_LINES.get(code)
    if line is None:
        line = b"HTTP/1.1 %d \r\n" % code
    return line


def reason_phrase(code: int) -> str:
    """Return the reason phrase of a known status code, or an empty string."""
    if code in _RFC9110_PHRASES:
        return _RFC9110_PHRASES[code]
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""
