"""Request: headers as received, case-insensitive lookup, the query contract."""

from __future__ import annotations

import pytest

from peregrine_core import Request


def make(target: str, headers: list[tuple[str, str]] | None = None) -> Request:
    return Request("GET", target, "HTTP/1.1", headers or [("Host", "x")])


def test_headers_keep_their_case_and_order_and_lookup_ignores_case() -> None:
    req = make("/", [("Host", "a"), ("X-Multi", "1"), ("x-multi", "2"), ("Accept", "*/*")])
    assert list(req) == [("Host", "a"), ("X-Multi", "1"), ("x-multi", "2"), ("Accept", "*/*")]
    assert req.get_header("X-MULTI") == "1"
    assert req.get_headers("x-Multi") == ["1", "2"]
    assert req.get_header("missing") is None
    assert req.get_header("missing", "d") == "d"
    assert req.get_headers("missing") == []


def test_get_headers_returns_a_copy() -> None:
    req = make("/", [("A", "1")])
    req.get_headers("a").append("2")
    assert req.get_headers("a") == ["1"]


def test_header_names_are_the_lower_cased_names_present() -> None:
    req = make("/", [("Host", "a"), ("X-Multi", "1"), ("x-multi", "2"), ("If-None-Match", "*")])
    names = req.header_names()
    assert sorted(names) == ["host", "if-none-match", "x-multi"]
    assert not {"range", "if-none-match"}.isdisjoint(names)
    assert {"range", "if-match"}.isdisjoint(names)
    assert Request("GET", "/", "HTTP/1.0", []).header_names() == set()


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/p", "/p", ""),
        ("/p?", "/p", ""),
        ("/p?a=1?b", "/p", "a=1?b"),
        ("http://example.com/x/y?z=1", "/x/y", "z=1"),
        ("http://example.com", "/", ""),
        ("*", "*", ""),
    ],
)
def test_path_and_query_split_at_the_first_question_mark(target: str, path: str, query: str) -> None:
    req = make(target)
    assert (req.path, req.query) == (path, query)


# The original's table (peregrine-zig.md §4.5), with its bugs fixed: no stale data, no
# partial maps, percent-decoding.
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/p", None),
        ("/p?", {}),
        ("/p?a=1&b=2", {"a": "1", "b": "2"}),
        ("/p?a", None),
        ("/p?a=1&b", None),
        ("/p?a=1&", {"a": "1"}),
        ("/p?a=1&&b=2", {"a": "1", "b": "2"}),
        ("/p?a=1&a=2", {"a": "2"}),
        ("/p?a&b=1", None),
        ("/p?a=b=c", {"a": "b=c"}),
        ("/p?a=", {"a": ""}),
        ("/p?=v", {"": "v"}),
        ("/p?name=J%C3%BCrgen+M", {"name": "Jürgen M"}),
        ("/p?k%20y=%2F%3F%26", {"k y": "/?&"}),
        ("/p?a=%zz", None),
        ("/p?a=%4", None),
        ("/p?a=%ff", None),
    ],
)
def test_parse_query_follows_the_original_contract(target: str, expected: dict[str, str] | None) -> None:
    assert make(target).parse_query() == expected


def test_parse_query_returns_a_fresh_mapping_each_time() -> None:
    req = make("/p?a=1")
    first = req.parse_query()
    assert first is not None
    first["b"] = "2"
    assert req.parse_query() == {"a": "1"}
    assert make("/other").parse_query() is None  # nothing of an earlier request is visible
