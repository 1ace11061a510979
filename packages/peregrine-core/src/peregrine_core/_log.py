"""Logging helpers: escaping wire data, and rate-limited warnings for floods of bad input."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Final

__all__ = ["RateLimitedLog", "escape"]

_UNSAFE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\\]|[^\x00-\xff]")


def _sub(m: re.Match[str]) -> str:
    ch = m.group()
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str | bytes, limit: int = 200) -> str:
    """Make wire data safe to log: control characters become ``\\xHH``; long text is cut."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("latin-1")
    if len(text) > limit:
        text = text[:limit] + "..."
    return _UNSAFE.sub(_sub, text)


class RateLimitedLog:
    """Log at most one line per ``interval`` seconds; count the rest and report the count.

    A flood of malformed requests produces one warning per interval ("... and 4211 more"),
    not one line per request. Each event is also logged at DEBUG.
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        logger = self._logger
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(msg, *args)
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self._interval
        if suppressed:
            logger.warning(msg + " (and %d similar in the last %.0f s)", *args, suppressed, self._interval)
        else:
            logger.warning(msg, *args)
