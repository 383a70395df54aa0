"""A stage worker: a thread that takes batches of jobs from its queue, and never dies
silently.

A batch that raises is retried one job at a time, so one bad request fails alone
(its result carries the error) and the others go on. Anything that escapes the loop
itself (a bug in forwarding, a BaseException) reports the stage dead through
``on_death`` before the thread ends: the engine then fails what it holds and says so
(health NOT_SERVING in process, exit and restart as an engine process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from seamcut.server.engine.protocol import Request, Result

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """A request on its way through the stages (engine-internal, never on the wire)."""

    req: Request
    res: Result | None = None
    t_enqueued: float = 0.0
    queue_s: float = 0.0  # accumulated wait in stage queues

    @property
    def stream(self) -> str:
        return self.req.stream


class Stage:
    """Runs ``process(batch)`` on a thread; a batch holds jobs of up to ``max_streams``
    distinct streams and at most ``max_per_stream`` jobs of each, taken in arrival
    order so that no stream starves. Jobs whose stream ``dropped(stream)`` says is
    gone are handed to ``on_drop`` instead."""

    def __init__(
        self,
        name: str,
        process: Callable[[list[Job]], list[Job]],
        *,
        forward: Callable[[Job], None],
        fail: Callable[[Job, BaseException], None],
        on_death: Callable[[str, BaseException], None],
        max_streams: int,
        max_per_stream: int = 1 << 30,
        wait_s: float,
        dropped: Callable[[str], bool] = lambda _key: False,
        on_drop: Callable[[Job], None] = lambda _job: None,
    ) -> None:
        self.name = name
        self._process = process
        self._forward = forward
        self._fail = fail
        self._on_death = on_death
        self._max_streams = max_streams
        self._max_per_stream = max_per_stream
        self._wait_s = wait_s
        self._dropped = dropped
        self._on_drop = on_drop
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.errors = 0  # batches or jobs that raised (each failed its requests only)
        self.dead: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"seamcut-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def put(self, job: Job) -> None:
        job.t_enqueued = time.perf_counter()
        with self._cond:
            self._queue.append(job)
            self._cond.notify()

    def depth(self) -> int:
        return len(self._queue)

    def take_all(self) -> list[Job]:
        """Empty the queue (used when the stage is dead, to fail what it held)."""
        with self._cond:
            jobs = list(self._queue)
            self._queue.clear()
        return jobs

    def _take(self) -> list[Job] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            if self._wait_s > 0 and len(self._queue) < self._max_streams:
                # Work exists: wait briefly for other streams' jobs to batch with.
                self._cond.wait(self._wait_s)
            batch: list[Job] = []
            keep: deque[Job] = deque()
            counts: dict[str, int] = {}
            held: set[str] = set()  # once a job is kept back, its stream's later ones are
            while self._queue:
                j = self._queue.popleft()
                key = j.stream
                n = counts.get(key)
                if key in held or (n is None and len(counts) >= self._max_streams) or (
                        n is not None and n >= self._max_per_stream):
                    held.add(key)
                    keep.append(j)
                    continue
                counts[key] = (n or 0) + 1
                batch.append(j)
            self._queue = keep
        now = time.perf_counter()
        live = []
        for j in batch:
            j.queue_s += now - j.t_enqueued
            if self._dropped(j.stream):
                self._on_drop(j)
            else:
                live.append(j)
        return live

    def _run(self) -> None:
        held: list[Job] = []  # taken from the queue, not yet passed on
        try:
            while True:
                batch = self._take()
                if batch is None:
                    return
                held = batch
                done = self._work(batch)
                held = done[:]
                for job in done:
                    self._forward(job)
                    held.pop(0)
                held = []
        except BaseException as exc:  # the guard: report, never vanish
            self.dead = exc
            log.critical("engine stage %s died: %r", self.name, exc, exc_info=exc)
            for job in held:  # what it held when it died fails with it
                try:
                    self._fail(job, exc)
                except Exception:
                    log.exception("could not report a request of the dead stage")
            self._on_death(self.name, exc)

    def _work(self, batch: list[Job]) -> list[Job]:
        try:
            return self._process(batch)
        except Exception as exc:
            self.errors += 1
            if len(batch) == 1:
                log.exception("stage %s failed on a request of stream %s", self.name,
                              batch[0].stream)
                self._fail(batch[0], exc)
                return []
            log.exception("stage %s: a batch of %d failed; retrying one by one",
                          self.name, len(batch))
        out: list[Job] = []
        for job in batch:  # isolate the request that broke the batch
            try:
                out += self._process([job])
            except Exception as exc:
                self.errors += 1
                log.exception("stage %s failed on a request of stream %s", self.name,
                              job.stream)
                self._fail(job, exc)
        return out
