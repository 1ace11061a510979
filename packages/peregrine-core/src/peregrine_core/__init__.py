"""Peregrine: an event-driven HTTP/1.0 and HTTP/1.1 server in pure Python.

Write a handler class with ``handle_request(self, req, resp)`` and run it::

    from peregrine_core import Server

    class Hello:
        def handle_request(self, req, resp):
            resp.add_header("Content-Type", "text/plain")
            resp.set_body("hello\\n")

    Server(Hello, port=3000).start()
"""

from __future__ import annotations

from .__about__ import __version__
from ._config import ServerConfig
from ._errors import (
    ConfigError,
    LocalProtocolError,
    PeregrineError,
    PluginError,
    RemoteProtocolError,
)
from ._handler import Handler
from ._request import Request
from ._response import FileBody, HeaderBlock, Response
from ._server import Server
from ._status import Status
from ._stream import BodyWriter, ClientDisconnected

__all__ = [
    "BodyWriter",
    "ClientDisconnected",
    "ConfigError",
    "FileBody",
    "Handler",
    "HeaderBlock",
    "LocalProtocolError",
    "PeregrineError",
    "PluginError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "Server",
    "ServerConfig",
    "Status",
    "__version__",
]
