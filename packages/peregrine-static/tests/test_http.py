"""RFC 9110 helpers as pure functions: dates, entity-tags, preconditions, ranges, codings."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peregrine_static._http import (
    IGNORE,
    UNSATISFIABLE,
    Evaluation,
    RangeKind,
    RangeResult,
    accepted_codings,
    etag_for,
    evaluate_preconditions,
    http_date,
    if_range_allows,
    parse_http_date,
    parse_range,
)

SUNDAY = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
        " Sun, 06 Nov 1994 08:49:37 GMT ",
    ],
)
def test_the_three_http_date_formats_parse(value: str) -> None:
    assert parse_http_date(value) == SUNDAY


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37",  # no zone
        "Sun, 06 Nov 1994 08:49:37 +0000",  # numeric zone is not an HTTP-date
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 6 Nov 1994 08:49:37 GMT",  # one-digit day
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun 06 Nov 1994 08:49:37 GMT",
        "784111777",
        "Sun, 06 Nov 1994 08:49:37 GMT garbage",
    ],
)
def test_anything_else_is_not_a_date(value: str) -> None:
    assert parse_http_date(value) is None


def test_rfc850_two_digit_years_are_read_within_fifty_years() -> None:
    now_year = int(http_date(time.time())[12:16])
    stamp = parse_http_date("Monday, 01-Jan-00 00:00:00 GMT")
    assert stamp is not None
    year = int(http_date(stamp)[12:16])
    assert year % 100 == 0 and now_year - 50 <= year <= now_year + 50


def test_http_date_is_an_imf_fixdate() -> None:
    assert http_date(SUNDAY) == "Sun, 06 Nov 1994 08:49:37 GMT"


@given(st.integers(min_value=0, max_value=2**33))
def test_http_date_round_trips(stamp: int) -> None:
    assert parse_http_date(http_date(stamp)) == stamp


def test_etag_is_strong_quoted_hex_and_distinct_per_suffix() -> None:
    assert etag_for(255, 16) == '"ff-10"'
    assert etag_for(255, 16, "-br") == '"ff-10-br"'
    assert etag_for(255, 16) != etag_for(255, 17) != etag_for(256, 17)


ETAG = '"abc"'


def _eval(**headers: str) -> Evaluation:
    return evaluate_preconditions(
        if_match=headers.get("im"),
        if_unmodified_since=headers.get("ius"),
        if_none_match=headers.get("inm"),
        if_modified_since=headers.get("ims"),
        etag=ETAG,
        last_modified=SUNDAY,
    )


def test_preconditions_follow_rfc_9110_order() -> None:
    before, after = http_date(SUNDAY - 1), http_date(SUNDAY + 1)
    assert _eval() is Evaluation.PROCEED
    assert _eval(inm=ETAG) is Evaluation.NOT_MODIFIED
    assert _eval(inm='"x"', ims=after) is Evaluation.PROCEED  # INM beats IMS
    assert _eval(ims=after) is Evaluation.NOT_MODIFIED
    assert _eval(ims=before) is Evaluation.PROCEED
    assert _eval(im='"x"', inm=ETAG) is Evaluation.PRECONDITION_FAILED
    assert _eval(im=ETAG, ius=before) is Evaluation.PROCEED  # IUS ignored with If-Match
    assert _eval(ius=before) is Evaluation.PRECONDITION_FAILED
    assert _eval(im="W/" + ETAG) is Evaluation.PRECONDITION_FAILED  # strong comparison
    assert _eval(inm="W/" + ETAG) is Evaluation.NOT_MODIFIED  # weak comparison
    assert _eval(inm='"x", "y",' + ETAG) is Evaluation.NOT_MODIFIED
    assert _eval(inm='"a,b", ' + ETAG) is Evaluation.NOT_MODIFIED  # comma inside a tag
    assert _eval(inm='"a,b"') is Evaluation.PROCEED


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (ETAG, True),
        ("W/" + ETAG, False),
        ('"other"', False),
        (http_date(SUNDAY), True),
        (http_date(SUNDAY + 1), False),
        ("Sunday, 06-Nov-94 08:49:37 GMT", True),
        ("garbage", False),
        ("", False),
    ],
)
def test_if_range(value: str, allowed: bool) -> None:
    assert if_range_allows(value, etag=ETAG, last_modified=SUNDAY) is allowed


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=0-10", 100, RangeResult(RangeKind.SINGLE, 0, 10)),
        ("bytes=90-", 100, RangeResult(RangeKind.SINGLE, 90, 99)),
        ("bytes=-10", 100, RangeResult(RangeKind.SINGLE, 90, 99)),
        ("bytes=-0", 100, UNSATISFIABLE),
        ("bytes=100-", 100, UNSATISFIABLE),
        ("bytes=0-", 0, UNSATISFIABLE),
        ("bytes=-5", 0, UNSATISFIABLE),
        ("bytes=0-1,2-3", 100, IGNORE),
        ("bytes=5-4", 100, IGNORE),
        ("pages=1-2", 100, IGNORE),
    ],
)
def test_parse_range(value: str, size: int, expected: RangeResult) -> None:
    assert parse_range(value, size) == expected


@given(st.text(max_size=40), st.integers(min_value=0, max_value=10**6))
def test_parse_range_never_fails_and_stays_within_the_file(value: str, size: int) -> None:
    result = parse_range(value, size)
    if result.kind is RangeKind.SINGLE:
        assert 0 <= result.start <= result.end < size


@given(st.integers(0, 200), st.integers(0, 200), st.integers(1, 150))
def test_parse_range_matches_python_slicing(first: int, last: int, size: int) -> None:
    result = parse_range(f"bytes={first}-{last}", size)
    data = bytes(range(size % 256)) * (size // 256 + 1)
    data = data[:size]
    if last < first:
        assert result == IGNORE
    elif first >= size:
        assert result == UNSATISFIABLE
    else:
        assert data[result.start : result.end + 1] == data[first : last + 1]


@pytest.mark.parametrize(
    ("value", "codings"),
    [
        (None, ()),
        ("", ()),
        ("gzip", ("gzip",)),
        ("br, gzip", ("br", "gzip")),
        ("gzip, br", ("br", "gzip")),  # equal weights: br first
        ("gzip;q=0.8, br;q=0.5", ("gzip", "br")),
        ("*", ("br", "gzip")),
        ("*;q=0.1, gzip;q=0.5", ("gzip", "br")),
        ("identity", ()),
        ("br;q=0", ()),
        ("br;q=1.001", ()),
        ("br;q=0.0001", ()),
        ("br;Q=0.5", ("br",)),
    ],
)
def test_accepted_codings(value: str | None, codings: tuple[str, ...]) -> None:
    assert accepted_codings(value) == codings


def test_overlong_header_values_are_handled_without_caching_them() -> None:
    long_accept = "x" * 10_000 + ", gzip"
    assert accepted_codings(long_accept) == ("gzip",)
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT" + " " * 10 + "x" * 10_000) is None
    assert parse_http_date(" " * 10_000 + "Sun, 06 Nov 1994 08:49:37 GMT") == SUNDAY
