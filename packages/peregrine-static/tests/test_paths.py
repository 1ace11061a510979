"""Path decoding and containment, from string literals and from random input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peregrine_static._paths import is_inside, resolve, split_path

ACCEPTED = [
    ("", [], True),
    ("a", ["a"], False),
    ("a/", ["a"], True),
    ("a/b.txt", ["a", "b.txt"], False),
    ("a//b", ["a", "b"], False),
    ("/a", ["a"], False),
    ("./a/./b/.", ["a", "b"], True),
    ("a%20b", ["a b"], False),
    ("%C3%A9", ["é"], False),
    ("\u00c3\u00a9", ["é"], False),  # raw UTF-8 bytes as the codec hands them over (latin-1)
    ("a%252e", ["a%2e"], False),  # decoded once only
    ("a+b", ["a+b"], False),  # "+" is not a space in a path
    ("a%3Fb", ["a?b"], False),
    ("...", [], None),  # hidden (starts with a dot)
]


@pytest.mark.parametrize(("raw", "segments", "trailing"), ACCEPTED)
def test_split_path_accepts(raw: str, segments: list[str], trailing: bool | None) -> None:
    result = split_path(raw, allow_hidden=False)
    if trailing is None:
        assert result is None
    else:
        assert result == (segments, trailing)


REFUSED = [
    "..", "a/..", "../a", "a/../b", "%2e%2e", "%2E%2e/a", ".%2e", "a/%2e%2e/b",
    "a%2fb", "a%2Fb", "..%2f", "a\\b", "%5c", "a%00", "\x00", "a%0d%0ab", "a%7f",
    "%", "%1", "%zz", "a%g0", "%c0%ae", "%ff", "%C3", "\u0100",
]  # fmt: skip


@pytest.mark.parametrize("raw", REFUSED)
def test_split_path_refuses(raw: str) -> None:
    assert split_path(raw, allow_hidden=True) is None


@pytest.mark.parametrize("raw", [".git", "a/.env", "%2ehidden", ".well-known/x"])
def test_hidden_segments_depend_on_the_option(raw: str) -> None:
    assert split_path(raw, allow_hidden=False) is None
    assert split_path(raw, allow_hidden=True) is not None


@pytest.mark.parametrize(
    ("path", "root", "inside"),
    [
        ("/srv/www", "/srv/www", True),
        ("/srv/www/a", "/srv/www", True),
        ("/srv/www2", "/srv/www", False),
        ("/srv/www2/a", "/srv/www", False),
        ("/srv", "/srv/www", False),
        ("/anything", "/", True),
    ],
)
def test_is_inside_compares_whole_components(path: str, root: str, inside: bool) -> None:
    assert is_inside(path, root) is inside


PIECES = st.sampled_from(
    ["..", ".", "", "/", "//", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "%", "%25",
     "a", "docs", "hello.txt", "outside", "secret.txt", "link_out", "dir_out", "docs_link",
     ".git", "%2e%2e", "..%2f", "%c0%ae", "~", ":", "C:", "%3A"]
)  # fmt: skip


@settings(max_examples=600, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(PIECES, max_size=12), hidden=st.booleans())
def test_no_decoded_path_resolves_outside_the_root(root: Path, pieces: list[str], hidden: bool) -> None:
    parsed = split_path("".join(pieces), allow_hidden=hidden)
    if parsed is None:
        return
    segments, _ = parsed
    for segment in segments:
        assert segment not in ("", ".", "..")
        assert "/" not in segment and "\\" not in segment and "\x00" not in segment
        assert hidden or not segment.startswith(".")
    for policy in ("inside", "never"):
        found = resolve(str(root), segments, policy)
        if found is not None:
            real, _ = found
            assert is_inside(real, str(root))
            assert os.path.realpath(real) == real
