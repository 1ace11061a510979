"""``DirServer`` options: defaults and clear ``ConfigError`` messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from peregrine_core import ConfigError
from peregrine_static import (
    DEFAULT_CACHE_BUDGET_BYTES,
    DEFAULT_CACHE_CONTROL,
    DEFAULT_CACHE_MAX_FILE_BYTES,
    DirServer,
)


def test_defaults(root: Path) -> None:
    server = DirServer(root)
    assert server.root == str(root)
    assert server.url_prefix == "/"
    assert server.index_files == ("index.html",)
    assert server.show_hidden is False
    assert server.follow_symlinks == "inside"
    assert server.listing is False
    assert server.cache_control == DEFAULT_CACHE_CONTROL == "no-cache"
    assert server.cache_max_file_bytes == DEFAULT_CACHE_MAX_FILE_BYTES == 64 * 1024
    assert server.cache_budget_bytes == DEFAULT_CACHE_BUDGET_BYTES == 32 * 1024 * 1024
    assert server.precompressed is True


def test_root_may_be_a_string_or_a_path(root: Path) -> None:
    assert DirServer(str(root)).root == DirServer(root).root


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url_prefix": "static"}, "url_prefix"),
        ({"url_prefix": "//static/"}, "url_prefix"),
        ({"url_prefix": "/a//b/"}, "url_prefix"),
        ({"url_prefix": "/../"}, "url_prefix"),
        ({"url_prefix": "/./"}, "url_prefix"),
        ({"url_prefix": "/a\\b/"}, "url_prefix"),
        ({"url_prefix": "/a b/"}, "url_prefix"),
        ({"url_prefix": "/a?b/"}, "url_prefix"),
        ({"url_prefix": None}, "url_prefix"),
        ({"index_files": "index.html"}, "index_files"),
        ({"index_files": ("a/b.html",)}, "index_files"),
        ({"index_files": ("..",)}, "index_files"),
        ({"index_files": ("",)}, "index_files"),
        ({"index_files": (1,)}, "index_files"),
        ({"index_files": 3}, "index_files"),
        ({"follow_symlinks": "always"}, "follow_symlinks"),
        ({"follow_symlinks": True}, "follow_symlinks"),
        ({"show_hidden": 1}, "show_hidden"),
        ({"listing": "yes"}, "listing"),
        ({"precompressed": None}, "precompressed"),
        ({"cache_control": ""}, "cache_control"),
        ({"cache_control": "no-cache\r\nSet-Cookie: x"}, "cache_control"),
        ({"cache_control": 3}, "cache_control"),
        ({"cache_max_file_bytes": -1}, "cache_max_file_bytes"),
        ({"cache_max_file_bytes": 1.5}, "cache_max_file_bytes"),
        ({"cache_budget_bytes": True}, "cache_budget_bytes"),
    ],
)
def test_bad_option_raises_config_error_naming_it(
    root: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DirServer(root, **kwargs)  # type: ignore[arg-type]


def test_config_error_is_a_value_error(root: Path) -> None:
    with pytest.raises(ValueError, match="url_prefix"):
        DirServer(root, url_prefix="x")


@pytest.mark.parametrize("name", ["missing", "hello.txt"])
def test_root_must_be_an_existing_directory(root: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="not an existing directory"):
        DirServer(root / name)


def test_root_with_nul_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="root"):
        DirServer("/tmp/\x00x")


@pytest.mark.parametrize(
    ("given", "normalised"),
    [("", "/"), ("/", "/"), ("/s", "/s/"), ("/a/b/", "/a/b/"), ("/%7Eme", "/%7Eme/")],
)
def test_prefix_gets_a_trailing_slash(root: Path, given: str, normalised: str) -> None:
    assert DirServer(root, url_prefix=given).url_prefix == normalised


def test_index_files_accept_any_iterable(root: Path) -> None:
    assert DirServer(root, index_files=["a.html", "b.html"]).index_files == ("a.html", "b.html")
    assert DirServer(root, index_files=()).index_files == ()
