"""What a session tells the client about its blocks: traces, cut events, the Summary.

Pure bookkeeping over the session's results, kept apart from the protocol and
back-pressure logic of :mod:`.session`.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from seamcut.server.dsp.detector import CutDecision
from seamcut.server.engine.protocol import EngineInfo, ErrorCode, Result
from seamcut.server.errors import ConfigError, InternalError, SeamcutError, Unavailable
from seamcut.server.events import ChunkTrace, Cut, StageStats, StageTimes, Summary
from seamcut.server.session.chain import Pending

STAGES = ("queue", "separation", "vad", "features", "ipc", "total")
_STAT_WINDOW = 10_000  # Summary percentiles cover the last this many blocks


@dataclass(slots=True)
class SessionStats:
    chunks: int = 0
    blocks: int = 0
    cuts: int = 0
    vad_segments: int = 0
    stage_ms: dict[str, deque[float]] = field(
        default_factory=lambda: {s: deque(maxlen=_STAT_WINDOW) for s in STAGES}
    )

    def record(self, t: StageTimes) -> None:
        self.blocks += 1
        values = (t.queue_wait_ms, t.separation_ms, t.vad_ms, t.features_ms, t.ipc_ms,
                  t.total_ms)
        for name, value in zip(STAGES, values, strict=True):
            self.stage_ms[name].append(value)


def ipc_ms(r: Result, sent_ns: int) -> float:
    """Time a request and its result spent between session and engine, both ways
    (CLOCK_MONOTONIC, one clock for every process of a host)."""
    if not sent_ns or not r.received_ns:
        return 0.0
    return max(0, (r.received_ns - sent_ns) + (time.monotonic_ns() - r.sent_ns)) / 1e6


def block_times(p: Pending, r: Result, *, detect_ms: float, ipc: float) -> StageTimes:
    """One block's times: the engine's stages, the detector's run, IPC both ways."""
    return StageTimes(
        queue_wait_ms=r.queue_ms + p.separation_queue_ms, separation_ms=p.separation_ms,
        h2d_ms=r.h2d_ms + p.h2d_ms, d2h_ms=r.d2h_ms + p.d2h_ms,
        vad_ms=r.vad_ms, features_ms=r.features_ms + detect_ms,
        ipc_ms=ipc + p.separation_ipc_ms,
        total_ms=(time.perf_counter() - p.t_ready) * 1000,
    )


def chunk_trace(p: Pending, r: Result, times: StageTimes, *, off: int, device: str,
                song: bool) -> ChunkTrace:
    """``gpu_pipeline_used`` only for a block whose every engine step ran through the
    CUDA-stream pipeline: its analysis and, in SONG mode, its separation (and all the
    stream's separation before it)."""
    b = p.block
    assert b is not None
    return ChunkTrace(
        block_index=b.index, start_sample=b.client_start + off,
        end_sample=b.client_start + int(b.client.shape[0]) + off, first_seq=p.first_seq,
        last_seq=p.last_seq, client_send_time_ns=p.send_ns, server_receive_time_ns=p.recv_ns,
        times=times, batch_size=r.batch_size, separation_batch_size=p.separation_batch,
        device=device, gpu_pipeline_used=r.pipeline == "cuda" and (
            not song or p.separation_pipeline == "cuda"),
    )


def error_of(r: Result, session_id: str, resume_sample: int) -> SeamcutError:
    """The error a failed engine result ends its stream with (status table: transport).
    ``resume_sample``: where a new stream can take over (Progress.samples_final)."""
    where = f"session {session_id}"
    if r.error is ErrorCode.UNAVAILABLE:
        return Unavailable(
            f"{r.message} ({where}); resume on a new stream with StreamConfig.start_sample "
            f"= {resume_sample}, sending the audio from that sample on")
    if r.error is ErrorCode.BAD_REQUEST:
        return ConfigError(f"{r.message} ({where})")
    return InternalError(f"internal error in {where}: {r.message}")


def cut_event(ev: CutDecision, *, off: int, rate_hz: int, index: int) -> Cut:
    return Cut(
        sample=ev.sample + off, seconds=(ev.sample + off) / rate_hz, kind=ev.kind,
        score=float(ev.score), pause_start_sample=ev.pause_start + off,
        pause_end_sample=ev.pause_end + off, index=index,
    )


def summary(stats: SessionStats, *, received: int, processed: int, wall_s: float,
            engine: EngineInfo, device: str, short_pause: tuple[int, int] = (0, 0)) -> Summary:
    stages = tuple(
        StageStats(stage=name, p50_ms=float(np.percentile(v, 50)) if v else 0.0,
                   p95_ms=float(np.percentile(v, 95)) if v else 0.0, count=len(v))
        for name, v in stats.stage_ms.items()
    )
    return Summary(
        samples_received=received, samples_processed=processed, chunks=stats.chunks,
        blocks=stats.blocks, cuts=stats.cuts, vad_segments=stats.vad_segments,
        wall_seconds=wall_s, stages=stages, engine_id=engine.engine_id,
        engine_pid=engine.pid, device=device, longest_short_pause_ms=short_pause[0],
        longest_short_pause_sample=short_pause[1],
    )
