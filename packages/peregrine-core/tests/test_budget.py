"""The connection and descriptor budget of the accept loop (``_Slots``, ``_descriptor_budget``).

A connection costs :data:`CONNECTION_UNITS` descriptor units (its socket and a file body).
``acquire`` blocks at either limit until ``release`` gives units back, ``cancel`` unblocks
it with False, and ``take`` counts without waiting. The budget is ``max_connections``
connections' worth of units, clamped to the open-file limit minus a reserve.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from peregrine_core import ServerConfig
from peregrine_core._server import CONNECTION_UNITS, RESERVED_DESCRIPTORS, _descriptor_budget, _Slots

TIMEOUT = 5.0
BLOCKED = 0.1  # how long a call must stay blocked to count as blocked


class _Acquirer:
    """``slots.acquire()`` on a thread of its own, so the test can see it block."""

    def __init__(self, slots: _Slots) -> None:
        self.result: bool | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(slots,), daemon=True)
        self._thread.start()

    def _run(self, slots: _Slots) -> None:
        self.result = slots.acquire()
        self.done.set()

    def join(self) -> None:
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()


def _fill(slots: _Slots, times: int) -> None:
    for _ in range(times):
        assert slots.acquire()


# --- _Slots -------------------------------------------------------------------------------


def test_acquire_counts_a_connection_and_its_units() -> None:
    slots = _Slots(connections=3, descriptors=100)
    assert slots.acquire()
    assert (slots.connections, slots.used) == (1, CONNECTION_UNITS)


def test_acquire_blocks_at_the_connection_limit_until_a_release() -> None:
    slots = _Slots(connections=2, descriptors=100)
    _fill(slots, 2)
    waiter = _Acquirer(slots)
    assert not waiter.done.wait(BLOCKED)
    slots.release()
    assert waiter.done.wait(TIMEOUT)
    assert waiter.result is True
    assert (slots.connections, slots.used) == (2, 2 * CONNECTION_UNITS)
    waiter.join()


def test_acquire_blocks_when_the_units_of_one_more_connection_do_not_fit() -> None:
    slots = _Slots(connections=100, descriptors=2 * CONNECTION_UNITS + 1)
    _fill(slots, 2)  # one unit left: less than a connection needs
    waiter = _Acquirer(slots)
    assert not waiter.done.wait(BLOCKED)
    slots.release()
    assert waiter.done.wait(TIMEOUT)
    assert waiter.result is True
    waiter.join()


def test_releasing_one_unit_of_an_upgraded_connection_does_not_free_a_connection() -> None:
    slots = _Slots(connections=100, descriptors=2 * CONNECTION_UNITS)
    _fill(slots, 2)
    slots.release(1, 0)  # an upgrade: no file body will be sent on it
    waiter = _Acquirer(slots)
    assert not waiter.done.wait(BLOCKED)  # one unit is free, a connection needs two
    slots.release(CONNECTION_UNITS - 1, 1)  # the plugin closes the transport
    assert waiter.done.wait(TIMEOUT)
    assert waiter.result is True
    assert (slots.connections, slots.used) == (2, 2 * CONNECTION_UNITS)
    waiter.join()


def test_cancel_unblocks_a_waiting_acquire_with_false_and_counts_nothing() -> None:
    slots = _Slots(connections=1, descriptors=100)
    _fill(slots, 1)
    waiter = _Acquirer(slots)
    assert not waiter.done.wait(BLOCKED)
    slots.cancel()
    assert waiter.done.wait(TIMEOUT)
    assert waiter.result is False
    assert (slots.connections, slots.used) == (1, CONNECTION_UNITS)
    waiter.join()


def test_cancel_unblocks_every_waiting_acquire() -> None:
    slots = _Slots(connections=1, descriptors=100)
    _fill(slots, 1)
    waiters = [_Acquirer(slots) for _ in range(4)]
    assert not any(w.done.wait(BLOCKED / 4) for w in waiters)
    slots.cancel()
    for waiter in waiters:
        assert waiter.done.wait(TIMEOUT)
        assert waiter.result is False
        waiter.join()


def test_acquire_after_cancel_returns_false_at_once_even_below_the_limit() -> None:
    slots = _Slots(connections=10, descriptors=100)
    slots.cancel()
    waiter = _Acquirer(slots)
    assert waiter.done.wait(TIMEOUT)
    assert waiter.result is False
    assert (slots.connections, slots.used) == (0, 0)
    waiter.join()


def test_take_counts_a_connection_without_waiting_even_beyond_the_limit() -> None:
    slots = _Slots(connections=1, descriptors=CONNECTION_UNITS)
    _fill(slots, 1)
    done = threading.Event()

    def take() -> None:
        slots.take()
        done.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    assert done.wait(TIMEOUT)
    thread.join(TIMEOUT)
    assert (slots.connections, slots.used) == (2, 2 * CONNECTION_UNITS)


def test_after_take_beyond_the_limit_acquire_waits_for_both_releases() -> None:
    slots = _Slots(connections=1, descriptors=100)
    _fill(slots, 1)
    slots.take()
    waiter = _Acquirer(slots)
    slots.release()
    assert not waiter.done.wait(BLOCKED)  # still one connection: at the limit
    slots.release()
    assert waiter.done.wait(TIMEOUT)
    assert waiter.result is True
    waiter.join()


# --- _descriptor_budget -------------------------------------------------------------------


def _rlimit(soft: int, hard: int) -> Callable[[int], tuple[int, int]]:
    def getrlimit(which: int) -> tuple[int, int]:
        return soft, hard

    return getrlimit


@pytest.fixture
def resource_module() -> Any:
    return pytest.importorskip("resource", reason="no resource module on this platform")


def test_budget_under_a_1024_file_limit_is_960_units_or_480_connections(
    monkeypatch: pytest.MonkeyPatch, resource_module: Any
) -> None:
    monkeypatch.setattr(resource_module, "getrlimit", _rlimit(1024, 1024))
    budget = _descriptor_budget(ServerConfig.max_connections)
    assert budget == 1024 - RESERVED_DESCRIPTORS == 960
    assert budget // CONNECTION_UNITS == 480


def test_budget_clamped_by_the_file_limit_is_logged_with_the_connections_served(
    monkeypatch: pytest.MonkeyPatch, resource_module: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(resource_module, "getrlimit", _rlimit(1024, 1024))
    with caplog.at_level(logging.INFO, logger="peregrine_core.server"):
        _descriptor_budget(ServerConfig.max_connections)
    messages = [r.getMessage() for r in caplog.records]
    assert any("serving at most 480 connections" in m for m in messages), messages


def test_budget_without_a_file_limit_is_two_units_per_connection(
    monkeypatch: pytest.MonkeyPatch, resource_module: Any
) -> None:
    infinity = resource_module.RLIM_INFINITY
    monkeypatch.setattr(resource_module, "getrlimit", _rlimit(infinity, infinity))
    assert _descriptor_budget(1000) == 2 * 1000
    assert _descriptor_budget(ServerConfig.max_connections) == 2 * ServerConfig.max_connections


def test_budget_under_a_roomy_file_limit_is_two_units_per_connection(
    monkeypatch: pytest.MonkeyPatch, resource_module: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(resource_module, "getrlimit", _rlimit(1024, 1024))
    with caplog.at_level(logging.INFO, logger="peregrine_core.server"):
        assert _descriptor_budget(100) == 200
    assert caplog.records == []


def test_budget_under_a_tiny_file_limit_keeps_a_minimum_of_16_units(
    monkeypatch: pytest.MonkeyPatch, resource_module: Any
) -> None:
    monkeypatch.setattr(resource_module, "getrlimit", _rlimit(32, 32))
    assert _descriptor_budget(100) == 16
