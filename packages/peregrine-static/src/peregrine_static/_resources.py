"""Running out of resources is not "not found": the error, its test and its log.

When ``open``, ``stat``, ``read`` or ``scandir`` fails because the process or the system ran
out of something (descriptors, memory, buffers), the path may well exist: answering 404
would be wrong, and cacheable. So the code that maps an ``OSError`` to "missing" first
calls :func:`raise_if_exhausted`, which turns such an error into :class:`Exhausted`. It
propagates, untouched by the ``except OSError`` clauses on its way (it is no ``OSError``),
to ``serve()``, which answers ``503`` (see :func:`~._common.service_unavailable`) and calls
:func:`report`.

Invariants: nothing is cached on the way out (the memo of walked paths and the file cache
only ever remember successes), and the log gets at most one warning per
:data:`REPORT_INTERVAL_SECONDS`, carrying the count of the events it left out.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = [
    "REPORT_INTERVAL_SECONDS",
    "RESOURCE_ERRNOS",
    "Exhausted",
    "RateLimitedWarning",
    "raise_if_exhausted",
    "report",
]

#: ``errno`` values that mean "no resources now", not "no such file". ``EAGAIN`` (also
#: ``EWOULDBLOCK``) is "resource temporarily unavailable".
RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN})
REPORT_INTERVAL_SECONDS: Final = 10.0

log = logging.getLogger("peregrine_static")


class Exhausted(Exception):
    """A system call on ``path`` failed for lack of resources; answer 503, remember nothing.

    Attributes:
        action: what was attempted (``"open"``, ``"stat"``, ``"read"``, ``"list"``).
        path: the file or directory it was attempted on.
        error: the ``OSError`` the call raised.
    """

    def __init__(self, action: str, path: str, error: OSError) -> None:
        super().__init__(f"cannot {action} {path}: {error}")
        self.action = action
        self.path = path
        self.error = error


def raise_if_exhausted(error: OSError, action: str, path: str) -> None:
    """Raise :class:`Exhausted` (from ``error``) if ``error`` means "no resources now".

    Call it first in an ``except OSError`` clause that goes on to treat the path as missing.
    """
    if error.errno in RESOURCE_ERRNOS:
        raise Exhausted(action, path, error) from error


class RateLimitedWarning:
    """Log at most one warning per ``interval_s``; the next one says how many were left out.

    Args:
        logger: where the warnings go.
        interval_s: the shortest time between two warnings.
        clock: monotonic seconds (replaceable in tests).
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = REPORT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless a warning went out less than ``interval_s`` ago.

        Returns:
            Whether the line was logged (``False``: it was counted, to be reported with the
            next line as ``(and N more)``).
        """
        now = self._clock()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return False
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self._interval_s
        if suppressed:
            self._logger.warning(msg + " (and %d more)", *args, suppressed)
        else:
            self._logger.warning(msg, *args)
        return True


_warnings: Final = RateLimitedWarning(log)


def report(exc: Exhausted, outcome: str = "answered 503") -> None:
    """Log ``exc`` (rate-limited), e.g. ``cannot open /x: [Errno 24] Too many open files;
    answered 503 (and 41 more)``."""
    error = exc.error
    _warnings.warning(
        "cannot %s %s: [Errno %s] %s; %s", exc.action, exc.path, error.errno, error.strerror, outcome
    )
