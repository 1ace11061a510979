"""The dirserver example: a small site served by :class:`~peregrine_static.DirServer` at ``/``.

The site is the original's: ``index.html`` linking ``css/main.css`` (a dark theme),
``css/another.css`` (a grey heading), ``js/main.js`` and ``js/more.js`` (each logs to the
console and marks ``<body>`` with a ``data-`` attribute, and ``main.js`` writes the computed
colours there too, so that a browser test can see every asset arrive and take effect).

The files ship inside the package, in ``static/dirserver/`` next to this module, and are found
from this module's own location (never from the current directory), so the example runs from
anywhere, installed or not. Run it with ``python -m peregrine_examples.dirserver`` or
``peregrine-dirserver`` and open ``http://localhost:3000/``.

Unlike the original's ``DirServer``, every answer carries a ``Content-Type`` with a charset,
an ``ETag`` and ``Last-Modified`` (a reload is a cheap ``304``), the query string is ignored
(``/js/main.js?v=2`` serves ``js/main.js``), a missing file is a real ``404`` and a method
other than ``GET``/``HEAD`` on a file is ``405``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from peregrine_static import DirServer

from ._run import run

__all__ = ["STATIC_DIR", "main", "make_handler"]

#: The example's site, inside the installed package.
STATIC_DIR: Final = Path(__file__).resolve().parent / "static" / "dirserver"


def make_handler() -> DirServer:
    """The example's handler: a ``DirServer`` over :data:`STATIC_DIR`, mounted at ``/``.

    Raises:
        ConfigError: the site's folder is missing (a broken installation).
    """
    return DirServer(STATIC_DIR, url_prefix="/")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the site until interrupted; return the exit status."""
    return run(make_handler(), "Peregrine dirserver example: a static site served by DirServer", argv)


if __name__ == "__main__":
    sys.exit(main())
