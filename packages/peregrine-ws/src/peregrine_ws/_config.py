"""``WebSocketConfig`` and ``DeflateConfig``: every knob of peregrine-ws, validated once.

Both are frozen, keyword-only dataclasses that check their fields in ``__post_init__`` and
raise :class:`peregrine_core.ConfigError` naming the field and the accepted range. They do
no I/O. Durations are in seconds, sizes in bytes; ``None`` disables a timer or a limit
where the field's type allows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from peregrine_core import ConfigError

__all__ = ["DeflateConfig", "WebSocketConfig"]

_MIB: Final = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class DeflateConfig:
    """permessage-deflate (RFC 7692) settings, passed to :func:`peregrine_ws.upgrade`.

    Memory per connection, once it has compressed (or inflated) a message, is what zlib
    allocates: the compressor takes ``2**(server_max_window_bits + 2) + 2**(mem_level + 9)``
    bytes plus about 6 KiB, the decompressor ``2**client_window`` bytes plus about 7 KiB,
    where ``client_window`` is ``client_max_window_bits`` if the client allowed it to be
    restricted and 15 otherwise. Measured with the defaults (12, 12, 5): 38 KiB + 11 KiB
    (39 KiB when the client's window cannot be limited), against 262 KiB + 39 KiB with
    zlib's own defaults. A side without context takeover frees its zlib object after
    every message, so an idle connection then holds none.
    """

    server_max_window_bits: int = 12
    """LZ77 window of what the server compresses, 9..15 (zlib cannot compress with 8)."""
    client_max_window_bits: int = 12
    """Window the client is asked to use, 8..15, when its offer allows a limit."""
    server_no_context_takeover: bool = False
    """Compress every message on its own (always granted when the client asks for it)."""
    client_no_context_takeover: bool = False
    """Ask the client to compress every message on its own."""
    mem_level: int = 5
    """zlib ``memLevel`` of the compressor, 1..9: memory against speed and ratio."""
    level: int = 6
    """zlib compression level, 0..9."""
    min_bytes: int = 32
    """Messages shorter than this are sent uncompressed (deflate would only grow them)."""

    def __post_init__(self) -> None:
        _check_int("server_max_window_bits", self.server_max_window_bits, 9, 15)
        _check_int("client_max_window_bits", self.client_max_window_bits, 8, 15)
        _check_int("mem_level", self.mem_level, 1, 9)
        _check_int("level", self.level, 0, 9)
        _check_int("min_bytes", self.min_bytes, 0, None)
        for name in ("server_no_context_takeover", "client_no_context_takeover"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, not {getattr(self, name)!r}")


@dataclass(frozen=True, kw_only=True)
class WebSocketConfig:
    """Runtime settings of the WebSocket threads and connections.

    A handler exposes one as its ``websocket_config`` attribute; without it the defaults
    apply. See the package README for the reasoning behind each default.

    Raises:
        ConfigError: a field has the wrong type or is out of range.
    """

    threads: int = 1
    """WebSocket threads; each owns a poller and the connections handed to it."""
    max_message_bytes: int | None = _MIB
    """Largest message accepted (after decompression); larger closes with 1009."""
    read_buffer_bytes: int = 65_536
    """Bytes asked for by each ``recv``."""
    max_send_queue_bytes: int = _MIB
    """High-water mark of a connection's outgoing queue; sends beyond it raise
    :class:`~peregrine_ws.BackpressureError` and reading from the peer pauses."""
    write_timeout: float = 30.0
    """How long the queue may stay above the high-water mark before closing with 1008."""
    ping_interval: float | None = 20.0
    """Seconds between keepalive pings; ``None`` sends none."""
    ping_timeout: float | None = 20.0
    """Seconds to wait for the pong; ``None`` waits forever. A missing pong closes with 1011."""
    close_timeout: float = 5.0
    """Seconds the closing handshake may take before the TCP connection is dropped."""

    def __post_init__(self) -> None:
        _check_int("threads", self.threads, 1, 256)
        if self.max_message_bytes is not None:
            _check_int("max_message_bytes", self.max_message_bytes, 1, None)
        _check_int("read_buffer_bytes", self.read_buffer_bytes, 1024, None)
        _check_int("max_send_queue_bytes", self.max_send_queue_bytes, 1, None)
        _check_seconds("write_timeout", self.write_timeout, optional=False)
        _check_seconds("ping_interval", self.ping_interval, optional=True)
        _check_seconds("ping_timeout", self.ping_timeout, optional=True)
        _check_seconds("close_timeout", self.close_timeout, optional=False)


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        accepted = f"{low}..{high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be an integer, {accepted}, not {value!r}")


def _check_seconds(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or not math.isfinite(value)
    ):
        extra = " (None disables it)" if optional else ""
        raise ConfigError(f"{name} must be a positive number of seconds{extra}, not {value!r}")
