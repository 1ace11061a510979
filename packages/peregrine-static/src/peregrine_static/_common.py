"""Pieces shared by :class:`DirServer` and :class:`FileServer`: defaults, the fixed error
answers and the validation of options.

Every refusal of a path (missing, outside the root, hidden, malformed) is answered with the
same :func:`not_found`, byte for byte, so that a client cannot tell them apart. A path that
could not be looked at for lack of resources gets :func:`service_unavailable` instead: it
may exist, and a 404 would be both wrong and cacheable.
"""

from __future__ import annotations

import os
import time
from typing import Final

from peregrine_core import ConfigError, Response

from ._cache import Fingerprint, fingerprint
from ._resources import raise_if_exhausted

__all__ = [
    "ALLOWED_METHODS",
    "DEFAULT_CACHE_BUDGET_BYTES",
    "DEFAULT_CACHE_CONTROL",
    "DEFAULT_CACHE_MAX_FILE_BYTES",
    "FreshStat",
    "check_cache_control",
    "check_seconds",
    "check_size",
    "method_not_allowed",
    "not_found",
    "service_unavailable",
]

#: Revalidate before every use: always fresh, and the ETag makes revalidation a cheap 304.
DEFAULT_CACHE_CONTROL: Final = "no-cache"
DEFAULT_CACHE_MAX_FILE_BYTES: Final = 64 * 1024
DEFAULT_CACHE_BUDGET_BYTES: Final = 32 * 1024 * 1024
ALLOWED_METHODS: Final = "GET, HEAD"
_NEVER: Final = float("-inf")

_NOT_FOUND_BODY: Final = b"404 Not Found\n"
_NOT_ALLOWED_BODY: Final = b"405 Method Not Allowed\n"
_UNAVAILABLE_BODY: Final = b"503 Service Unavailable: out of resources, try again\n"
_TEXT_PLAIN: Final = "text/plain; charset=utf-8"


def not_found(resp: Response) -> None:
    """Answer 404 with a fixed body, whatever the reason."""
    resp.status = 404
    resp.add_header("Content-Type", _TEXT_PLAIN)
    resp.set_body(_NOT_FOUND_BODY)


def service_unavailable(resp: Response) -> None:
    """Answer 503 with ``Retry-After: 1`` and ``Cache-Control: no-store``: a file could not be
    looked at for lack of resources (descriptors, memory), which says nothing of whether it
    exists.

    RFC 9110 §15.6.4: "The 503 (Service Unavailable) status code indicates that the server
    is currently unable to handle the request due to a temporary overload ... The server MAY
    send a Retry-After header field (Section 10.2.3) to suggest an appropriate amount of time
    for the client to wait before retrying the request." ``no-store`` keeps every cache from
    holding the outcome (RFC 9111 §5.2.2.5).
    """
    resp.status = 503
    resp.add_header("Retry-After", "1")
    resp.add_header("Cache-Control", "no-store")
    resp.add_header("Content-Type", _TEXT_PLAIN)
    resp.set_body(_UNAVAILABLE_BODY)


def method_not_allowed(resp: Response) -> None:
    """Answer 405 with ``Allow: GET, HEAD``.

    RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405
    response containing a list of the target resource's currently supported methods."
    """
    resp.status = 405
    resp.add_header("Allow", ALLOWED_METHODS)
    resp.add_header("Content-Type", _TEXT_PLAIN)
    resp.set_body(_NOT_ALLOWED_BODY)


def check_size(name: str, value: object) -> int:
    """Check a byte count option: a non-negative ``int``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer number of bytes, not {value!r}")
    return value


def check_seconds(name: str, value: object) -> float:
    """Check a duration option: a finite, non-negative number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise ConfigError(f"{name} must be a non-negative number of seconds, not {value!r}")
    return float(value)


def check_cache_control(value: object) -> str | None:
    """Check the ``cache_control`` option: ``None`` or a header value without control chars."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"cache_control must be a non-empty string or None, not {value!r}")
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F or ord(c) > 0xFF for c in value):
        raise ConfigError(f"cache_control {value!r} contains a character not allowed in a header")
    return value


class FreshStat:
    """A path's latest ``stat``, reused for every request received before it began.

    A ``stat`` begun after a request had been received shows a state at least as new as the
    request (``Request.received_at``), so it answers for that request exactly as one made
    for it would: the requests read in one pass of the server's loop share one.

    Args:
        path: the path to ``stat``.
        expect: the fingerprint the file must still have; a ``stat`` showing another
            version gives ``None`` and is not kept. ``None``: any version will do.
    """

    __slots__ = ("_checked", "_expect", "_path")

    def __init__(self, path: str, expect: Fingerprint | None = None) -> None:
        self._path = path
        self._expect = expect
        # (monotonic time taken just before the stat, the stat): one tuple, so that other
        # threads see both or neither.
        self._checked: tuple[float, os.stat_result | None] = (_NEVER, None)

    def get(self, received_at: float) -> os.stat_result | None:
        """The path's ``stat`` as of ``received_at`` or later; ``None`` when it is gone
        (or, with ``expect``, no longer that version). A failure is never kept.

        Raises:
            Exhausted: the ``stat`` failed for lack of resources.
        """
        checked_at, st = self._checked
        if checked_at >= received_at:
            return st
        checked_at = time.monotonic()
        try:
            st = os.stat(self._path)
        except OSError as exc:
            raise_if_exhausted(exc, "stat", self._path)
            return None
        if self._expect is not None and fingerprint(st) != self._expect:
            return None
        self._checked = (checked_at, st)
        return st
