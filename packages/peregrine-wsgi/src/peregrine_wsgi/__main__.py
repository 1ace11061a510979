"""``python -m peregrine_wsgi APP``: serve a WSGI application (see ``_cli``)."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
