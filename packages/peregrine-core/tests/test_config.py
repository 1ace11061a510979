"""ServerConfig: validated on construction, with clear messages."""

from __future__ import annotations

import dataclasses

import pytest

from peregrine_core import ConfigError, ServerConfig
from peregrine_core._config import resolve_workers


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers must be a positive integer or 'auto'"),
        ({"workers": "many"}, "workers must be a positive integer or 'auto'"),
        ({"workers": 5000}, "workers must be at most 1024"),
        ({"accept_threads": 0}, "accept_threads must be a positive integer"),
        ({"backlog": True}, "backlog must be a positive integer"),
        ({"tcp_nodelay": 1}, "tcp_nodelay must be true or false"),
        ({"keepalive_timeout": 0}, "keepalive_timeout must be a positive number of seconds"),
        ({"header_timeout": -1.0}, "header_timeout must be a positive number"),
        ({"read_buffer_size": 10}, "read_buffer_size must be at least 1024"),
        ({"max_header_bytes": 100}, "max_header_bytes \\(100\\) must be at least max_request_line_bytes"),
        ({"poller": "iocp"}, "poller must be one of"),
    ],
)
def test_invalid_settings_raise_config_error_naming_the_field(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**kwargs)  # type: ignore[arg-type]


def test_config_error_is_a_value_error_and_config_is_frozen() -> None:
    assert issubclass(ConfigError, ValueError)
    config = ServerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 3  # type: ignore[misc]


def test_workers_auto_means_one_thread_on_a_gil_build() -> None:
    assert resolve_workers(4) == 4
    assert resolve_workers("auto") >= 1
