"""A fast, safe static file server for Peregrine: ``DirServer`` and ``FileServer``.

Serve a directory as the whole application::

    from peregrine_core import Server
    from peregrine_static import DirServer

    Server(DirServer("public"), port=8000).start()

or from inside your own handler, falling through when no file matches::

    class App:
        def __init__(self):
            self.files = DirServer("public", url_prefix="/static/")

        def handle_request(self, req, resp):
            if self.files.serve(req, resp):
                return
            ...  # your own routes
"""

from __future__ import annotations

from .__about__ import __version__
from ._common import (
    DEFAULT_CACHE_BUDGET_BYTES,
    DEFAULT_CACHE_CONTROL,
    DEFAULT_CACHE_MAX_FILE_BYTES,
)
from ._dir_server import DirServer
from ._file_server import FileServer
from ._mime import MIME_TYPES, content_type_for
from ._paths import SymlinkPolicy

__all__ = [
    "DEFAULT_CACHE_BUDGET_BYTES",
    "DEFAULT_CACHE_CONTROL",
    "DEFAULT_CACHE_MAX_FILE_BYTES",
    "MIME_TYPES",
    "DirServer",
    "FileServer",
    "SymlinkPolicy",
    "__version__",
    "content_type_for",
]
