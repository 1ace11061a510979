"""``python -m peregrine_core``: the same as the ``peregrine`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
