"""Pure functions for the RFC 9110 pieces a file server needs: validators, preconditions,
ranges and content negotiation of codings.

Nothing here does IO, and every function takes header values as strings and returns plain
values, so the RFC tables in the tests can call them directly. Parsing is lenient where
RFC 9110 tells a recipient to ignore what it cannot understand (a malformed ``Range`` is
ignored, never an error) and strict where a wrong guess would serve the wrong bytes
(``If-Range`` honours only an exact strong validator).
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime
from email.utils import formatdate
from enum import Enum, IntEnum
from functools import lru_cache
from typing import Final, NamedTuple

__all__ = [
    "IGNORE",
    "UNSATISFIABLE",
    "Evaluation",
    "RangeKind",
    "RangeResult",
    "accepted_codings",
    "etag_for",
    "evaluate_preconditions",
    "http_date",
    "if_range_allows",
    "parse_http_date",
    "parse_range",
]

#: Digits beyond this many in a range position stand for "larger than any file" (and keep
#: ``int()`` away from CPython's 4300-digit limit).
_MAX_POSITION_DIGITS: Final = 18
_HUGE_POSITION: Final = 10**18
#: The longest HTTP-date ("Wednesday, 09-Nov-94 08:49:37 GMT") is 33 characters.
_MAX_DATE_CHARS: Final = 40
#: Accept-Encoding values longer than this are parsed every time instead of being cached.
_MAX_CACHED_ACCEPT_ENCODING_CHARS: Final = 256

# RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; weak = %s"W/";
# opaque-tag = DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG: Final = re.compile(r'[ \t]*(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|\Z)')
_EMPTY_ELEMENT: Final = re.compile(r"[ \t]*(?:,|\Z)")
# RFC 9110 §14.2: range-spec = int-range / suffix-range; int-range = first-pos "-" [ last-pos ]
_RANGE_SPEC: Final = re.compile(r"([0-9]*)-([0-9]*)")
# RFC 9110 §12.4.2: weight = OWS ";" OWS "q=" qvalue; qvalue = ( "0" [ "." 0*3DIGIT ] ) /
# ( "1" [ "." 0*3("0") ] )
_QVALUE: Final = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


def etag_for(size: int, mtime_ns: int, suffix: str = "") -> str:
    """A strong entity tag from a file's size and modification time, e.g. ``"1f4-17d2..."``.

    The inode is left out on purpose: copies of one file on several machines behind a load
    balancer must share their tags. ``suffix`` tells the encoded variants apart (``-br``).
    """
    return f'"{size:x}-{mtime_ns:x}{suffix}"'


def http_date(timestamp: float) -> str:
    """Format a POSIX timestamp as an IMF-fixdate (RFC 9110 §5.6.7)."""
    return formatdate(timestamp, usegmt=True)


_MONTHS: Final = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_MONTH: Final = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME: Final = "([0-9]{2}):([0-9]{2}):([0-9]{2})"
# RFC 9110 §5.6.7: IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT
_IMF_FIXDATE: Final = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{{2}}) {_MONTH} ([0-9]{{4}}) {_TIME} GMT"
)
# rfc850-date = day-name-l "," SP date2 SP time-of-day SP GMT; date2 = day "-" month "-" 2DIGIT
_RFC850_DATE: Final = re.compile(
    rf"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rf"([0-9]{{2}})-{_MONTH}-([0-9]{{2}}) {_TIME} GMT"
)
# asctime-date = day-name SP date3 SP time-of-day SP year; date3 = month SP ( 2DIGIT / ( SP DIGIT ))
_ASCTIME_DATE: Final = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MONTH} ([0-9]{{2}}| [0-9]) {_TIME} ([0-9]{{4}})"
)


def parse_http_date(value: str) -> int | None:
    """Parse an HTTP-date into whole POSIX seconds, or ``None`` when it is not one.

    RFC 9110 §5.6.7: "A recipient that parses a timestamp value in an HTTP field MUST accept
    all three HTTP-date formats" (IMF-fixdate, RFC 850, asctime), all in UTC. Nothing else
    is accepted: no numeric zones, no missing zone.
    """
    value = value.strip(" \t")
    if len(value) > _MAX_DATE_CHARS:
        return None  # also keeps huge values out of the cache
    return _parse_http_date(value)


@lru_cache(maxsize=256)
def _parse_http_date(value: str) -> int | None:
    match = _IMF_FIXDATE.fullmatch(value)
    if match is not None:
        day, month, year, hour, minute, second = match.groups()
        year_number = int(year)
    else:
        match = _RFC850_DATE.fullmatch(value)
        if match is not None:
            day, month, year, hour, minute, second = match.groups()
            # "Recipients of a timestamp value in rfc850-date format, which uses a two-digit
            # year, MUST interpret a timestamp that appears to be more than 50 years in the
            # future as representing the most recent year in the past that had the same last
            # two digits."
            this_year = time.gmtime().tm_year
            year_number = this_year - this_year % 100 + int(year)
            if year_number > this_year + 50:
                year_number -= 100
        else:
            match = _ASCTIME_DATE.fullmatch(value)
            if match is None:
                return None
            month, day, hour, minute, second, year = match.groups()
            year_number = int(year)
    try:
        stamp = datetime(year_number, _MONTHS[month], int(day), int(hour), int(minute), int(second), 0, UTC)
    except ValueError:  # 31 Feb, hour 25...
        return None
    return calendar.timegm(stamp.timetuple())


def _tags(value: str) -> list[tuple[bool, str]] | None:
    """Split a list of entity-tags into ``(weak, opaque)`` pairs; ``None`` when malformed."""
    tags = []
    pos = 0
    end = len(value)
    while pos < end:
        match = _ENTITY_TAG.match(value, pos)
        if match is None:
            # RFC 9110 §5.6.1: a recipient accepts empty list elements ("a, , b").
            match = _EMPTY_ELEMENT.match(value, pos)
            if match is None:
                return None
            pos = match.end()
            continue
        tags.append((match.group(1) is not None, match.group(2)))
        pos = match.end()
    return tags


def _weak_match(header: str, etag: str) -> bool:
    """RFC 9110 §8.8.3.2 weak comparison of a list (or ``*``) against our strong tag."""
    if header.strip() == "*":
        return True
    tags = _tags(header)
    return tags is not None and any(opaque == etag for _, opaque in tags)


def _strong_match(header: str, etag: str) -> bool:
    """RFC 9110 §8.8.3.2 strong comparison: both tags strong and identical."""
    if header.strip() == "*":
        return True
    tags = _tags(header)
    return tags is not None and any(not weak and opaque == etag for weak, opaque in tags)


class Evaluation(IntEnum):
    """Outcome of the preconditions: carry on, ``304 Not Modified`` or ``412``."""

    PROCEED = 0
    NOT_MODIFIED = 304
    PRECONDITION_FAILED = 412


def evaluate_preconditions(
    *,
    if_match: str | None,
    if_unmodified_since: str | None,
    if_none_match: str | None,
    if_modified_since: str | None,
    etag: str,
    last_modified: int,
) -> Evaluation:
    """Evaluate the conditional headers of a GET or HEAD in the order of RFC 9110 §13.2.2.

    Args:
        if_match, if_unmodified_since, if_none_match, if_modified_since: the header values
            (``None`` when absent; several fields joined with ``,``).
        etag: the selected representation's strong entity tag.
        last_modified: its modification time in whole seconds.

    Returns:
        An :class:`Evaluation` value.
    """
    # §13.2.2 step 1: "When recipient is the origin server and If-Match is present, evaluate
    # the If-Match precondition: if true, continue to step 3; if false, respond 412".
    if if_match is not None:
        if not _strong_match(if_match, etag):
            return Evaluation.PRECONDITION_FAILED
    # Step 2: "When ... If-Match is not present, and If-Unmodified-Since is present, evaluate
    # the If-Unmodified-Since precondition" (§13.1.4: ignored if not a valid HTTP-date).
    elif if_unmodified_since is not None:
        since = parse_http_date(if_unmodified_since)
        if since is not None and last_modified > since:
            return Evaluation.PRECONDITION_FAILED
    # Step 3: "When If-None-Match is present, evaluate the If-None-Match precondition: if
    # false for GET/HEAD, respond 304 (Not Modified)". §13.1.2: "A recipient MUST use the weak
    # comparison function when comparing entity tags for If-None-Match".
    if if_none_match is not None:
        if _weak_match(if_none_match, etag):
            return Evaluation.NOT_MODIFIED
    # Step 4: "When the method is GET or HEAD, If-None-Match is not present, and
    # If-Modified-Since is present, evaluate the If-Modified-Since precondition". §13.1.3: "A
    # recipient MUST ignore the If-Modified-Since header field if the received field value is
    # not a valid HTTP-date, [or] if the field value has more than one member".
    elif if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        if since is not None and last_modified <= since:
            return Evaluation.NOT_MODIFIED
    return Evaluation.PROCEED


def if_range_allows(value: str, *, etag: str, last_modified: int) -> bool:
    """Whether an ``If-Range`` field lets the ``Range`` apply (RFC 9110 §13.1.5).

    "A server MUST NOT use a weak entity tag" and only an exact match counts: "If the
    validator given in the If-Range header field matches the current validator for the
    selected representation ... the server SHOULD process the Range header field ...
    otherwise, the recipient MUST ignore the Range header field". A date counts only when it
    equals ``Last-Modified`` exactly.
    """
    value = value.strip()
    if value.startswith(("W/", '"')):
        return value == etag  # a weak tag starts with W/ and can never equal ours
    date = parse_http_date(value)
    return date is not None and date == last_modified


class RangeKind(Enum):
    """What to do with a ``Range`` header."""

    IGNORE = "ignore"
    """Serve 200 with the whole representation."""
    SINGLE = "single"
    """Serve 206 with bytes ``start``..``end`` inclusive."""
    UNSATISFIABLE = "unsatisfiable"
    """Serve 416 with ``Content-Range: bytes */<size>``."""


class RangeResult(NamedTuple):
    """A ``Range`` header interpreted against a representation's size."""

    kind: RangeKind
    start: int = 0
    end: int = -1


IGNORE: Final = RangeResult(RangeKind.IGNORE)
UNSATISFIABLE: Final = RangeResult(RangeKind.UNSATISFIABLE)


def _position(digits: str) -> int:
    return _HUGE_POSITION if len(digits) > _MAX_POSITION_DIGITS else int(digits)


def parse_range(value: str, size: int) -> RangeResult:
    """Interpret a ``Range`` header against a representation of ``size`` bytes.

    Choices, each allowed by RFC 9110 §14.2 ("A server MAY ignore the Range header field"):
    a unit other than ``bytes``, a malformed or invalid set ("last-pos value ... less than
    the first-pos") and a request for several ranges are all ignored, which means a 200 with
    the whole representation. Several ranges would need ``multipart/byteranges``; clients
    asking for them accept a 200 (browsers and download tools never need them).

    Returns:
        :data:`IGNORE`, :data:`UNSATISFIABLE`, or a :attr:`RangeKind.SINGLE` result whose ``end`` is
        clamped to ``size - 1``.
    """
    unit, eq, range_set = value.partition("=")
    # §14.1: range-unit is case-insensitive.
    if not eq or unit.strip().lower() != "bytes":
        return IGNORE
    specs = [spec.strip(" \t") for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]  # §5.6.1: empty list elements are allowed
    if len(specs) != 1:
        return IGNORE
    match = _RANGE_SPEC.fullmatch(specs[0])
    if match is None:
        return IGNORE
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return IGNORE  # "-" alone
        # §14.1.3: suffix-range = "-" suffix-length. "If the selected representation is
        # shorter than the specified suffix-length, the entire representation is used."
        # §14.1.1: a suffix-range is satisfiable only with "a non-zero suffix-length".
        suffix = _position(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return RangeResult(RangeKind.SINGLE, max(0, size - suffix), size - 1)
    start = _position(first)
    end = _position(last) if last else None
    if end is not None and end < start:
        return IGNORE  # §14.1.1: invalid int-range
    # §14.1.1: "An int-range is satisfiable if the first-pos value is less than the current
    # length of the selected representation."
    if start >= size:
        return UNSATISFIABLE
    # §14.1.2: "if the value is greater than or equal to the current length ... the
    # byte range is interpreted as the remainder of the representation".
    return RangeResult(RangeKind.SINGLE, start, size - 1 if end is None or end >= size else end)


def accepted_codings(value: str | None) -> tuple[str, ...]:
    """The content codings a client accepts, best first, among ``br`` and ``gzip``.

    RFC 9110 §12.5.3: each member is a coding with an optional ``q`` weight; ``q=0`` means
    "not acceptable"; ``*`` stands for any coding not listed; ``x-gzip`` is ``gzip``
    (§8.4.1.3). Ties prefer ``br``. A member with a malformed weight is skipped.

    No header at all is answered with no coding: §12.5.3 would allow any coding, but a
    client that did not ask (``curl`` without ``--compressed``) would save compressed bytes.
    """
    if not value:
        return ()
    if len(value) > _MAX_CACHED_ACCEPT_ENCODING_CHARS:
        return _parse_accept_encoding(value)
    return _cached_accept_encoding(value)


def _parse_accept_encoding(value: str) -> tuple[str, ...]:
    weights: dict[str, float] = {}
    star: float | None = None
    for member in value.split(","):
        coding, _, params = member.partition(";")
        coding = coding.strip(" \t").lower()
        if not coding:
            continue
        weight = 1.0
        params = params.strip(" \t")
        if params:
            name, eq, qvalue = params.partition("=")
            if name.strip(" \t").lower() != "q" or not eq:
                continue
            qvalue = qvalue.strip(" \t")
            if _QVALUE.fullmatch(qvalue) is None:
                continue
            weight = float(qvalue)
        if coding == "x-gzip":
            coding = "gzip"
        if coding == "*":
            star = weight
        elif coding not in weights:
            weights[coding] = weight
    ranked = []
    for preference, coding in enumerate(("br", "gzip")):
        weight = weights.get(coding, star if star is not None else 0.0)
        if weight > 0:
            ranked.append((-weight, preference, coding))
    ranked.sort()
    return tuple(coding for _, _, coding in ranked)


_cached_accept_encoding: Final = lru_cache(maxsize=256)(_parse_accept_encoding)
