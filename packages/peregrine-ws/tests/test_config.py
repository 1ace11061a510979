"""WebSocketConfig and DeflateConfig validate every field."""

from __future__ import annotations

import dataclasses

import pytest

from peregrine_core import ConfigError
from peregrine_ws import DeflateConfig, WebSocketConfig


def test_defaults_are_valid_and_documented_values() -> None:
    config = WebSocketConfig()
    assert config.threads == 1
    assert config.max_message_bytes == 1024 * 1024
    assert config.max_send_queue_bytes == 1024 * 1024
    assert (config.ping_interval, config.ping_timeout) == (20.0, 20.0)
    assert config.close_timeout == 5.0
    deflate = DeflateConfig()
    assert (deflate.server_max_window_bits, deflate.client_max_window_bits) == (12, 12)
    assert deflate.mem_level == 5


def test_configs_are_frozen_and_keyword_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        WebSocketConfig().threads = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        WebSocketConfig(2)  # type: ignore[call-arg]


def test_timers_can_be_disabled_with_none() -> None:
    config = WebSocketConfig(ping_interval=None, ping_timeout=None, max_message_bytes=None)
    assert config.ping_interval is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threads": 0},
        {"threads": True},
        {"threads": 1.5},
        {"max_message_bytes": 0},
        {"read_buffer_bytes": 100},
        {"max_send_queue_bytes": -1},
        {"write_timeout": 0},
        {"write_timeout": None},
        {"ping_interval": 0},
        {"ping_timeout": -1.0},
        {"ping_interval": float("nan")},
        {"close_timeout": float("inf")},
        {"close_timeout": "5"},
    ],
)
def test_invalid_websocket_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        WebSocketConfig(**kwargs)  # type: ignore[arg-type]
    assert next(iter(kwargs)) in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 8},
        {"server_max_window_bits": 16},
        {"client_max_window_bits": 7},
        {"mem_level": 0},
        {"mem_level": 10},
        {"level": 10},
        {"min_bytes": -1},
        {"server_no_context_takeover": 1},
    ],
)
def test_invalid_deflate_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        DeflateConfig(**kwargs)  # type: ignore[arg-type]
    assert next(iter(kwargs)) in str(info.value)
