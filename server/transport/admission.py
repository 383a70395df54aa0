"""Counting open streams across transport workers, so ``max_streams`` is per server.

Each worker owns one int64 slot of a small file that the supervisor creates in its
private run directory; admission takes an ``flock`` on the file, sums the slots and
increments its own only if the sum is below the limit, so two workers can never
both admit the last slot. It costs one lock and a page read per stream opened or
closed, not per message. A single-process server counts in memory.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

SLOT = struct.Struct("<q")


class StreamCount:
    """In-process count (one worker, or no supervisor)."""

    def __init__(self) -> None:
        self.local = 0

    def try_acquire(self, limit: int) -> bool:
        if self.local >= limit:
            return False
        self.local += 1
        return True

    def release(self) -> None:
        self.local -= 1

    def total(self) -> int:
        return self.local


class SharedStreamCount(StreamCount):
    """Slot ``index`` of the shared file at ``path`` (created by the supervisor)."""

    def __init__(self, path: str, index: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDWR)
        size = os.fstat(self._fd).st_size
        self._map = mmap.mmap(self._fd, size)
        self._slots = size // SLOT.size
        self._index = index

    def _sum(self) -> int:
        return sum(SLOT.unpack_from(self._map, i * SLOT.size)[0] for i in range(self._slots))

    def _set(self, value: int) -> None:
        SLOT.pack_into(self._map, self._index * SLOT.size, value)

    def try_acquire(self, limit: int) -> bool:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if self._sum() >= limit:
                return False
            self.local += 1
            self._set(self.local)
            return True
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self.local -= 1
            self._set(self.local)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def total(self) -> int:
        return self._sum()


def create_slots(path: Path, workers: int) -> None:
    """The supervisor's side: a zeroed file with one slot per worker."""
    path.write_bytes(b"\0" * SLOT.size * workers)


def reset_slot(path: Path, index: int) -> None:
    """A worker died: the streams it counted are gone with it."""
    with open(path, "r+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(index * SLOT.size)
        f.write(SLOT.pack(0))
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)


def stream_count(path: str, index: int) -> StreamCount:
    return SharedStreamCount(path, index) if path else StreamCount()
