"""``python -m peregrine_static [DIR]``: serve a directory, like ``python -m http.server``."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
