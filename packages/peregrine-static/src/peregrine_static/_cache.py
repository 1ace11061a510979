"""A bounded, thread-safe LRU of small files' contents, checked against ``stat`` on every use.

Strategy: an entry remembers the identity and version of the file it was read from
(``st_dev``, ``st_ino``, ``st_size``, ``st_mtime_ns``). The caller already holds a fresh
``stat`` of the path (it needed one to find the file), so a lookup costs no system call: an
entry whose fingerprint differs from that ``stat`` is stale, dropped and reported as a miss.

A caller that keeps an entry (:meth:`FileCache.entry`) to serve it again without a lookup
reads ``entry.data`` each time: it becomes ``None`` the moment the entry is evicted,
replaced or found stale, so a kept entry never holds bytes beyond the budget. Such a caller
sets ``entry.used`` instead of taking the lock; eviction gives a used entry a second chance
(it moves to the recent end once, flag cleared), so hot files stay cached either way.

Invariants: the sum of cached content sizes never exceeds the budget; a file modified within
the last :data:`RACY_WINDOW_SECONDS` is never cached (a second write in the same timestamp
tick with the same size would otherwise go unnoticed, as git's "racily clean" index entries
do); every method may be called from any thread.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from os import stat_result
from typing import Final

__all__ = ["RACY_WINDOW_SECONDS", "CachedFile", "FileCache", "Fingerprint", "fingerprint"]

RACY_WINDOW_SECONDS: Final = 2.0

Fingerprint = tuple[int, int, int, int]


def fingerprint(st: stat_result) -> Fingerprint:
    """The identity and version of a file: device, inode, size and modification time."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class CachedFile:
    """A file's contents and the fingerprint of the version they were read from.

    Attributes:
        fingerprint: the version the contents were read from.
        data: the contents; ``None`` once the entry has left the cache.
        used: set by a caller that served ``data`` without a lookup; cleared by eviction.
    """

    __slots__ = ("data", "fingerprint", "used")

    def __init__(self, fp: Fingerprint, data: bytes) -> None:
        self.fingerprint = fp
        self.data: bytes | None = data
        self.used = False


class FileCache:
    """LRU of file contents bounded by a total byte budget.

    Args:
        budget_bytes: the most content bytes held at once; 0 disables the cache.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, CachedFile] = OrderedDict()
        self._size_bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """Content bytes held now."""
        return self._size_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str, st: stat_result) -> bytes | None:
        """Return the cached contents of ``path`` if they match ``st``, else ``None``."""
        entry = self.entry(path, st)
        return None if entry is None else entry.data

    def entry(self, path: str, st: stat_result) -> CachedFile | None:
        """Return the entry of ``path`` if it matches ``st`` (and mark it recent), else ``None``."""
        if not self.budget_bytes:
            return None
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                return None
            if entry.fingerprint != fingerprint(st):
                self._drop(path)
                return None
            self._entries.move_to_end(path)
            return entry

    def _drop(self, path: str) -> None:
        """Remove the entry of ``path`` (the lock is held)."""
        entry = self._entries.pop(path)
        self._size_bytes -= len(entry.data or b"")
        entry.data = None

    def put(self, path: str, st: stat_result, data: bytes) -> bool:
        """Remember ``data`` as the contents of ``path`` at version ``st``.

        Returns:
            Whether it was stored: not when larger than the budget, when the file changed
            too recently to trust its timestamp, or when ``data`` is not ``st_size`` long.
        """
        size = len(data)
        if not self.budget_bytes or size > self.budget_bytes or size != st.st_size:
            return False
        if time.time() - st.st_mtime < RACY_WINDOW_SECONDS:
            return False
        entries = self._entries
        with self._lock:
            if path in entries:
                self._drop(path)
            entries[path] = CachedFile(fingerprint(st), data)
            self._size_bytes += size
            chances = len(entries)  # bounded, even if other threads keep setting ``used``
            while self._size_bytes > self.budget_bytes:
                oldest_path = next(iter(entries))
                oldest = entries[oldest_path]
                if oldest.used and chances:  # served without a lookup since: keep it
                    chances -= 1
                    oldest.used = False
                    entries.move_to_end(oldest_path)
                else:
                    self._drop(oldest_path)
        return True

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            for entry in self._entries.values():
                entry.data = None
            self._entries.clear()
            self._size_bytes = 0
