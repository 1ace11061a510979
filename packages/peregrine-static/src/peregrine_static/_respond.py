"""Answer a GET or HEAD for one regular file: validators, preconditions, range, body.

Strategy: the caller hands over a path it has already resolved and checked, with the
``stat`` it got on the way. Preconditions (``304``/``412``) are decided from that ``stat``
without opening anything. A body comes either from the small-file cache (no system call),
or from the file opened afresh: ``open`` with ``O_NOFOLLOW | O_NONBLOCK``, then ``fstat``,
and the device and inode must be those the walk saw, which closes the race in which a
component is swapped for a symbolic link between the check and the ``open``. When the file
changed in between, the validators are recomputed from the ``fstat`` so headers and bytes
always agree. Files up to ``max_file_bytes`` become a ``bytes`` body (and are cached).

Larger ones are never read whole, and not held open while they wait: the handler closes
the file it checked at once and hands the server an *opener*
(``Response.set_file_opener``), which the server calls when that body's turn to be sent
comes, so 32 pipelined requests for a large file hold one descriptor, not 32. The opener
opens the same path with the same flags and must find, with ``fstat``, the very version
(:func:`~._cache.fingerprint`) the headers were computed from; if the file changed or
cannot be opened it raises ``OSError`` and the server closes the connection: the head is
gone already, and a body that does not match it must never follow.

Invariants: nothing is written to the response before the file is known to be there, so a
file that vanished leaves the response untouched (:meth:`FileResponder.respond` returns
``False``); a failure for lack of resources leaves it untouched too, and raises
:class:`~._resources.Exhausted`; the handler holds at most one file descriptor at a time
and closes it before returning.
"""

from __future__ import annotations

import io
import os
import stat
import time
from functools import lru_cache
from typing import Final

from peregrine_core import HeaderBlock, Request, Response

from ._cache import CachedFile, FileCache, Fingerprint, fingerprint
from ._http import (
    Evaluation,
    RangeKind,
    etag_for,
    evaluate_preconditions,
    http_date,
    if_range_allows,
    parse_range,
)
from ._resources import RESOURCE_ERRNOS, Exhausted, raise_if_exhausted, report

__all__ = ["ENCODING_SUFFIXES", "PLAIN_BLOCKERS", "FileResponder", "Prepared", "Variant"]

#: Content coding to the suffix of its precompressed sibling and of its entity tag.
ENCODING_SUFFIXES: Final = {"br": ".br", "gzip": ".gz"}
_ETAG_SUFFIXES: Final = {None: "", "br": "-br", "gzip": "-gz"}

_OPEN_FLAGS: Final = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in must not block the worker
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


class Variant:
    """One file to send: a resolved path, its ``stat`` and its content coding (if any)."""

    __slots__ = ("encoding", "path", "st")

    def __init__(self, path: str, st: os.stat_result, encoding: str | None = None) -> None:
        self.path = path
        self.st = st
        self.encoding = encoding


@lru_cache(maxsize=1024)
def _last_modified(seconds: int) -> str:
    return http_date(seconds)


# (size, mtime_ns, coding) -> (ETag, Last-Modified seconds), for modification times in the
# past (those never change). Bounded; plain dict operations, atomic across threads.
_VALIDATORS: dict[tuple[int, int, str | None], tuple[str, int]] = {}
_VALIDATORS_MAX_ENTRIES: Final = 4096


def _validators(st: os.stat_result, encoding: str | None) -> tuple[str, int]:
    key = (st.st_size, st.st_mtime_ns, encoding)
    known = _VALIDATORS.get(key)
    if known is not None:
        return known
    etag = etag_for(st.st_size, st.st_mtime_ns, _ETAG_SUFFIXES[encoding])
    seconds = st.st_mtime_ns // 1_000_000_000
    now = int(time.time())
    if seconds > now:
        # RFC 9110 §8.8.2.1: "An origin server with a clock MUST NOT generate a Last-Modified
        # date that is later than the server's time of message origination (Date). If the
        # last modification time ... evaluates to some time in the future ... the origin
        # server MUST replace that value with the message origination date."
        return etag, now
    if len(_VALIDATORS) >= _VALIDATORS_MAX_ENTRIES:
        _VALIDATORS.clear()
    _VALIDATORS[key] = (etag, seconds)
    return etag, seconds


def _open(path: str, expected: os.stat_result) -> tuple[int, os.stat_result] | None:
    """Open ``path`` and check it is still the regular file the walk found.

    Raises:
        Exhausted: ``open`` or ``fstat`` failed for lack of resources.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise_if_exhausted(exc, "open", path)
        return None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise_if_exhausted(exc, "stat", path)
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_ino != expected.st_ino or st.st_dev != expected.st_dev:
        os.close(fd)
        return None
    return fd, st


class _Opener:
    """Opens a file when the server is about to send it, if it is still ``version``.

    Called at most once, on the worker thread, after the head announcing that version has
    been queued: any other outcome than the right file must be an ``OSError``, on which the
    server closes the connection.
    """

    __slots__ = ("path", "version")

    def __init__(self, path: str, version: Fingerprint) -> None:
        self.path = path
        self.version = version

    def __call__(self) -> io.FileIO:
        path = self.path
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:
                report(Exhausted("open", path, exc), "closed the connection")
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or fingerprint(st) != self.version:
                raise OSError(f"{path} changed after its headers were sent; closing the connection")
            return open(fd, "rb", buffering=0, closefd=True)
        except BaseException:
            os.close(fd)
            raise


def _read(fd: int, size: int) -> bytes:
    """Read up to ``size`` bytes (fewer if the file shrank meanwhile)."""
    data = os.read(fd, size)
    if len(data) < size and data:
        parts = [data]
        remaining = size - len(data)
        while remaining:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            parts.append(chunk)
            remaining -= len(chunk)
        data = b"".join(parts)
    return data


@lru_cache(maxsize=4096)
def _representation_headers(
    content_type: str,
    encoding: str | None,
    etag: str,
    last_modified: int,
    cache_control: str | None,
    vary: bool,
) -> HeaderBlock:
    """The fields of a 200 or 206 for one version of a file, checked once per version."""
    fields = [("Content-Type", content_type)]
    if encoding is not None:
        fields.append(("Content-Encoding", encoding))
    fields.append(("ETag", etag))
    fields.append(("Last-Modified", _last_modified(last_modified)))
    # RFC 9110 §14.3: "A server that supports range requests MAY send Accept-Ranges: bytes".
    fields.append(("Accept-Ranges", "bytes"))
    if cache_control is not None:
        fields.append(("Cache-Control", cache_control))
    if vary:
        fields.append(("Vary", "Accept-Encoding"))
    return HeaderBlock(fields)


class Prepared:
    """A plain ``200`` for one cached version of a file, ready to be given again.

    What :meth:`FileResponder.respond` answers to a GET or HEAD of that version without a
    conditional or ``Range`` header: ``headers`` are those fields, and the body is
    ``entry.data`` as long as the cache holds it (see :class:`~._cache.CachedFile`).
    """

    __slots__ = ("entry", "headers")

    def __init__(self, headers: HeaderBlock, entry: CachedFile) -> None:
        self.headers = headers
        self.entry = entry


#: Request fields that make :meth:`FileResponder.respond` answer other than a plain 200.
PLAIN_BLOCKERS: Final = frozenset(
    {"if-match", "if-unmodified-since", "if-none-match", "if-modified-since", "range", "if-range"}
)


class FileResponder:
    """Builds file responses; shared by :class:`DirServer` and :class:`FileServer`.

    Args:
        cache: where small files' contents are kept.
        max_file_bytes: files up to this size are served from memory, larger ones with
            ``os.sendfile``.
        cache_control: the ``Cache-Control`` value, or ``None`` to send none.
    """

    __slots__ = ("cache", "cache_control", "max_file_bytes")

    def __init__(self, cache: FileCache, max_file_bytes: int, cache_control: str | None) -> None:
        self.cache = cache
        self.max_file_bytes = max_file_bytes
        self.cache_control = cache_control

    def respond(
        self,
        req: Request,
        resp: Response,
        variant: Variant,
        content_type: str,
        *,
        vary: bool,
    ) -> bool:
        """Fill ``resp`` for a GET or HEAD of ``variant``.

        Returns:
            ``False`` (and ``resp`` untouched) when the file vanished or changed identity
            since it was resolved; ``True`` otherwise.

        Raises:
            Exhausted: the file could not be opened or read for lack of resources
                (``resp`` untouched).
        """
        path = variant.path
        st = variant.st
        encoding = variant.encoding
        etag, last_modified = _validators(st, encoding)

        get_header = req.get_header
        if_match = get_header("if-match")
        if_unmodified_since = get_header("if-unmodified-since")
        if_none_match = get_header("if-none-match")
        if_modified_since = get_header("if-modified-since")
        if (
            if_match is None
            and if_unmodified_since is None
            and if_none_match is None
            and if_modified_since is None
        ):
            evaluation = Evaluation.PROCEED
        else:
            evaluation = evaluate_preconditions(
                if_match=if_match,
                if_unmodified_since=if_unmodified_since,
                if_none_match=if_none_match,
                if_modified_since=if_modified_since,
                etag=etag,
                last_modified=last_modified,
            )
        if evaluation is Evaluation.NOT_MODIFIED:
            # RFC 9110 §15.4.5: "The server generating a 304 response MUST generate any of
            # the following header fields that would have been sent in a 200 (OK) response
            # to the same request: Content-Location, Date, ETag, and Vary; Cache-Control
            # and Expires". No content: the server frames a 304 without a body.
            resp.status = 304
            resp.add_header("ETag", etag)
            resp.add_header("Last-Modified", _last_modified(last_modified))
            self._add_caching(resp, vary)
            return True
        if evaluation is Evaluation.PRECONDITION_FAILED:
            resp.status = 412
            resp.add_header("ETag", etag)
            self._add_caching(resp, vary)
            return True

        # The body: cached bytes, freshly read bytes, or a file the server opens to send.
        data: bytes | None = None
        if st.st_size <= self.max_file_bytes:
            data = self.cache.get(path, st)
        if data is None:
            opened = _open(path, st)
            if opened is None:
                return False
            fd, fresh = opened
            try:
                if fingerprint(fresh) != fingerprint(st):
                    st = fresh
                    etag, last_modified = _validators(st, encoding)
                if st.st_size <= self.max_file_bytes:
                    try:
                        data = _read(fd, st.st_size)
                    except OSError as exc:
                        raise_if_exhausted(exc, "read", path)
                        return False
                    self.cache.put(path, st, data)
            finally:
                os.close(fd)  # a large file is opened again when its turn to be sent comes
        size = st.st_size if data is None else len(data)

        start, end = 0, size - 1
        partial = False
        range_header = get_header("range")
        # RFC 9110 §14.2: "A server MUST ignore a Range header field received with a
        # request method that is unrecognized or for which range handling is not
        # defined. For this specification, GET is the only method for which range
        # handling is defined." §13.1.5: If-Range without Range is ignored likewise.
        if range_header is not None and req.method == "GET":
            if_range = get_header("if-range")
            if if_range is None or if_range_allows(if_range, etag=etag, last_modified=last_modified):
                result = parse_range(range_header, size)
                if result.kind is RangeKind.UNSATISFIABLE:
                    # §15.5.17: "When this status code is generated in response to a
                    # byte-range request, the sender SHOULD generate a Content-Range
                    # header field specifying the current length of the selected
                    # representation", i.e. "bytes */<length>" (§14.4).
                    resp.status = 416
                    resp.add_header("Content-Range", f"bytes */{size}")
                    resp.add_header("Accept-Ranges", "bytes")
                    self._add_caching(resp, vary)
                    return True
                if result.kind is RangeKind.SINGLE:
                    start, end = result.start, result.end
                    partial = True

        resp.status = 206 if partial else 200
        resp.add_headers(
            _representation_headers(content_type, encoding, etag, last_modified, self.cache_control, vary)
        )
        if partial:
            # §14.4: Content-Range = range-unit SP ( range-resp / unsatisfied-range );
            # range-resp = incl-range "/" ( complete-length / "*" )
            resp.add_header("Content-Range", f"bytes {start}-{end}/{size}")
        if data is not None:
            resp.set_body(memoryview(data)[start : end + 1] if partial else data)
        else:
            resp.set_file_opener(_Opener(path, fingerprint(st)), start, end + 1 - start)
        return True

    def prepared(self, variant: Variant, content_type: str, *, vary: bool) -> Prepared | None:
        """The plain ``200`` for ``variant`` if its contents are cached at that version.

        Giving ``prepared.headers`` and ``prepared.entry.data`` (while not ``None``) answers
        exactly as :meth:`respond` would, for a GET or HEAD with none of
        :data:`PLAIN_BLOCKERS`, as long as the file is still at ``variant.st``'s version.
        """
        st = variant.st
        if st.st_size > self.max_file_bytes:
            return None
        entry = self.cache.entry(variant.path, st)
        if entry is None:
            return None
        etag, last_modified = _validators(st, variant.encoding)
        return Prepared(
            _representation_headers(
                content_type, variant.encoding, etag, last_modified, self.cache_control, vary
            ),
            entry,
        )

    def _add_caching(self, resp: Response, vary: bool) -> None:
        if self.cache_control is not None:
            resp.add_header("Cache-Control", self.cache_control)
        if vary:
            # RFC 9110 §12.5.5: "An origin server SHOULD send a Vary header field when its
            # algorithm for selecting a representation varies based on aspects of the
            # request message other than the method and target URI".
            resp.add_header("Vary", "Accept-Encoding")
