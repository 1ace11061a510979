"""Every poller backend: readiness, write interest, the waker, and blocking without spinning."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from peregrine_core import ConfigError
from peregrine_core.poller import READ, WRITE, Waker, available_pollers, make_poller


def test_readable_writable_and_modify(poller_name: str) -> None:
    poller = make_poller(poller_name)
    a, b = socket.socketpair()
    try:
        poller.register(a.fileno(), READ)
        assert poller.poll(0) == []
        b.send(b"x")
        assert poller.poll(1.0) == [(a.fileno(), READ)]
        poller.modify(a.fileno(), WRITE)
        events = dict(poller.poll(1.0))
        assert events[a.fileno()] & WRITE
        poller.unregister(a.fileno())
        poller.unregister(a.fileno())  # twice is harmless
        assert poller.poll(0) == []
    finally:
        poller.close()
        a.close()
        b.close()


def test_hang_up_is_reported(poller_name: str) -> None:
    poller = make_poller(poller_name)
    a, b = socket.socketpair()
    try:
        poller.register(a.fileno(), READ)
        b.close()
        events = poller.poll(1.0)
        assert events and events[0][0] == a.fileno()
    finally:
        poller.close()
        a.close()


def test_poll_blocks_until_the_waker_fires(poller_name: str) -> None:
    poller = make_poller(poller_name)
    waker = Waker()
    try:
        poller.register(waker.fileno(), READ)
        threading.Timer(0.3, waker.wake).start()
        started = time.monotonic()
        cpu = time.process_time()
        events = poller.poll(None)
        assert events == [(waker.fileno(), READ)]
        assert 0.25 < time.monotonic() - started < 2.0
        assert time.process_time() - cpu < 0.1
        waker.drain()
        assert poller.poll(0) == []
    finally:
        poller.close()
        waker.close()


def test_timeout_is_honoured(poller_name: str) -> None:
    poller = make_poller(poller_name)
    started = time.monotonic()
    assert poller.poll(0.2) == []
    assert 0.15 < time.monotonic() - started < 1.0
    poller.close()


def test_unknown_backend_is_a_config_error() -> None:
    missing = {"epoll", "kqueue", "poll", "select"} - set(available_pollers())
    for name in missing:
        with pytest.raises(ConfigError, match="not available"):
            make_poller(name)
    assert available_pollers()[-1] == "select"


def test_kqueue_backend_runs_where_the_platform_has_it() -> None:
    if "kqueue" not in available_pollers():
        pytest.skip("kqueue exists only on BSD and macOS; this platform's backends are tested above")
    test_readable_writable_and_modify("kqueue")
