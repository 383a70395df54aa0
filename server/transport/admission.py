"""Server-wide admission counters, shared by every transport worker.

What one client may hold is limited across the whole server, whatever worker its
connections land on: open streams in total, per peer address and per bearer token,
health ``Watch`` streams, and bytes of buffered audio. The counters live in a small
file that the supervisor creates in its private run directory (an anonymous map for a
single-process server): one row of int64 counters per worker, so that a dead worker's
counts can be dropped with its row. Admission takes an ``flock``, sums the columns it
needs over the rows and adds to its own row only if every limit holds, so two workers
can never both admit past a limit. It costs one lock and a few reads per stream opened
or closed, never per message.

Peer addresses and tokens are counted in hashed buckets (``BUCKETS`` each, keyed with
a random per-server key that clients cannot know, so they cannot aim collisions): two
keys share a counter with probability 1/``BUCKETS``, which can only make a limit
stricter for them, never looser. Tokens are hashed, never stored.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUCKETS = 4096
KEY_BYTES = 16
HEADER = 64  # key, then the row count; rows start here (aligned for int64)
STREAMS, WATCHES, BUFFERED = 0, 1, 2  # fixed columns
_PEERS = 3
_TOKENS = _PEERS + BUCKETS
COLUMNS = _TOKENS + BUCKETS
ROW_BYTES = COLUMNS * 8


@dataclass(frozen=True, slots=True)
class Claim:
    """``amount`` more of column ``column``, allowed while the total stays <= ``limit``
    (0 = no limit). ``what`` names the limit in the refusal."""

    column: int
    amount: int
    limit: int
    what: str


def file_size(workers: int) -> int:
    return HEADER + workers * ROW_BYTES


def create(path: Path, workers: int) -> None:
    """The supervisor's side: a zeroed file with a fresh key and one row per worker."""
    data = bytearray(file_size(workers))
    data[:KEY_BYTES] = secrets.token_bytes(KEY_BYTES)
    data[KEY_BYTES:KEY_BYTES + 8] = workers.to_bytes(8, "little")
    path.write_bytes(bytes(data))


def reset_row(path: Path, index: int) -> None:
    """A worker died: what it counted is gone with it."""
    with open(path, "r+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(HEADER + index * ROW_BYTES)
            f.write(b"\0" * ROW_BYTES)
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Ledger:
    """This worker's view of the server-wide counters (row ``index`` is its own)."""

    def __init__(self, path: str = "", index: int = 0) -> None:
        if path:
            self._fd: int | None = os.open(path, os.O_RDWR)
            self._map = mmap.mmap(self._fd, os.fstat(self._fd).st_size)
        else:  # one process: the same layout in anonymous memory, no lock needed
            self._fd = None
            self._map = mmap.mmap(-1, file_size(1))
            self._map[:KEY_BYTES] = secrets.token_bytes(KEY_BYTES)
        self._key = bytes(self._map[:KEY_BYTES])
        rows = (len(self._map) - HEADER) // ROW_BYTES
        self._table = np.frombuffer(self._map, dtype="<i8", offset=HEADER,
                                    count=rows * COLUMNS).reshape(rows, COLUMNS)
        self._row = self._table[index]

    def _bucket(self, base: int, key: str) -> int:
        h = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), key=self._key,
                            digest_size=8).digest()
        return base + int.from_bytes(h, "little") % BUCKETS

    def peer_column(self, address: str) -> int:
        return self._bucket(_PEERS, address)

    def token_column(self, token: str) -> int:
        return self._bucket(_TOKENS, token)

    def _lock(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def acquire(self, claims: list[Claim]) -> Claim | None:
        """Take every claim, or none: the first claim that would pass its limit."""
        self._lock()
        try:
            for c in claims:
                if c.limit and int(self._table[:, c.column].sum()) + c.amount > c.limit:
                    return c
            for c in claims:
                self._row[c.column] += c.amount
            return None
        finally:
            self._unlock()

    def release(self, claims: list[Claim]) -> None:
        self._lock()
        try:
            for c in claims:
                self._row[c.column] -= c.amount
        finally:
            self._unlock()

    def total(self, column: int) -> int:
        """The server-wide count of ``column`` (for tests and metrics)."""
        return int(self._table[:, column].sum())

    def mine(self, column: int) -> int:
        return int(self._row[column])
