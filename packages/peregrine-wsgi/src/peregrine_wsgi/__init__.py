"""Run WSGI (PEP 3333) applications, such as Flask and Django, on the Peregrine server.

::

    from peregrine_core import Server
    from peregrine_wsgi import WSGIHandler

    from myproject.wsgi import application

    Server(WSGIHandler(application), port=8000).start()

or from the command line: ``peregrine wsgi myproject.wsgi:application`` (or
``python -m peregrine_wsgi myproject.wsgi:application --root-path /app``).
"""

from __future__ import annotations

from .__about__ import __version__
from ._cli import load_app, make_handler
from ._environ import ErrorStream
from ._file_wrapper import DEFAULT_BLOCK_BYTES, FileWrapper
from ._handler import HOP_BY_HOP, WSGIApp, WSGIHandler

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "HOP_BY_HOP",
    "ErrorStream",
    "FileWrapper",
    "WSGIApp",
    "WSGIHandler",
    "__version__",
    "load_app",
    "make_handler",
]
