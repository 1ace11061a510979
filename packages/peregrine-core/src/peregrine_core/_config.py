"""``ServerConfig``: every knob of the server, validated once, with documented defaults.

The dataclass is frozen and keyword-only; ``__post_init__`` checks every field and raises
:class:`~peregrine_core.ConfigError` naming the field and the accepted range. It does no IO:
clamping against the process's file limit happens when the server starts.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields
from typing import Final, Literal

from ._errors import ConfigError

__all__ = ["PollerName", "ServerConfig", "resolve_processes", "resolve_workers"]

PollerName = Literal["auto", "epoll", "kqueue", "poll", "select"]
_POLLERS: Final = ("auto", "epoll", "kqueue", "poll", "select")


def gil_enabled() -> bool:
    """Whether this interpreter runs with a GIL (always true before 3.13)."""
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def resolve_workers(workers: int | Literal["auto"]) -> int:
    """Turn the ``workers`` setting into a thread count.

    ``auto`` means one worker thread on a GIL build (extra threads cost throughput and tail
    latency there; processes scale instead) and one per CPU on a free-threaded build.
    """
    if workers == "auto":
        return 1 if gil_enabled() else max(1, os.cpu_count() or 1)
    return workers


def resolve_processes(processes: int | Literal["auto"]) -> int:
    """Turn the ``processes`` setting into a process count.

    ``auto`` means one process per CPU on a GIL build (processes are how CPython uses many
    cores) and a single process on a free-threaded build (its threads scale instead).
    """
    if processes == "auto":
        return max(1, os.cpu_count() or 1) if gil_enabled() else 1
    return processes


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Configuration of a :class:`~peregrine_core.Server`.

    Durations are in seconds, sizes in bytes. Every default is chosen for a server exposed
    to the internet without a proxy in front of it; the README's configuration reference
    gives the reason for each.

    Raises:
        ConfigError: a field has the wrong type or is out of range.
    """

    workers: int | Literal["auto"] = "auto"
    """Worker threads per process; ``auto``: 1 on GIL builds, one per CPU on free-threaded."""
    handler_threads: int = 32
    """Most handler calls running at once per worker; a call that blocks longer than
    ``handoff_delay`` moves off the worker's loop to a thread of its own."""
    handler_queue: int = 128
    """Requests waiting for a free handler thread, per worker; beyond, ``503`` with
    ``Retry-After``."""
    handoff_delay: float = 0.002
    """How long a handler call may hold a worker's loop before another thread takes the
    loop over (the call goes on where it is)."""
    processes: int | Literal["auto"] = 1
    """Server processes; ``auto``: one per CPU on GIL builds, 1 on free-threaded builds."""
    reuse_port: bool = False
    """With several processes, give each its own ``SO_REUSEPORT`` listener (Linux) instead of
    sharing one listening socket."""
    accept_threads: int = 1
    """Threads accepting connections (the one calling ``start()`` counts as the first)."""
    backlog: int = 2048
    """Length of the kernel's queue of connections not yet accepted."""
    tcp_nodelay: bool = True
    """Disable Nagle's algorithm on every accepted socket (responses go out at once)."""
    keepalive_timeout: float = 75.0
    """Idle time after which a keep-alive connection is closed (longer than common proxies' 60 s)."""
    max_requests_per_connection: int = 10_000
    """Requests served on one connection; the last one is answered with ``Connection: close``."""
    read_buffer_size: int = 65_536
    """Bytes asked for by each ``recv``."""
    max_request_line_bytes: int = 8_192
    """Longest request line accepted; longer gets 414."""
    max_header_bytes: int = 32_768
    """Largest header section (request line included); larger gets 431."""
    max_header_count: int = 100
    """Most header fields in one request; more gets 431."""
    max_body_bytes: int = 1_048_576
    """Largest request body; larger gets 413 before it is read."""
    body_buffer_bytes: int = 1_048_576
    """Largest request body kept in memory while it arrives; a larger one (up to
    ``max_body_bytes``) goes to an anonymous temporary file, removed when the request ends."""
    header_timeout: float = 10.0
    """Absolute time allowed for a request's head once its first byte arrived (slowloris); 408."""
    body_timeout: float = 30.0
    """Absolute time allowed for a request's body once its head arrived; 408."""
    write_timeout: float = 30.0
    """Time a response may make no progress (a client that stopped reading) before the close."""
    graceful_timeout: float = 30.0
    """How long shutdown waits for in-flight requests before closing what remains."""
    max_connections: int = 10_000
    """Open connections per process; beyond it accepting pauses until one closes."""
    max_pipelined_requests: int = 32
    """Pipelined requests answered before their responses must be flushed; reading pauses."""
    access_log: bool = False
    """Log one line per request to the ``peregrine_core.access`` logger."""
    poller: PollerName = "auto"
    """I/O readiness mechanism: ``auto`` picks epoll, then kqueue, then poll, then select."""

    def __post_init__(self) -> None:
        if not (self.workers == "auto" or _is_int(self.workers)):
            raise ConfigError(f"workers must be a positive integer or 'auto', not {self.workers!r}")
        if not (self.processes == "auto" or _is_int(self.processes)):
            raise ConfigError(f"processes must be a positive integer or 'auto', not {self.processes!r}")
        if isinstance(self.processes, int) and self.processes > 256:
            raise ConfigError(f"processes must be at most 256, not {self.processes}")
        if self.poller not in _POLLERS:
            raise ConfigError(f"poller must be one of {', '.join(_POLLERS)}, not {self.poller!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("workers", "processes", "poller"):
                continue
            if f.type == "bool":
                if not isinstance(value, bool):
                    raise ConfigError(f"{f.name} must be true or false, not {value!r}")
            elif f.type == "int":
                if not _is_int(value):
                    raise ConfigError(f"{f.name} must be a positive integer, not {value!r}")
            elif f.type == "float":
                if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                    raise ConfigError(f"{f.name} must be a positive number of seconds, not {value!r}")
        if isinstance(self.workers, int) and self.workers > 1024:
            raise ConfigError(f"workers must be at most 1024, not {self.workers}")
        if self.handler_threads > 4096:
            raise ConfigError(f"handler_threads must be at most 4096, not {self.handler_threads}")
        if self.handoff_delay > 1.0:
            raise ConfigError(f"handoff_delay must be at most 1 second, not {self.handoff_delay!r}")
        if self.accept_threads > 64:
            raise ConfigError(f"accept_threads must be at most 64, not {self.accept_threads}")
        if self.read_buffer_size < 1024:
            raise ConfigError(f"read_buffer_size must be at least 1024, not {self.read_buffer_size}")
        if self.max_request_line_bytes < 64:
            raise ConfigError(
                f"max_request_line_bytes must be at least 64, not {self.max_request_line_bytes}"
            )
        if self.max_header_bytes < self.max_request_line_bytes:
            raise ConfigError(
                f"max_header_bytes ({self.max_header_bytes}) must be at least "
                f"max_request_line_bytes ({self.max_request_line_bytes})"
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
