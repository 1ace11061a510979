"""``DirServer``: serve a directory tree below a URL prefix, from inside any handler.

Strategy, per request: match the raw path against the prefix; decode and split the rest
(:mod:`._paths`, no IO); walk it below the root with one ``lstat`` per segment, refusing
symbolic links per policy; then answer for a regular file (:mod:`._respond`), or for a
directory (redirect to the slash form, index file, or listing).

The contract of :meth:`DirServer.serve` is: it declines (returns ``False`` and leaves the
response untouched) exactly when the request's path is outside the prefix or names nothing
it would serve. Missing, outside the root, hidden, a refused symbolic link, a malformed
escape: all of these are one case, so nothing tells them apart. Every other answer (200, 206,
301, 304, 405, 412, 416) is given by ``serve`` and it returns ``True``; so is a ``503`` when
a system call failed for lack of resources (:mod:`._resources`), which proves nothing about
the path and so is never a decline (the caller's 404), and is never remembered.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterable
from typing import Final, get_args
from urllib.parse import quote

from peregrine_core import ConfigError, Request, Response

from ._cache import FileCache, fingerprint
from ._common import (
    DEFAULT_CACHE_BUDGET_BYTES,
    DEFAULT_CACHE_CONTROL,
    DEFAULT_CACHE_MAX_FILE_BYTES,
    FreshStat,
    check_cache_control,
    check_seconds,
    check_size,
    method_not_allowed,
    not_found,
    service_unavailable,
)
from ._http import accepted_codings
from ._listing import render_listing
from ._mime import content_type_for
from ._paths import SymlinkPolicy, resolve, resolve_leaf, split_path
from ._resources import Exhausted, report
from ._respond import ENCODING_SUFFIXES, PLAIN_BLOCKERS, FileResponder, Prepared, Variant

__all__ = ["DirServer"]

# A prefix is "/" or "/" followed by segments of RFC 3986 pchar, each ending with "/".
_PREFIX: Final = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@%]+/)*")
# RFC 3986 §3.4: query = *( pchar / "/" / "?" ); anything else is percent-encoded.
_QUERY_SAFE: Final = "-._~!$&'()*+,;=:@/?%"
_SEGMENT_SAFE: Final = "-._~!$&'()*+,;=:@"
_HTML: Final = "text/html; charset=utf-8"
_MOVED_BODY: Final = b"301 Moved Permanently\n"
#: Bounds of the resolved-path memo: entries, and the longest raw path remembered.
_RESOLVED_MAX_ENTRIES: Final = 4096
_RESOLVED_MAX_PATH_CHARS: Final = 1024
DEFAULT_PATH_CACHE_SECONDS: Final = 1.0
_GET_OR_HEAD: Final = ("GET", "HEAD")
_PLAIN_BLOCKERS_WITH_CODINGS: Final = PLAIN_BLOCKERS | {"accept-encoding"}


class _Resolved:
    """Where a raw request path led: a regular file, found by a full walk at ``walked_at``.

    ``stat`` gives the file's ``stat`` while it is still the version the walk found
    (one ``stat`` answers for every request received before it began).
    ``prepared`` is the file's plain ``200`` once its contents are cached; it may be given
    to a request that has none of ``blockers`` (conditional and ``Range`` fields, and also
    ``Accept-Encoding`` when a precompressed sibling existed at the walk).
    """

    __slots__ = ("blockers", "content_type", "prepared", "real", "stat", "walked_at")

    def __init__(self, real: str, content_type: str, st: os.stat_result, blockers: frozenset[str]) -> None:
        self.real = real
        self.content_type = content_type
        self.stat = FreshStat(real, fingerprint(st))
        self.walked_at = time.monotonic()
        self.blockers = blockers
        self.prepared: Prepared | None = None


def _may_exist(path: str) -> bool:
    """Whether ``path`` may name something: ``False`` only when ``lstat`` says it does not.

    A failure for another reason (no memory, say) must not be remembered as "no sibling",
    which would serve the identity file to clients asking for a coding for a while.
    """
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def _check_prefix(url_prefix: object) -> str:
    if not isinstance(url_prefix, str):
        raise ConfigError(f"url_prefix must be a string such as '/static/', not {url_prefix!r}")
    prefix = url_prefix if url_prefix.endswith("/") else url_prefix + "/"
    if _PREFIX.fullmatch(prefix) is None or any(segment in (".", "..") for segment in prefix.split("/")):
        raise ConfigError(
            f"url_prefix {url_prefix!r} must start with '/' and hold only URL path characters, "
            "with no empty, '.' or '..' segment (for example '/' or '/static/')"
        )
    return prefix


def _check_index_files(index_files: object) -> tuple[str, ...]:
    if isinstance(index_files, str) or not isinstance(index_files, Iterable):
        raise ConfigError(
            f"index_files must be a sequence of file names such as ('index.html',), not {index_files!r}"
        )
    names = tuple(index_files)
    for name in names:
        if (
            not isinstance(name, str)
            or not name
            or name in (".", "..")
            or re.search(r"[/\\\x00-\x1f\x7f]", name) is not None
        ):
            raise ConfigError(f"index_files entry {name!r} must be a plain file name")
    return names


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, not {value!r}")
    return value


class DirServer:
    """Serve the files below ``root`` for request paths that start with ``url_prefix``.

    Use it as a handler on its own (:meth:`handle_request`), or call :meth:`serve` from your
    own handler and fall through to your own logic when it returns ``False``. It is
    thread-safe: one instance serves every worker.

    Args:
        root: the directory to serve. Resolved once (symbolic links included) when the
            server is created; it must exist.
        url_prefix: the URL path the tree is mounted at, compared with the raw request path;
            a missing trailing ``/`` is added (``"/static"`` serves ``/static/...`` and
            redirects ``/static`` to ``/static/``).
        index_files: names tried, in order, for a request ending with ``/``.
        show_hidden: serve and list names starting with a dot (never ``..``).
        follow_symlinks: ``"inside"`` follows a symbolic link only when its target is inside
            the root; ``"never"`` refuses any path that goes through a symbolic link.
        listing: answer a directory without an index file with an HTML listing.
        cache_control: the ``Cache-Control`` sent with files, listings, 304 and 416
            answers; ``None`` sends none.
        cache_max_file_bytes: files up to this size are read into memory (and cached);
            larger ones are sent with ``os.sendfile``.
        cache_budget_bytes: total size of the small-file LRU cache; 0 disables it.
        precompressed: serve ``<file>.br`` / ``<file>.gz`` instead of ``<file>`` when the
            client accepts that coding and the sibling is a regular file inside the root, not
            older than ``<file>``.
        path_cache_seconds: how long the walk from a request path to a regular file is
            remembered. Within that time a request for the same path costs one ``stat`` of
            the file instead of one ``lstat`` per segment (or none, when a ``stat`` begun
            after the request's ``received_at`` is at hand), and is served only if the file is
            still the very one the walk found (same device, inode, size and modification
            time): a changed, replaced or removed file is seen at once. What can lag by up
            to this long is only which file a path names while that file stays untouched
            (a new index file in front of another, a directory swapped for a symbolic link
            to the same files, a precompressed sibling created next to a file that had
            none). 0 walks every request.

    Raises:
        ConfigError: an option is invalid or ``root`` is not a directory.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        url_prefix: str = "/",
        index_files: Iterable[str] = ("index.html",),
        show_hidden: bool = False,
        follow_symlinks: SymlinkPolicy = "inside",
        listing: bool = False,
        cache_control: str | None = DEFAULT_CACHE_CONTROL,
        cache_max_file_bytes: int = DEFAULT_CACHE_MAX_FILE_BYTES,
        cache_budget_bytes: int = DEFAULT_CACHE_BUDGET_BYTES,
        precompressed: bool = True,
        path_cache_seconds: float = DEFAULT_PATH_CACHE_SECONDS,
    ) -> None:
        try:
            root_path = os.path.realpath(os.fspath(root))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"root must be a directory path, not {root!r}") from exc
        if not os.path.isdir(root_path):
            raise ConfigError(f"root {os.fspath(root)!r} is not an existing directory")
        if follow_symlinks not in get_args(SymlinkPolicy):
            raise ConfigError(f"follow_symlinks must be 'inside' or 'never', not {follow_symlinks!r}")
        self.root: Final = root_path
        self.url_prefix: Final = _check_prefix(url_prefix)
        self.index_files: Final = _check_index_files(index_files)
        self.show_hidden: Final = _check_bool("show_hidden", show_hidden)
        self.follow_symlinks: Final[SymlinkPolicy] = follow_symlinks
        self.listing: Final = _check_bool("listing", listing)
        self.cache_control: Final = check_cache_control(cache_control)
        self.cache_max_file_bytes: Final = check_size("cache_max_file_bytes", cache_max_file_bytes)
        self.cache_budget_bytes: Final = check_size("cache_budget_bytes", cache_budget_bytes)
        self.precompressed: Final = _check_bool("precompressed", precompressed)
        self.path_cache_seconds: Final = check_seconds("path_cache_seconds", path_cache_seconds)
        # raw request path -> _Resolved; plain dict operations, atomic across threads.
        self._resolved: dict[str, _Resolved] = {}
        self._bare_prefix: Final = self.url_prefix[:-1] if self.url_prefix != "/" else None
        self._cache = FileCache(self.cache_budget_bytes)
        self._responder = FileResponder(self._cache, self.cache_max_file_bytes, self.cache_control)

    def __repr__(self) -> str:
        return f"DirServer({self.root!r}, url_prefix={self.url_prefix!r})"

    def handle_request(self, req: Request, resp: Response) -> None:
        """Answer any request: what :meth:`serve` answers, else ``404 Not Found``."""
        if not self.serve(req, resp):
            not_found(resp)

    def serve(self, req: Request, resp: Response) -> bool:
        """Answer ``req`` if it is for this tree.

        Returns:
            ``False``, with ``resp`` untouched, when the path is outside ``url_prefix`` or
            names nothing this server would serve (missing, outside the root, hidden, a
            refused symbolic link, a malformed path, a directory with neither index nor
            listing); the caller may then answer as it likes. ``True`` when ``resp`` holds the
            answer: 200, 206, 304, 412 or 416 for a file or listing, 301 for a directory
            asked for without its trailing slash, 405 for a method other than GET and HEAD,
            503 (``Retry-After: 1``, ``Cache-Control: no-store``) when looking at the path
            failed for lack of resources (descriptors, memory); that last one is logged,
            rate-limited, on the ``peregrine_static`` logger.

        No request makes it raise: every malformed or hostile path is declined.
        """
        try:
            return self._serve(req, resp)
        except Exhausted as exc:
            report(exc)
            service_unavailable(resp)
            return True

    def _serve(self, req: Request, resp: Response) -> bool:
        path = req.path
        known = self._resolved.get(path)
        if known is not None and req.method in _GET_OR_HEAD:
            if time.monotonic() - known.walked_at < self.path_cache_seconds:
                st = known.stat.get(req.received_at)
                if st is not None:
                    prepared = known.prepared
                    if prepared is not None:
                        data = prepared.entry.data
                        if data is not None and known.blockers.isdisjoint(req.header_names()):
                            prepared.entry.used = True
                            resp.status = 200
                            resp.add_headers(prepared.headers)
                            resp.set_body(data)
                            return True
                    variant = Variant(known.real, st)
                    if not self._serve_file(req, resp, variant, known.content_type):
                        return False
                    if prepared is None or prepared.entry.data is None:
                        known.prepared = self._responder.prepared(
                            variant, known.content_type, vary=self.precompressed
                        )
                    return True
            self._resolved.pop(path, None)
        prefix = self.url_prefix
        if path.startswith(prefix):
            parsed = split_path(path[len(prefix) :], allow_hidden=self.show_hidden)
            if parsed is None:
                return False
            segments, trailing_slash = parsed
        elif path == self._bare_prefix:
            segments, trailing_slash = [], False
        else:
            return False

        found = resolve(self.root, segments, self.follow_symlinks)
        if found is None:
            return False
        real, st = found
        if stat.S_ISREG(st.st_mode):
            if trailing_slash:
                return False  # "/file.txt/" names a directory that does not exist
            if req.method not in _GET_OR_HEAD:
                method_not_allowed(resp)
                return True
            content_type = content_type_for(segments[-1])
            self._remember(path, real, content_type, st)
            return self._serve_file(req, resp, Variant(real, st), content_type)
        if not stat.S_ISDIR(st.st_mode):
            return False  # FIFOs, sockets, devices

        index: Variant | None = None
        for name in self.index_files:
            leaf = resolve_leaf(os.path.join(real, name), self.root, self.follow_symlinks)
            if leaf is not None and stat.S_ISREG(leaf[1].st_mode):
                index = Variant(leaf[0], leaf[1])
                index_name = name
                break
        if index is None and not self.listing:
            return False
        if req.method not in _GET_OR_HEAD:
            method_not_allowed(resp)
            return True
        if not trailing_slash:
            self._redirect_to_directory(req, resp, segments)
            return True
        if index is not None:
            content_type = content_type_for(index_name)
            self._remember(path, index.path, content_type, index.st)
            return self._serve_file(req, resp, index, content_type)
        return self._serve_listing(resp, real, segments)

    def _remember(self, path: str, real: str, content_type: str, st: os.stat_result) -> None:
        """Remember that ``path`` led to the regular file ``real`` (walked just now)."""
        if not self.path_cache_seconds or len(path) > _RESOLVED_MAX_PATH_CHARS:
            return
        resolved = self._resolved
        if len(resolved) >= _RESOLVED_MAX_ENTRIES:
            try:
                del resolved[next(iter(resolved))]
            except (KeyError, RuntimeError, StopIteration):  # another thread changed it
                pass
        blockers = PLAIN_BLOCKERS
        if self.precompressed and any(_may_exist(real + s) for s in ENCODING_SUFFIXES.values()):
            blockers = _PLAIN_BLOCKERS_WITH_CODINGS  # negotiation needs the full path
        resolved[path] = _Resolved(real, content_type, st, blockers)

    def _serve_file(self, req: Request, resp: Response, variant: Variant, content_type: str) -> bool:
        if not self.precompressed:
            return self._responder.respond(req, resp, variant, content_type, vary=False)
        identity = variant
        for coding in accepted_codings(req.get_header("accept-encoding")):
            # CVE-2024-42367: a sibling passes the same checks as any other path (a symbolic
            # link is followed only per policy and only inside the root) and must be a
            # regular file. A sibling older than the file is stale and ignored.
            sibling = resolve_leaf(identity.path + ENCODING_SUFFIXES[coding], self.root, self.follow_symlinks)
            if (
                sibling is not None
                and stat.S_ISREG(sibling[1].st_mode)
                and sibling[1].st_mtime_ns >= identity.st.st_mtime_ns
            ):
                variant = Variant(sibling[0], sibling[1], coding)
                break
        if self._responder.respond(req, resp, variant, content_type, vary=True):
            return True
        if variant is not identity:  # the sibling vanished meanwhile
            return self._responder.respond(req, resp, identity, content_type, vary=True)
        return False

    def _redirect_to_directory(self, req: Request, resp: Response, segments: list[str]) -> None:
        # CVE-2021-28861, CVE-2023-28370: the Location is rebuilt from the prefix (which
        # starts with exactly one "/") and the decoded, re-encoded segments (never empty,
        # never holding "/" or "\"), so it can never start with "//" or "/\" and never
        # names another host.
        location = self.url_prefix + "".join(quote(segment, safe=_SEGMENT_SAFE) + "/" for segment in segments)
        if req.has_query:
            location += "?" + quote(req.query, safe=_QUERY_SAFE)
        resp.status = 301
        resp.add_header("Location", location)
        resp.add_header("Content-Type", "text/plain; charset=utf-8")
        resp.set_body(_MOVED_BODY)

    def _serve_listing(self, resp: Response, directory: str, segments: list[str]) -> bool:
        url_path = self.url_prefix + "".join(segment + "/" for segment in segments)
        try:
            page = render_listing(
                directory,
                self.root,
                url_path,
                show_hidden=self.show_hidden,
                policy=self.follow_symlinks,
                with_parent=bool(segments),
            )
        except OSError:
            return False
        resp.status = 200
        resp.add_header("Content-Type", _HTML)
        if self.cache_control is not None:
            resp.add_header("Cache-Control", self.cache_control)
        resp.set_body(page)
        return True
