"""``FileServer``: serve one file, whatever the request path, with the same validators,
conditional requests and ranges as :class:`DirServer`.

The path is resolved once, when the server is created. Each request is checked with a
``stat`` begun after it was received (requests read in the same pass of the server's loop
share one: see ``Request.received_at``), so a file replaced on disk (by ``rename`` or in
place) is picked up at once.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Final

from peregrine_core import ConfigError, Request, Response

from ._cache import FileCache
from ._common import (
    DEFAULT_CACHE_CONTROL,
    DEFAULT_CACHE_MAX_FILE_BYTES,
    FreshStat,
    check_cache_control,
    check_size,
    method_not_allowed,
    not_found,
    service_unavailable,
)
from ._mime import content_type_for
from ._resources import Exhausted, report
from ._respond import FileResponder, Variant

__all__ = ["FileServer"]

# RFC 9110 §8.3.1: media-type = type "/" subtype parameters; checked loosely (token/token).
_MEDIA_TYPE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:\s*;.*)?")


class FileServer:
    """Serve a single file for every request it is given.

    Args:
        path: the file. Resolved once (symbolic links included) when the server is created;
            it must be a regular file then. If it later disappears, requests get 404.
        content_type: the ``Content-Type`` to send, used exactly as given; by default it is
            guessed from the file name (see :func:`content_type_for`).
        cache_control: the ``Cache-Control`` value, or ``None`` to send none.
        cache_max_file_bytes: up to this size the file is kept in memory (re-checked with
            ``stat`` on every request); larger files are sent with ``os.sendfile``.

    Raises:
        ConfigError: an option is invalid or ``path`` is not a regular file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        content_type: str | None = None,
        cache_control: str | None = DEFAULT_CACHE_CONTROL,
        cache_max_file_bytes: int = DEFAULT_CACHE_MAX_FILE_BYTES,
    ) -> None:
        try:
            real = os.path.realpath(os.fspath(path))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"path must be a file path, not {path!r}") from exc
        if not os.path.isfile(real):
            raise ConfigError(f"path {os.fspath(path)!r} is not an existing regular file")
        if content_type is None:
            content_type = content_type_for(real)
        elif (
            not isinstance(content_type, str)
            or not content_type.isascii()
            or _MEDIA_TYPE.fullmatch(content_type) is None
            or re.search(r"[\x00-\x1f\x7f]", content_type) is not None
        ):
            raise ConfigError(
                f"content_type must be a media type such as 'text/html; charset=utf-8', not {content_type!r}"
            )
        self.path: Final = real
        self.content_type: Final = content_type
        self.cache_control: Final = check_cache_control(cache_control)
        self.cache_max_file_bytes: Final = check_size("cache_max_file_bytes", cache_max_file_bytes)
        self._responder = FileResponder(
            FileCache(self.cache_max_file_bytes), self.cache_max_file_bytes, self.cache_control
        )
        self._stat = FreshStat(real)

    def __repr__(self) -> str:
        return f"FileServer({self.path!r})"

    def handle_request(self, req: Request, resp: Response) -> None:
        """Answer any request: what :meth:`serve` answers, else ``404 Not Found``."""
        if not self.serve(req, resp):
            not_found(resp)

    def serve(self, req: Request, resp: Response) -> bool:
        """Answer ``req`` with the file, whatever its path.

        Returns:
            ``False``, with ``resp`` untouched, when the file is missing or no longer a
            regular file; ``True`` when ``resp`` holds the answer (200, 206, 304, 412, 416,
            405 for a method other than GET and HEAD, or 503 with ``Retry-After: 1`` when
            the file could not be looked at for lack of resources; logged, rate-limited).
        """
        try:
            st = self._stat.get(req.received_at)
            if st is None or not stat.S_ISREG(st.st_mode):
                return False
            if req.method not in ("GET", "HEAD"):
                method_not_allowed(resp)
                return True
            return self._responder.respond(req, resp, Variant(self.path, st), self.content_type, vary=False)
        except Exhausted as exc:
            report(exc)
            service_unavailable(resp)
            return True
