"""The fileserver example: every request gets one page, served by
:class:`~peregrine_static.FileServer`.

The page is the original's ``example.html`` (``<html><body><h1>Hello!</h1></body></html>``,
no trailing newline). It ships inside the package, in ``static/fileserver/`` next to this
module, and is found from this module's own location (never from the current directory).
Run it with ``python -m peregrine_examples.fileserver`` or ``peregrine-fileserver``.

Every path gets the page. Unlike the original, the answer carries
``Content-Type: text/html; charset=utf-8``, an ``ETag`` and ``Last-Modified`` (a reload is a
cheap ``304``), an edit of the file on disk is served at once, and a method other than
``GET``/``HEAD`` gets ``405 Method Not Allowed``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from peregrine_static import FileServer

from ._run import run

__all__ = ["CONTENT_TYPE", "PAGE", "main", "make_handler"]

#: The page every request gets, inside the installed package.
PAGE: Final = Path(__file__).resolve().parent / "static" / "fileserver" / "example.html"
CONTENT_TYPE: Final = "text/html; charset=utf-8"


def make_handler() -> FileServer:
    """The example's handler: a ``FileServer`` for :data:`PAGE`, whatever the path.

    Raises:
        ConfigError: the page is missing (a broken installation).
    """
    return FileServer(PAGE, content_type=CONTENT_TYPE)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the page until interrupted; return the exit status."""
    return run(make_handler(), "Peregrine fileserver example: one page for every request", argv)


if __name__ == "__main__":
    sys.exit(main())
