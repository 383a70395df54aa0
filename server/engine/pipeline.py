"""The three stage threads around one :class:`~.core.EngineCore`.

S1 separation (SEPARATE requests) -> results; S2 batched VAD -> S3 band energy
(ANALYSE requests) -> results. ONNX Runtime, torch and numpy release the GIL inside
their kernels, so the stages overlap across requests. Results leave through
``emit``, called on a stage thread; the in-process client and the engine process
each pass their own. Per stream, requests leave in the order they came.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from seamcut.server.engine.core import EngineCore
from seamcut.server.engine.protocol import ErrorCode, Kind, Request, Result, failed
from seamcut.server.engine.stages import Job, Stage

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        core: EngineCore,
        emit: Callable[[Result], None],
        *,
        on_death: Callable[[str], None] = lambda _why: None,
    ) -> None:
        self.core = core
        cfg = core.cfg.engine
        self._emit = emit
        self._on_death_cb = on_death
        self._lock = threading.Lock()
        self._outstanding: dict[str, int] = {}  # jobs per stream not yet emitted
        self._cancelled: set[str] = set()
        self.dead = ""  # why a stage died ("" while all run)
        wait_s = cfg.batch_wait_ms / 1000
        common = {"fail": self._fail, "on_death": self._death, "dropped": self._is_cancelled,
                  "on_drop": self._drop, "max_streams": cfg.max_batch_streams}
        self._s3 = Stage("s3-features", self._run_s3, forward=self._out, wait_s=0.0,
                         **common)  # type: ignore[arg-type]
        self._s2 = Stage("s2-vad", self._run_s2, forward=self._s3.put, wait_s=wait_s,
                         **common)  # type: ignore[arg-type]
        self._s1 = Stage("s1-separate", self._run_s1, forward=self._out, wait_s=wait_s,
                         max_per_stream=cfg.max_batch_blocks_per_stream,
                         **common)  # type: ignore[arg-type]
        self._stages = (self._s1, self._s2, self._s3)
        self._started = False

    def start(self) -> None:
        if not self._started:
            for s in self._stages:
                s.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            for s in self._stages:
                s.stop()
            self._started = False
            self.core.close()

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self._stages)

    # ------------------------------------------------------------ requests
    def submit(self, req: Request, received_ns: int = 0) -> None:
        """Queue a request (never blocks: callers bound what they have in flight)."""
        job = Job(req, Result(kind=req.kind, stream=req.stream, id=req.id, index=req.index,
                              received_ns=received_ns or time.monotonic_ns()))
        with self._lock:
            self._outstanding[req.stream] = self._outstanding.get(req.stream, 0) + 1
        if self.dead:
            self._fail(job, RuntimeError(self.dead))
        elif req.kind is Kind.SEPARATE:
            self._s1.put(job)
        else:
            self._s2.put(job)

    def cancel(self, stream: str) -> None:
        """The stream is gone: its queued requests are answered CANCELLED, unrun."""
        self.core.forget(stream)
        with self._lock:
            if self._outstanding.get(stream):
                self._cancelled.add(stream)

    def _is_cancelled(self, stream: str) -> bool:
        return stream in self._cancelled

    # ------------------------------------------------------------ stage bodies
    def _run_s1(self, batch: list[Job]) -> list[Job]:
        dev = self.core.device_separate
        if dev is None:
            return _pair(batch, self.core.separate_batch([j.req for j in batch]))
        by_backend: dict[str, list[Job]] = {}
        for j in batch:
            by_backend.setdefault(j.req.backend, []).append(j)
        out: list[Job] = []
        for group in by_backend.values():
            if not dev.supports([j.req for j in group]):  # MDX, or an unknown name
                out += _pair(group, self.core.separate_batch([j.req for j in group]))
                continue
            self._to_device(dev, group)
        return out

    def _run_s2(self, batch: list[Job]) -> list[Job]:
        dev = self.core.device_analyse
        if dev is None:
            return _pair(batch, self.core.vad_batch([j.req for j in batch]))
        self._to_device(dev, batch)  # S2 and S3 both run on the device's lanes
        return []

    def _to_device(self, dev: Any, batch: list[Job]) -> None:
        """Hand ``batch`` to a device stage (``DeviceAnalyse`` or ``DeviceSeparate``);
        its completion thread hands the results on. A batch too big for one staging
        slot goes in parts; a full ring (the in-flight limit) is waited out."""
        for part in _parts(batch, lambda jobs: dev.fits([j.req for j in jobs])):
            while not dev.submit([j.req for j in part],
                                 lambda results, part=part: self._device_done(part, results)):
                dev.flow.wait_room(0.05)

    def _device_done(self, batch: list[Job], results: list[Result]) -> None:
        """On the device flow's thread: the batch's S2 + S3 results (or CPU re-runs)."""
        try:
            for j in _pair(batch, results):
                self._out(j)
        except Exception as exc:  # never lose a request: answer it with the error
            log.exception("device pipeline: delivering results failed")
            for j in batch:
                self._fail(j, exc)

    def _run_s3(self, batch: list[Job]) -> list[Job]:
        for j in batch:
            assert j.res is not None
            j.res = self.core.features(j.req, j.res)
        return batch

    # ------------------------------------------------------------ results
    def _out(self, job: Job) -> None:
        assert job.res is not None
        self._finish(dataclasses.replace(job.res, queue_ms=job.queue_s * 1000,
                                         sent_ns=time.monotonic_ns()))

    def _fail(self, job: Job, exc: BaseException) -> None:
        msg = self.dead or f"the engine failed on this request: {exc!r}"
        res = failed(job.req, ErrorCode.INTERNAL, msg)
        self._finish(dataclasses.replace(res, received_ns=job.res.received_ns if job.res else 0,
                                         sent_ns=time.monotonic_ns()))

    def _drop(self, job: Job) -> None:
        self._finish(failed(job.req, ErrorCode.CANCELLED, "stream cancelled"))

    def _finish(self, res: Result) -> None:
        gone = False
        with self._lock:
            n = self._outstanding.get(res.stream, 1) - 1
            if n <= 0:
                self._outstanding.pop(res.stream, None)
                gone = res.stream in self._cancelled
                self._cancelled.discard(res.stream)
            else:
                self._outstanding[res.stream] = n
        if gone:  # a request that ran after the cancel may have kept its state again
            self.core.forget(res.stream)
        self._emit(res)

    def _death(self, stage: str, exc: BaseException) -> None:
        """A stage thread ended on an error: fail everything queued, and all that comes."""
        self.dead = f"engine stage {stage} died ({exc!r}); the engine needs a restart"
        for s in self._stages:
            for job in s.take_all():
                try:
                    self._fail(job, RuntimeError(self.dead))
                except Exception:  # emit itself is broken: nothing more can be told
                    log.exception("could not report a failed request")
        self._on_death_cb(self.dead)


def _parts(batch: list[Job], fits: Callable[[list[Job]], bool]) -> list[list[Job]]:
    """``batch`` cut into consecutive parts that each ``fit`` (a single job always
    goes: the pipeline must take it, split or not)."""
    parts: list[list[Job]] = [[]]
    for j in batch:
        if parts[-1] and not fits([*parts[-1], j]):
            parts.append([])
        parts[-1].append(j)
    return [p for p in parts if p]


def _pair(batch: list[Job], results: list[Result]) -> list[Job]:
    """Give each job its result (the core answers in the batch's order; checked, since a
    result given to the wrong stream would be a silent wrong cut)."""
    for j, r in zip(batch, results, strict=True):
        if (r.stream, r.id) != (j.req.stream, j.req.id):
            raise RuntimeError(f"result for {r.stream}/{r.id} paired with request "
                               f"{j.req.stream}/{j.req.id}")
        j.res = _merge(j.res, r)
    return batch


def _merge(base: Result | None, new: Result) -> Result:
    """``new`` with the timestamps the pipeline put on ``base``."""
    if base is None:
        return new
    return dataclasses.replace(new, received_ns=base.received_ns)
