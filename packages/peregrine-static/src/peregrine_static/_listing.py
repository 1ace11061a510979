"""The HTML page listing a directory (off unless asked for).

Invariants (CVE-2024-27306): every name is written into the page through ``html.escape``
(quotes included) and every link through ``urllib.parse.quote`` then ``html.escape``, so a
file called ``<img src=x onerror=alert(1)>.txt`` is text, never markup. Entries the server
would refuse to serve are not listed: hidden names unless allowed, names that are not UTF-8,
names holding characters no request path can carry, and symbolic links the policy forbids
or that lead outside the root. A listing is whole or not given: a failure for lack of
resources, even on one entry, raises :class:`~._resources.Exhausted` (a listing with
entries silently missing would look right).
"""

from __future__ import annotations

import html
import os
import re
from typing import Final
from urllib.parse import quote

from ._paths import SymlinkPolicy, is_inside
from ._resources import raise_if_exhausted

__all__ = ["render_listing"]

_UNSERVABLE: Final = re.compile(r"[\x00-\x1f\x7f\\\ud800-\udfff]")


def _entries(
    directory: str, root: str, *, show_hidden: bool, policy: SymlinkPolicy
) -> list[tuple[str, bool]]:
    entries = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                name = entry.name
                if (name[0] == "." and not show_hidden) or _UNSERVABLE.search(name) is not None:
                    continue
                try:
                    if entry.is_symlink():
                        if policy == "never":
                            continue
                        if not is_inside(os.path.realpath(entry.path, strict=True), root):
                            continue
                    is_dir = entry.is_dir()
                    if not is_dir and not entry.is_file():
                        continue  # sockets, FIFOs, devices
                except OSError as exc:
                    raise_if_exhausted(exc, "stat", entry.path)
                    continue  # dangling links, loops, entries gone meanwhile
                entries.append((name, is_dir))
    except OSError as exc:
        raise_if_exhausted(exc, "list", directory)
        raise
    # Directories first, then files, each by name.
    entries.sort(key=lambda item: (not item[1], item[0]))
    return entries


def render_listing(
    directory: str,
    root: str,
    url_path: str,
    *,
    show_hidden: bool,
    policy: SymlinkPolicy,
    with_parent: bool,
) -> bytes:
    """Render the listing of ``directory`` as a UTF-8 HTML page.

    Args:
        directory: the real path of the directory.
        root: the real path of the served root (links leading outside are left out).
        url_path: the decoded URL path of the directory, shown as the title.
        show_hidden: list names starting with a dot.
        policy: the symbolic link policy of the server.
        with_parent: add a ``../`` link (not at the top of the served tree).

    Raises:
        Exhausted: the directory or an entry could not be read for lack of resources.
        OSError: the directory cannot be read for another reason.
    """
    title = html.escape(f"Index of {url_path}", quote=True)
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title></head>",
        f"<body><h1>{title}</h1>",
        "<ul>",
    ]
    if with_parent:
        lines.append('<li><a href="../">../</a></li>')
    for name, is_dir in _entries(directory, root, show_hidden=show_hidden, policy=policy):
        slash = "/" if is_dir else ""
        # "./" keeps a name such as "a:b" from being read as a URL with a scheme.
        href = html.escape("./" + quote(name, safe="") + slash, quote=True)
        text = html.escape(name + slash, quote=True)
        lines.append(f'<li><a href="{href}">{text}</a></li>')
    lines.append("</ul></body></html>\n")
    return "\n".join(lines).encode("utf-8")
