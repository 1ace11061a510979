"""Runnable examples for Peregrine: ``python -m peregrine_examples.NAME [--host H] [--port P]``."""

from __future__ import annotations

from .__about__ import __version__

__all__ = ["__version__"]
