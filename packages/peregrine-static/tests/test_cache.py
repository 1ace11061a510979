"""``FileCache``: LRU by bytes, fingerprint checks, the racy-timestamp rule."""

from __future__ import annotations

import os
import time
from pathlib import Path

from _support import OLD_MTIME_S, write

from peregrine_static._cache import FileCache


def _file(tmp_path: Path, name: str, size: int, mtime: int = OLD_MTIME_S) -> tuple[str, os.stat_result]:
    path = write(tmp_path / name, b"x" * size, mtime)
    return str(path), path.stat()


def test_hit_after_put(tmp_path: Path) -> None:
    cache = FileCache(100)
    path, st = _file(tmp_path, "a", 10)
    assert cache.get(path, st) is None
    assert cache.put(path, st, b"x" * 10) is True
    assert cache.get(path, st) == b"x" * 10
    assert cache.size_bytes == 10 and len(cache) == 1


def test_changed_fingerprint_is_a_miss_and_drops_the_entry(tmp_path: Path) -> None:
    cache = FileCache(100)
    path, st = _file(tmp_path, "a", 10)
    cache.put(path, st, b"x" * 10)
    os.utime(path, (OLD_MTIME_S + 1, OLD_MTIME_S + 1))
    assert cache.get(path, os.stat(path)) is None
    assert cache.size_bytes == 0 and len(cache) == 0


def test_least_recently_used_entries_are_evicted_to_stay_within_budget(tmp_path: Path) -> None:
    cache = FileCache(30)
    a, b, c, d = (_file(tmp_path, name, 10) for name in "abcd")
    for path, st in (a, b, c):
        cache.put(path, st, b"x" * 10)
    assert cache.get(*a) is not None  # a becomes the most recent
    cache.put(d[0], d[1], b"x" * 10)
    assert cache.get(*b) is None  # b was the least recent
    assert cache.get(*a) is not None and cache.get(*c) is not None and cache.get(*d) is not None
    assert cache.size_bytes == 30


def test_entry_larger_than_budget_is_not_stored(tmp_path: Path) -> None:
    cache = FileCache(5)
    path, st = _file(tmp_path, "a", 10)
    assert cache.put(path, st, b"x" * 10) is False
    assert len(cache) == 0


def test_zero_budget_disables_the_cache(tmp_path: Path) -> None:
    cache = FileCache(0)
    path, st = _file(tmp_path, "a", 0)
    assert cache.put(path, st, b"") is False
    assert cache.get(path, st) is None


def test_recently_modified_file_is_not_stored(tmp_path: Path) -> None:
    cache = FileCache(100)
    path, st = _file(tmp_path, "a", 10, int(time.time()))
    assert cache.put(path, st, b"x" * 10) is False


def test_data_of_the_wrong_length_is_not_stored(tmp_path: Path) -> None:
    cache = FileCache(100)
    path, st = _file(tmp_path, "a", 10)
    assert cache.put(path, st, b"x" * 9) is False


def test_replacing_an_entry_keeps_the_size_right(tmp_path: Path) -> None:
    cache = FileCache(100)
    path, st = _file(tmp_path, "a", 10)
    cache.put(path, st, b"x" * 10)
    path2, st2 = _file(tmp_path, "a", 20, OLD_MTIME_S + 1)
    cache.put(path2, st2, b"x" * 20)
    assert cache.size_bytes == 20 and len(cache) == 1
    cache.clear()
    assert cache.size_bytes == 0 and len(cache) == 0


def test_an_entry_leaving_the_cache_lets_go_of_its_bytes(tmp_path: Path) -> None:
    cache = FileCache(20)
    a, b, c = (_file(tmp_path, name, 10) for name in "abc")
    cache.put(a[0], a[1], b"x" * 10)
    entry_a = cache.entry(*a)
    assert entry_a is not None and entry_a.data == b"x" * 10
    cache.put(b[0], b[1], b"x" * 10)
    cache.put(c[0], c[1], b"x" * 10)  # evicts a
    assert entry_a.data is None and cache.get(*a) is None
    entry_b = cache.entry(*b)
    assert entry_b is not None
    os.utime(b[0], (OLD_MTIME_S + 1, OLD_MTIME_S + 1))
    assert cache.entry(b[0], os.stat(b[0])) is None  # stale: dropped
    assert entry_b.data is None
    entry_c = cache.entry(*c)
    assert entry_c is not None
    cache.clear()
    assert entry_c.data is None


def test_an_entry_marked_used_gets_a_second_chance(tmp_path: Path) -> None:
    cache = FileCache(30)
    a, b, c, d = (_file(tmp_path, name, 10) for name in "abcd")
    cache.put(a[0], a[1], b"x" * 10)
    entry_a = cache.entry(*a)
    assert entry_a is not None
    cache.put(b[0], b[1], b"x" * 10)
    cache.put(c[0], c[1], b"x" * 10)  # a is the least recent
    entry_a.used = True  # served without a lookup since
    cache.put(d[0], d[1], b"x" * 10)
    assert entry_a.used is False and entry_a.data is not None  # kept, its chance spent
    assert cache.get(*b) is None  # the next least recent went instead
    assert cache.get(*a) is not None and cache.get(*c) is not None and cache.get(*d) is not None
    assert cache.size_bytes == 30
