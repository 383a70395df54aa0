"""One stream's session: protocol state, decoding, back-pressure, events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from seamcut.server.config import ANALYSIS_RATE_HZ, HOP_SAMPLES, AppConfig, StreamSpec
from seamcut.server.dsp.detector import CutDecision, DetectorParams, SpeechSegment
from seamcut.server.dsp.pcm import decode
from seamcut.server.dsp.reblock import GridBlock
from seamcut.server.engine.blocks import BlockResult, SepJob, StreamState, block_from_grid
from seamcut.server.engine.pipeline import Engine
from seamcut.server.errors import InvalidAudio, SeamcutError, SequenceError
from seamcut.server.events import (
    ChunkTrace,
    Cut,
    Event,
    Flushed,
    Progress,
    Ready,
    StageStats,
    Summary,
    VadSegment,
)
from seamcut.server.session.frontend import DirectFrontend, Frontend, SongFrontend, Unit
from seamcut.server.session.outbox import Outbox

# Chunks whose decoding costs more than about half a millisecond go to a thread, so
# one big message cannot stall every other stream; smaller ones are decoded on the
# loop, because a thread hand-off alone costs ~0.1 ms and takes the GIL back anyway.
# The unit is samples x a cost factor: ~2 us per 1000 samples at 16 kHz (no
# resampling), ~10 us per 1000 samples through the resampler (measured on the VM).
INLINE_DECODE_WORK = 262_144
_STAGES = ("queue", "separation", "vad", "features", "total")
_STAT_WINDOW = 10_000  # Summary percentiles cover the last this many blocks


@dataclass(slots=True)
class _Chunk:
    seq: int
    client_end: int  # client frames received up to and including this chunk
    send_ns: int
    recv_ns: int


@dataclass(slots=True)
class SessionStats:
    chunks: int = 0
    blocks: int = 0
    cuts: int = 0
    vad_segments: int = 0
    stage_ms: dict[str, deque[float]] = field(
        default_factory=lambda: {s: deque(maxlen=_STAT_WINDOW) for s in _STAGES}
    )


class InflightBudget:
    """Server-wide bound on blocks between sessions and results (FIFO-fair)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._sem = asyncio.Semaphore(limit)

    async def acquire(self) -> None:
        await self._sem.acquire()

    def release(self) -> None:
        self._sem.release()


def lookahead_16k(params: DetectorParams, block_samples: int, resampler_delay: int) -> int:
    """Worst-case analysis samples between the newest sample and the final watermark."""
    snap16 = -(-params.snap_radius * ANALYSIS_RATE_HZ // params.client_rate_hz)
    return params.decision_delay_hops() * HOP_SAMPLES + block_samples + resampler_delay + snap16


class Session:
    """Drive one stream. Call from the event loop only.

    The transport (or the offline runner) sends :meth:`ready`, then calls :meth:`audio` /
    :meth:`flush` in message order, then :meth:`finish` at half-close, and reads
    :attr:`events` until ``None``. :meth:`close` releases everything at any point.
    """

    def __init__(
        self, cfg: AppConfig, engine: Engine, spec: StreamSpec, budget: InflightBudget
    ) -> None:
        self.cfg = cfg
        self.spec = spec
        self.engine = engine
        self.id = uuid.uuid4().hex[:16]
        self.events = Outbox()
        self.error: SeamcutError | None = None
        self._budget = budget
        self._loop = asyncio.get_running_loop()
        fmt = spec.format
        self._params = DetectorParams.build(spec.policy, cfg.detector, fmt.sample_rate_hz,
                                            separated=spec.separator != "none")
        self._stream = StreamState(key=self.id, params=self._params, deliver=self._deliver)
        self._front: Frontend
        if spec.separator != "none":
            song = SongFrontend(spec, cfg, engine.separator(spec.separator))
            self._stream.song = song.song
            self._front = song
        else:
            self._front = DirectFrontend(spec, cfg)
        # Only separation can run on a GPU; VAD and detection always run on the CPU.
        self._device = engine.device.name if self._stream.song else "cpu"
        self._per_stream = asyncio.Semaphore(cfg.engine.max_inflight_per_stream)
        self._room = asyncio.Event()
        self._room.set()
        self._inflight = 0
        self._chunks: deque[_Chunk] = deque()
        self._next_seq = 0
        self._processed = 0
        self._final = 0
        self._submitted = 0  # units of work handed to the engine
        self._released = 0  # ... and finished
        self._flushes: deque[tuple[int, int]] = deque()  # (units to finish, flush id)
        self._t0 = time.perf_counter()
        self._progress_every = spec.events.progress_interval_ms / 1000
        self._progress_at = -1e9  # loop time of the last Progress queued
        self._progress_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.stats = SessionStats()
        self._max_chunk_frames = cfg.server.max_chunk_ms * fmt.sample_rate_hz // 1000
        direct = fmt.sample_rate_hz == ANALYSIS_RATE_HZ and not self._stream.song
        self._inline_frames = INLINE_DECODE_WORK // (fmt.channels * (1 if direct else 5))

    # ---------------------------------------------------------------- protocol
    def ready(self) -> Ready:
        delay = self._front.extra_delay16()
        la16 = lookahead_16k(self._params, self.cfg.engine.block_samples, delay)
        rate = self.spec.format.sample_rate_hz
        return Ready(
            session_id=self.id,
            lookahead_ms=-(-la16 * 1000 // ANALYSIS_RATE_HZ),
            lookahead_samples=-(-la16 * rate // ANALYSIS_RATE_HZ),
            block_ms=self.cfg.engine.block_ms,
            device=self._device,
        )

    async def audio(self, seq: int, data: bytes, send_ns: int = 0) -> None:
        """Validate, decode and queue one AudioChunk (waits while the stream is at its limit)."""
        recv_ns = time.time_ns()
        if seq != self._next_seq:
            last = self._next_seq - 1 if self._next_seq else None
            what = "duplicate or out of order" if seq < self._next_seq else "gap"
            raise SequenceError(
                f"audio.seq {seq}: {what}; expected {self._next_seq} "
                f"(last accepted: {'none' if last is None else last})",
                last_accepted=last,
            )
        fmt = self.spec.format
        frames_in = len(data) // fmt.frame_bytes if fmt.frame_bytes else 0
        if frames_in > self._max_chunk_frames:
            raise InvalidAudio(
                f"audio.data: chunk of {frames_in} frames is longer than the "
                f"{self.cfg.server.max_chunk_ms} ms limit ({self._max_chunk_frames} frames at "
                f"{fmt.sample_rate_hz} Hz); send smaller chunks"
            )
        if frames_in > self._inline_frames:
            units = await asyncio.to_thread(self._decode, data)
        else:
            units = self._decode(data)
        self._next_seq = seq + 1
        self.stats.chunks += 1
        self._chunks.append(_Chunk(seq, self._front.received, send_ns, recv_ns))
        for unit in units:
            await self._submit(unit)
        self._progress()

    def _decode(self, data: bytes) -> list[Unit]:
        frames = decode(data, self.spec.format)
        if frames.shape[0] == 0:
            return []
        return self._front.push(frames)

    async def flush(self, flush_id: int) -> None:
        """Answer with Flushed once every unit submitted so far has been processed."""
        if self._released >= self._submitted:
            self._put(Flushed(flush_id=flush_id, progress=self._progress_event()))
        else:
            self._flushes.append((self._submitted, flush_id))

    async def finish(self) -> None:
        """End of audio: process the tail; the Summary and ``None`` follow in events."""
        for unit in self._front.finish():
            await self._submit(unit)

    def close(self) -> None:
        """Release every per-stream resource (idempotent; safe at any point)."""
        if self._closed:
            return
        self._closed = True
        self._stream.closed.set()
        if self._progress_timer is not None:
            self._progress_timer.cancel()
            self._progress_timer = None
        for _ in range(self._inflight):
            self._budget.release()
        self._inflight = 0
        self._room.set()

    @property
    def inflight(self) -> int:
        return self._inflight

    # ---------------------------------------------------------------- back-pressure
    async def _submit(self, unit: Unit) -> None:
        limit = self.cfg.server.writer_queue_events
        while self.events.qsize() > limit and not self._closed:
            self._room.clear()
            await self._room.wait()
        await self._per_stream.acquire()
        await self._budget.acquire()
        if self._closed:
            self._budget.release()
            self._per_stream.release()
            return
        self._inflight += 1
        self._submitted += 1
        last = self._chunks[-1] if self._chunks else _Chunk(0, 0, 0, time.time_ns())
        if isinstance(unit, GridBlock):
            self.engine.submit(block_from_grid(
                self._stream, unit, first_seq=self._seq_at(unit.client_start),
                last_seq=last.seq, send_ns=last.send_ns, recv_ns=last.recv_ns,
            ))
        else:
            first = self._chunks[0].seq if self._chunks else 0
            while len(self._chunks) > 1:  # the job covers every chunk so far
                self._chunks.popleft()
            self.engine.submit_job(SepJob(
                stream=self._stream, windows=unit.windows, client=unit.client, mix16=unit.mix16,
                total_model=unit.total_model, is_last=unit.is_last, first_seq=first,
                last_seq=last.seq, client_send_time_ns=last.send_ns,
                receive_time_ns=last.recv_ns,
            ))

    def consumed(self) -> None:
        """The writer took an event off the queue."""
        if self.events.qsize() <= self.cfg.server.writer_queue_events:
            self._room.set()

    def _seq_at(self, client_index: int) -> int:
        while len(self._chunks) > 1 and self._chunks[0].client_end <= client_index:
            self._chunks.popleft()
        return self._chunks[0].seq if self._chunks else 0

    # ---------------------------------------------------------------- results
    def _deliver(self, result: BlockResult) -> None:
        """Called on a worker thread: hand the result to the event loop."""
        if not self._closed:
            self._loop.call_soon_threadsafe(self._on_result, result)

    def _on_result(self, r: BlockResult) -> None:
        if self._closed:
            return
        for _ in range(r.releases):
            self._inflight -= 1
            self._released += 1
            self._budget.release()
            self._per_stream.release()
        if r.error is not None:
            self.error = r.error
            self.events.put_nowait(None)
            return
        if not r.marker:
            self._block_done(r)
        while self._flushes and self._flushes[0][0] <= self._released:
            _, fid = self._flushes.popleft()
            self._put(Flushed(flush_id=fid, progress=self._progress_event()))
        if r.is_last:
            self._flush_progress()
            self._put(self._summary())
            self.events.put_nowait(None)

    def _block_done(self, r: BlockResult) -> None:
        off = self.spec.start_sample
        for ev in r.events:
            if isinstance(ev, CutDecision):
                self._put(self._cut_event(ev, off))
            elif isinstance(ev, SpeechSegment) and self.spec.events.vad_segments:
                self.stats.vad_segments += 1
                self._put(VadSegment(start_sample=ev.start + off, end_sample=ev.end + off,
                                     mean_probability=ev.mean_probability))
        self._processed = r.client_end
        self._final = r.final_client
        self.stats.blocks += 1
        t = r.times
        values = (t.queue_wait_ms, t.separation_ms, t.vad_ms, t.features_ms, t.total_ms)
        for name, value in zip(_STAGES, values, strict=True):
            self.stats.stage_ms[name].append(value)
        if self.spec.events.chunk_traces:
            self._put(ChunkTrace(
                block_index=r.index, start_sample=r.client_start + off,
                end_sample=r.client_end + off, first_seq=r.first_seq, last_seq=r.last_seq,
                client_send_time_ns=r.client_send_time_ns,
                server_receive_time_ns=r.receive_time_ns, times=r.times,
                batch_size=r.batch_size, separation_batch_size=r.separation_batch,
                device=self._device, gpu_pipeline_used=self._device != "cpu",
            ))
        self._progress()

    def _cut_event(self, ev: CutDecision, off: int) -> Cut:
        index = self.stats.cuts
        self.stats.cuts += 1
        return Cut(
            sample=ev.sample + off, seconds=(ev.sample + off) / self.spec.format.sample_rate_hz,
            kind=ev.kind, score=float(ev.score), pause_start_sample=ev.pause_start + off,
            pause_end_sample=ev.pause_end + off, index=index,
        )

    def _progress_event(self) -> Progress:
        off = self.spec.start_sample
        return Progress(
            samples_received=self._front.received + off,
            samples_processed=self._processed + off,
            samples_final=self._final + off,
            last_seq=self._next_seq - 1 if self._next_seq else 0,
        )

    def _progress(self) -> None:
        """Queue a Progress now, or once ``progress_interval_ms`` after the last one."""
        if not self.spec.events.progress or self._progress_timer is not None:
            return  # off, or a deferred one will carry the newest state
        now = self._loop.time()
        due = self._progress_at + self._progress_every
        if now >= due:
            self._progress_at = now
            self._put(self._progress_event())
        else:
            self._progress_timer = self._loop.call_at(due, self._deferred_progress)

    def _deferred_progress(self) -> None:
        self._progress_timer = None
        if not self._closed:
            self._progress_at = self._loop.time()
            self._put(self._progress_event())

    def _flush_progress(self) -> None:
        """Send a deferred Progress now (before the Summary ends the stream)."""
        if self._progress_timer is not None:
            self._progress_timer.cancel()
            self._deferred_progress()

    def _put(self, ev: Event) -> None:
        self.events.put_nowait(ev)

    def _summary(self) -> Summary:
        stages = tuple(
            StageStats(
                stage=name,
                p50_ms=float(np.percentile(v, 50)) if v else 0.0,
                p95_ms=float(np.percentile(v, 95)) if v else 0.0,
                count=len(v),
            )
            for name, v in self.stats.stage_ms.items()
        )
        return Summary(
            samples_received=self._front.received, samples_processed=self._processed,
            chunks=self.stats.chunks, blocks=self.stats.blocks, cuts=self.stats.cuts,
            vad_segments=self.stats.vad_segments,
            wall_seconds=time.perf_counter() - self._t0, stages=stages,
        )
