"""The exceptions Peregrine raises, and whose fault each one is.

Everything descends from :class:`PeregrineError`. A :class:`RemoteProtocolError` means the
peer misbehaved and carries the HTTP status to answer with; a :class:`LocalProtocolError`
means the caller (a handler) asked for something illegal; :class:`ConfigError` is a bad
setting and :class:`PluginError` a missing, broken or duplicate plugin.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "LocalProtocolError",
    "PeregrineError",
    "PluginError",
    "RemoteProtocolError",
]


class PeregrineError(Exception):
    """Base class of every exception raised by Peregrine."""


class LocalProtocolError(PeregrineError, ValueError):
    """The local side (a handler) asked for something HTTP forbids: a bug in the caller."""


class RemoteProtocolError(PeregrineError):
    """The peer sent something illegal.

    Attributes:
        status_hint: the HTTP status code the server answers with (400, 408, 413, 414,
            431, 501 or 505).
    """

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class ConfigError(PeregrineError, ValueError):
    """A configuration value is invalid."""


class PluginError(PeregrineError):
    """A plugin that was asked for is missing, broken or claimed twice."""
