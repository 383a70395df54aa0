"""Drives a bench run: workers, the ramp, resource sampling, the live line, the figures.

A fixed run opens ``--streams`` streams at ``t0``, measures ``[t0 + warmup, t0 + warmup
+ duration)`` and then half-closes every stream; errors count over the whole run. A
ramp (see ``ramp``) adds streams at each step boundary and judges each step
``JUDGE_GRACE_S`` after it ended (late acks and cuts have arrived by then), stopping at
the first failure. The parent merges every worker's samples into one ``Samples``.
When every stream opened so far has ended and none got its Ready (no server, TLS or
token refused) the run stops at once: waiting out the duration would measure nothing.

Imports the bench's modules (never ``seamcut.server``).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from seamcut.bench.config import DRAIN_LIMIT_S, REPORT_INTERVAL_S, BenchConfig
from seamcut.bench.load import WorkerReport
from seamcut.bench.ramp import Step, Verdict, judge, knee, knee_step
from seamcut.bench.recording import (
    ErrorSample,
    Samples,
    SeriesPoint,
    StreamMark,
    WindowStats,
    series,
    window_stats,
)
from seamcut.bench.source import LoopedAudio
from seamcut.bench.sysmon import ProcessGroup, ResourcePoint
from seamcut.bench.worker import LocalWorkers, ProcessWorkers, Workers

LEAD_S = 0.5  # from scheduling the first streams to opening them
TICK_S = 0.1
SAMPLE_EVERY_S = 0.5  # resource samples and the live line
LIVE_WINDOW_S = 2.0
JUDGE_GRACE_S = 1.0
EXTRA_DRAIN_S = 30.0  # beyond the streams' own drain limit, before giving up on a worker


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerInfo:
    """What the first Ready said about the server."""

    target: str
    lookahead_ms: int
    lookahead_samples: int
    device: str
    version: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """Everything measured in one run; times relative to ``t0`` where they are series."""

    cfg: BenchConfig
    target: str
    window: WindowStats  # the summary window (a fixed run's, or the ramp's knee step)
    steps: tuple[Step, ...]
    knee_streams: int | None
    series: tuple[SeriesPoint, ...]
    server: ServerInfo | None
    client_resources: tuple[ResourcePoint, ...]
    server_resources: tuple[ResourcePoint, ...] | None
    streams_opened: int
    streams_connected: int  # streams that got their Ready
    errors: tuple[ErrorSample, ...]
    chunks_per_stream: dict[int, int]
    verdict: Verdict | None
    wall_seconds: float
    t0: float = field(repr=False)


def server_info(marks: list[StreamMark], target: str) -> ServerInfo | None:
    """From the first Ready mark (the largest look-ahead if streams differ)."""
    ready = [m for m in marks if m.what == "ready"]
    if not ready:
        return None
    worst = max(ready, key=lambda m: m.lookahead_ms)
    return ServerInfo(target=target, lookahead_ms=worst.lookahead_ms,
                      lookahead_samples=worst.lookahead_samples, device=worst.device,
                      version=worst.server_version)


class Runner:
    """One run of ``cfg`` against ``target``; ``live`` gets the progress line (or None)."""

    def __init__(self, cfg: BenchConfig, sources: list[LoopedAudio], *, target: str,
                 server_pid: int | None, live: TextIO | None) -> None:
        self.cfg = cfg
        self.sources = sources
        self.target = target
        self.server_pid = server_pid
        self.live = live
        self.rec = Samples()
        self._recent: deque[tuple[float, Samples]] = deque()
        self._active: dict[int, int] = {}
        self._done: dict[int, bool] = {}
        self._oldest_unacked: dict[int, float | None] = {}
        self._steps: list[Step] = []
        self._t0 = 0.0
        self._stop_at = math.inf
        self._n_workers = max(1, cfg.processes)
        self._scheduled = 0  # streams asked of the workers so far
        self._gave_up_at: float | None = None  # when unreachable() stopped the run

    async def run(self) -> RunResult:
        cfg = self.cfg
        workers: Workers = (LocalWorkers(cfg, self.sources) if cfg.processes == 1
                            else ProcessWorkers(cfg))
        started = time.monotonic()
        await workers.start()
        client = ProcessGroup(sorted({os.getpid(), *workers.pids}))
        server = ProcessGroup([self.server_pid], children=True) if self.server_pid else None
        try:
            if cfg.ramp is None:
                await self._fixed(workers, client, server)
            else:
                await self._ramp(workers, client, server)
        finally:
            await workers.aclose()
            if self.live is not None:
                self.live.write("\n")
                self.live.flush()
        return self._result(client, server, time.monotonic() - started)

    # ---------------------------------------------------------------- schedules
    async def _fixed(self, workers: Workers, client: ProcessGroup,
                     server: ProcessGroup | None) -> None:
        cfg = self.cfg
        self._t0 = time.monotonic() + LEAD_S
        workers.scale(cfg.streams, self._t0)
        self._scheduled = cfg.streams
        t_end = self._t0 + cfg.warmup_s + cfg.duration_s
        workers.stop(t_end)
        self._stop_at = t_end
        await self._pump(workers, client, server, t_end, None)

    async def _ramp(self, workers: Workers, client: ProcessGroup,
                    server: ProcessGroup | None) -> None:
        cfg = self.cfg
        assert cfg.ramp is not None
        counts = cfg.ramp.counts(cfg.streams)
        every = cfg.ramp.every_s
        self._t0 = t0 = time.monotonic() + LEAD_S
        workers.scale(counts[0], t0)
        self._scheduled = counts[0]
        t_last = t0 + len(counts) * every
        workers.stop(t_last)
        self._stop_at = t_last
        scaled, judged, stop_at = 1, 0, t_last

        def on_tick(now: float) -> float:
            nonlocal scaled, judged, stop_at
            if scaled < len(counts) and now >= t0 + scaled * every and self._all_passed():
                workers.scale(counts[scaled], t0 + scaled * every)
                self._scheduled = counts[scaled]
                scaled += 1
            if judged < scaled and now >= t0 + (judged + 1) * every + JUDGE_GRACE_S:
                step = self._judge_step(judged, counts[judged], now)
                self._steps.append(step)
                judged += 1
                if not step.verdict.passed and now < stop_at:
                    stop_at = self._stop_at = now
                    workers.stop(now)
            return stop_at

        await self._pump(workers, client, server, t_last, on_tick)
        # Streams can all have ended before the grace of the last step ran out.
        while judged < scaled and self._all_passed():
            self._steps.append(self._judge_step(judged, counts[judged], time.monotonic()))
            judged += 1

    def _all_passed(self) -> bool:
        return all(s.verdict.passed for s in self._steps)

    def _judge_step(self, j: int, streams: int, now: float) -> Step:
        assert self.cfg.ramp is not None
        every = self.cfg.ramp.every_s
        start = self._t0 + j * every
        stats = window_stats(self.rec, start + self.cfg.warmup_s, start + every,
                             streams=streams, errors_from=start, errors_to=start + every)
        pending = [t for t in self._oldest_unacked.values()
                   if t is not None and t < start + every]
        age = (now - min(pending)) * 1000 if pending else None
        info = server_info(self.rec.marks, self.target)
        verdict = judge(stats, lookahead_ms=info.lookahead_ms if info else 0.0,
                        limits=self.cfg.limits, oldest_unacked_age_ms=age)
        return Step(streams=streams, stats=stats, verdict=verdict)

    # ---------------------------------------------------------------- the loop
    async def _pump(self, workers: Workers, client: ProcessGroup, server: ProcessGroup | None,
                    t_stop: float,
                    on_tick: Callable[[float], float] | None) -> None:
        next_sample = time.monotonic()
        while True:
            now = time.monotonic()
            for rep in workers.poll():
                self._merge(rep, now)
            if on_tick is not None:
                t_stop = on_tick(now)
            if self._gave_up_at is None and now < t_stop and self.unreachable():
                self._gave_up_at = now
                workers.stop(now)
            if self._gave_up_at is not None:  # the ramp's on_tick knows nothing of it
                self._stop_at = t_stop = min(t_stop, self._gave_up_at)
            if now >= next_sample:
                next_sample = now + SAMPLE_EVERY_S
                rel = now - self._t0
                client.sample(rel)
                if server is not None:
                    server.sample(rel)
                self._show(now)
            stopped = now >= t_stop
            if stopped and len(self._done) == self._n_workers and all(self._done.values()):
                return
            la = (server_info(self.rec.marks, self.target) or _NO_SERVER).lookahead_ms
            if now > t_stop + la / 1000 + DRAIN_LIMIT_S + EXTRA_DRAIN_S:
                return  # a worker that never finishes: aclose() cancels what is left
            await asyncio.sleep(TICK_S)

    def unreachable(self) -> bool:
        """Every stream scheduled so far has opened and ended, and none got Ready."""
        marks = self.rec.marks
        return (self._scheduled > 0 and not any(m.what == "ready" for m in marks)
                and sum(1 for m in marks if m.what == "end") >= self._scheduled)

    def _merge(self, rep: WorkerReport, now: float) -> None:
        self.rec.extend(rep.samples)
        self._recent.append((now, rep.samples))
        while self._recent and self._recent[0][0] < now - LIVE_WINDOW_S - 2 * REPORT_INTERVAL_S:
            self._recent.popleft()
        self._active[rep.worker] = rep.active
        self._done[rep.worker] = rep.done
        self._oldest_unacked[rep.worker] = rep.oldest_unacked

    def _show(self, now: float) -> None:
        if self.live is None:
            return
        recent = Samples()
        for _, shard in self._recent:
            recent.extend(shard)
        a, b = now - LIVE_WINDOW_S - REPORT_INTERVAL_S, now - REPORT_INTERVAL_S
        st = window_stats(recent, a, b, streams=sum(self._active.values()),
                          errors_from=-math.inf, errors_to=math.inf)
        self.live.write("\r\x1b[K" + live_line(now - self._t0, st, len(self.rec.errors)))
        self.live.flush()

    # ---------------------------------------------------------------- figures
    def _result(self, client: ProcessGroup, server: ProcessGroup | None,
                wall: float) -> RunResult:
        cfg, rec = self.cfg, self.rec
        steps = tuple(self._steps)
        opened = sum(1 for m in rec.marks if m.what == "open")
        connected = len({m.stream for m in rec.marks if m.what == "ready"})
        # The series covers the sending time; the drain after the half-close is bursty
        # (each stream's tail at once) and would read as a throughput spike.
        t_last = max((m.t for m in rec.marks if m.what == "end"), default=self._t0)
        t_last = min(t_last, self._stop_at)
        info = server_info(rec.marks, self.target)
        verdict: Verdict | None = None
        if cfg.ramp is None:
            t_warm = self._t0 + cfg.warmup_s
            window = window_stats(rec, t_warm, t_warm + cfg.duration_s, streams=cfg.streams,
                                  errors_from=-math.inf, errors_to=math.inf)
            if cfg.check_limits:
                verdict = judge(window, lookahead_ms=info.lookahead_ms if info else 0.0,
                                limits=cfg.limits)
            knee_streams = None
        else:
            chosen = knee_step(steps)
            window = chosen.stats if chosen is not None else window_stats(
                rec, self._t0, self._t0, streams=0)
            knee_streams = knee(steps)
        chunks = {m.stream: m.chunks for m in rec.marks if m.what == "end"}
        return RunResult(
            cfg=cfg, target=self.target, window=window, steps=steps, knee_streams=knee_streams,
            series=tuple(series(rec, self._t0, t_last)), server=info,
            client_resources=tuple(client.points),
            server_resources=tuple(server.points) if server is not None else None,
            streams_opened=opened, streams_connected=connected, errors=tuple(rec.errors),
            chunks_per_stream=chunks, verdict=verdict, wall_seconds=wall, t0=self._t0,
        )


_NO_SERVER = ServerInfo(target="", lookahead_ms=0, lookahead_samples=0, device="", version="")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def live_line(elapsed_s: float, st: WindowStats, errors: int) -> str:
    """The one-line progress display: the last ~2 s of figures."""
    return (f"[{elapsed_s:6.1f} s] streams {st.streams:4d} | {st.messages_per_second:7.0f} msg/s"
            f" | {st.audio_seconds_per_second:7.1f} audio-s/s | ack p99 {_ms(st.ack_ms.p99)} ms"
            f" | cut vs bound p99 {_ms(st.cut_ms.p99)} ms | errors {errors}")
