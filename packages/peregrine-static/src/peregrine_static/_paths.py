"""From a raw request path to a file inside the root, or to nothing.

Two steps, kept apart so the first needs no IO and can be tested from string literals:

1. :func:`split_path` turns the raw path (after the URL prefix, before ``?``) into segments.
   It percent-decodes exactly once and refuses, rather than repairs, anything suspicious:
   a malformed escape, an encoded ``/`` (``%2f``), invalid UTF-8, a backslash, NUL or any
   other control character, a ``..`` segment (raw or decoded, ``%2e%2e``), and on Windows a
   ``:`` (drive letters, alternate streams). Empty and ``.`` segments are dropped, so ``//``
   and ``/./`` collapse. Hidden (dot) segments are refused unless allowed.
2. :func:`resolve` walks the segments below the root with one ``lstat`` each. A symbolic link
   met on the way is refused under the ``never`` policy; under ``inside`` it is resolved with
   ``realpath`` and kept only if its target is the root or below it, and the walk carries on
   from the target. The result is a path free of symbolic links, inside the root, with the
   ``stat`` of what it names.

Invariants: a path that comes out of :func:`resolve` is ``root`` or starts with
``root + os.sep`` and contains no symbolic link (as of the walk; the opener re-checks the
inode after ``open``, closing the race). Every refusal is ``None``: the caller cannot tell,
and so cannot reveal, *why* a path was refused: "missing" and "outside the root" must look
the same (aiohttp 3.13 leaked static path components by answering them differently).
The one exception is a failure for lack of resources (``EMFILE``, ``ENOMEM``...), which says
nothing about the path: it raises :class:`~._resources.Exhausted` instead of refusing.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Final, Literal
from urllib.parse import unquote_to_bytes

from ._resources import raise_if_exhausted

__all__ = ["SymlinkPolicy", "is_inside", "resolve", "resolve_leaf", "split_path"]

SymlinkPolicy = Literal["inside", "never"]

#: ``%`` not followed by two hex digits (RFC 3986 §2.1 pct-encoded = "%" HEXDIG HEXDIG).
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: An encoded slash: a ``/`` inside a segment can never name a file (CVE-2017-16762, CVE-2024-23334).
_ENCODED_SLASH: Final = re.compile(r"%2[fF]")
#: Characters refused in a decoded path: C0 controls (NUL included), DEL and the backslash.
_FORBIDDEN: Final = re.compile(r"[\x00-\x1f\x7f\\]")
_FORBIDDEN_WINDOWS: Final = re.compile(r"[\x00-\x1f\x7f\\:]")


def split_path(raw: str, *, allow_hidden: bool) -> tuple[list[str], bool] | None:
    """Decode and split a raw URL path below the prefix.

    Args:
        raw: the request path after the URL prefix, still percent-encoded, without the query.
        allow_hidden: accept segments that start with a dot (never ``..``).

    Returns:
        ``(segments, trailing_slash)``, or ``None`` when the path is refused. ``segments`` are
        decoded, non-empty and never ``.`` or ``..``; ``trailing_slash`` says whether the
        path ended with ``/`` or ``/.`` (an empty path counts as ending with one).
    """
    if "%" in raw:
        if _BAD_ESCAPE.search(raw) is not None or _ENCODED_SLASH.search(raw) is not None:
            return None
        try:
            # The codec hands us the target as ISO-8859-1 text: each char is one byte.
            path = unquote_to_bytes(raw.encode("latin-1")).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return None
    elif not raw.isascii():
        try:
            path = raw.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return None
    else:
        path = raw
    forbidden = _FORBIDDEN_WINDOWS if os.name == "nt" else _FORBIDDEN
    if forbidden.search(path) is not None:
        return None
    segments = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        # RFC 3986 §5.2.4 would remove dot segments; browsers do so before sending, so a
        # ``..`` that reaches us is a probe: refuse it instead of resolving it.
        if segment[0] == "." and (segment == ".." or not allow_hidden):
            return None
        segments.append(segment)
    # "a/" and "a/." both name the directory "a" (RFC 3986 §5.2.4 keeps the final slash).
    return segments, path.rpartition("/")[2] in ("", ".")


def is_inside(path: str, root: str) -> bool:
    """Whether ``path`` (absolute, normalised) is ``root`` or below it."""
    return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)


def resolve_leaf(path: str, root: str, policy: SymlinkPolicy) -> tuple[str, os.stat_result] | None:
    """``lstat`` one path whose parent is known to be safe; follow a symbolic link per policy.

    Returns:
        ``(real_path, stat)`` with ``real_path`` inside ``root`` and free of symbolic links,
        or ``None`` (missing, unreadable, a refused link, or a link leading outside).

    Raises:
        Exhausted: a system call failed for lack of resources.
    """
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if policy == "never":
                return None
            # strict: a component that cannot be looked at raises, rather than being
            # taken for a plain name (which would hide a link inside the result).
            path = os.path.realpath(path, strict=True)
            if not is_inside(path, root):
                return None
            st = os.stat(path)
    except OSError as exc:
        raise_if_exhausted(exc, "stat", path)
        return None
    except ValueError:
        return None
    return path, st


def resolve(root: str, segments: list[str], policy: SymlinkPolicy) -> tuple[str, os.stat_result] | None:
    """Walk ``segments`` below ``root`` (a real path) and return what they name.

    Returns:
        ``(real_path, stat)`` as :func:`resolve_leaf` does, or ``None``. Every intermediate
        component must be a directory.

    Raises:
        Exhausted: a system call failed for lack of resources.
    """
    path = root
    st: os.stat_result | None = None
    for segment in segments:
        if st is not None and not stat.S_ISDIR(st.st_mode):
            return None
        found = resolve_leaf(os.path.join(path, segment), root, policy)
        if found is None:
            return None
        path, st = found
    if st is None:
        try:
            st = os.stat(root)
        except OSError as exc:
            raise_if_exhausted(exc, "stat", root)
            return None
    return path, st
