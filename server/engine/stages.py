"""A stage worker: a thread that takes batches of blocks from its queue."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from seamcut.server.engine.blocks import Block, SepJob

Item = TypeVar("Item", Block, SepJob)

log = logging.getLogger(__name__)


class Stage(Generic[Item]):
    """Runs ``process(batch)`` on a thread; a batch holds blocks of up to
    ``max_streams`` distinct streams and at most ``max_per_stream`` blocks of each,
    taken in arrival order so that no stream starves. Blocks of streams that were
    closed are dropped (``on_drop`` is told)."""

    def __init__(
        self,
        name: str,
        process: Callable[[list[Item]], None],
        *,
        max_streams: int,
        max_per_stream: int = 1 << 30,
        wait_s: float,
        on_drop: Callable[[Item], None],
    ) -> None:
        self.name = name
        self._process: Callable[[list[Item]], None] = process
        self._max_streams = max_streams
        self._max_per_stream = max_per_stream
        self._wait_s = wait_s
        self._on_drop: Callable[[Item], None] = on_drop
        self._queue: deque[Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"seamcut-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()

    def put(self, block: Item) -> None:
        block.t_enqueued = time.perf_counter()
        with self._cond:
            self._queue.append(block)
            self._cond.notify()

    def depth(self) -> int:
        return len(self._queue)

    def _take(self) -> list[Item] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            if self._wait_s > 0 and len(self._queue) < self._max_streams:
                # Work exists: wait briefly for other streams' blocks to batch with.
                self._cond.wait(self._wait_s)
            batch: list[Item] = []
            keep: deque[Item] = deque()
            counts: dict[str, int] = {}
            held: set[str] = set()  # once a block is kept back, its stream's later ones are
            while self._queue:
                b = self._queue.popleft()
                key = b.stream.key
                n = counts.get(key)
                if key in held or (n is None and len(counts) >= self._max_streams) or (
                        n is not None and n >= self._max_per_stream):
                    held.add(key)
                    keep.append(b)
                    continue
                counts[key] = (n or 0) + 1
                batch.append(b)
            self._queue = keep
        now = time.perf_counter()
        live = []
        for b in batch:
            b.t_queue += now - b.t_enqueued
            if b.stream.closed.is_set():
                self._on_drop(b)
            else:
                live.append(b)
        return live

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._process(batch)
