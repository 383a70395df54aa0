"""One stream's session: protocol state, decoding, back-pressure, events."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from seamcut.server.config import ANALYSIS_RATE_HZ, HOP_SAMPLES, AppConfig, Mode, StreamSpec
from seamcut.server.dsp import voice
from seamcut.server.dsp.detector import CutDecision, DetectorParams, DetectorState, SpeechSegment
from seamcut.server.dsp.pcm import decode
from seamcut.server.dsp.reblock import GridBlock
from seamcut.server.engine.client import EngineClient
from seamcut.server.engine.protocol import EMPTY, ErrorCode, Kind, Result, SeparatorInfo
from seamcut.server.errors import (
    ConfigError,
    InternalError,
    InvalidAudio,
    SeamcutError,
    SequenceError,
    echo,
    log_value,
)
from seamcut.server.events import (
    Checkpoint,
    ChunkTrace,
    CutKind,
    Event,
    Flushed,
    Notice,
    Progress,
    Ready,
    Summary,
    VadSegment,
)
from seamcut.server.models import voice_weights
from seamcut.server.session import checkpoint, report
from seamcut.server.session.chain import Analysed, AnalysisChain, Pending, detect_block
from seamcut.server.session.frontend import (
    DirectFrontend,
    Frontend,
    SongFrontend,
    Unit,
)
from seamcut.server.session.outbox import Outbox
from seamcut.server.session.report import SessionStats

log = logging.getLogger(__name__)
GPU_FALLBACK = "gpu_fallback"  # Notice code: the engine's GPU pipeline failed

# Chunks whose decoding costs more than about half a millisecond go to a thread, so
# one big message cannot stall every other stream; smaller ones are decoded on the
# loop, because a thread hand-off alone costs ~0.1 ms and takes the GIL back anyway.
# The unit is samples x a cost factor: ~2 us per 1000 samples at 16 kHz (no
# resampling), ~10 us per 1000 samples through the resampler (measured on the VM).
INLINE_DECODE_WORK = 262_144


@dataclass(slots=True)
class _Chunk:
    seq: int
    client_end: int  # client frames received up to and including this chunk
    send_ns: int
    recv_ns: int


class SessionObserver(Protocol):
    """What a session reports about itself beyond its events, for whoever watches it
    (the transport's telemetry). Defined here so that the session depends on nothing
    above it. Called on the event loop; implementations must be cheap (per block)."""

    def block(self, trace: ChunkTrace) -> None:
        """A block was analysed (whether or not the client asked for its trace)."""

    def cut(self, latency_s: float) -> None:
        """A cut became final: seconds from the receipt of the audio message that
        completed the block whose analysis decided it to the cut being queued for
        the client."""

    def fallback(self) -> None:
        """The engine's GPU pipeline failed and this stream goes on on the CPU."""


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


def unit_bytes(cfg: AppConfig, spec: StreamSpec, sep: SeparatorInfo | None) -> int:
    """Bytes of received audio (rate x channels x sample width) that one unit of work in
    flight stands for: a block, or a separation window in SONG mode."""
    ms = cfg.engine.block_ms
    if sep is not None:
        ms = max(ms, -(-sep.window_samples * 1000 // sep.rate_hz))
    return max(1, ms * spec.format.sample_rate_hz // 1000) * spec.format.frame_bytes


@functools.cache
def voice_net() -> voice.VoiceNet:
    """SONG mode's voice detector, loaded once per process."""
    return voice.load(str(voice_weights.PATH))


class Session:
    """Drive one stream. Call from the event loop only.

    The transport (or the offline runner) sends :meth:`ready`, then calls :meth:`audio` /
    :meth:`flush` in message order, then :meth:`finish` at half-close, and reads
    :attr:`events` until ``None``. :meth:`close` releases everything at any point.
    """

    def __init__(
        self, cfg: AppConfig, engine: EngineClient, spec: StreamSpec, budget: InflightBudget,
        observer: SessionObserver | None = None,
    ) -> None:
        self.cfg = cfg
        self._observer = observer
        self.spec = spec
        self.engine = engine
        self.id = uuid.uuid4().hex[:16]
        self.events = Outbox()
        self.error: SeamcutError | None = None
        self._budget = budget
        self._loop = asyncio.get_running_loop()
        fmt = spec.format
        self._params = DetectorParams.build(spec.policy, cfg.detector, fmt.sample_rate_hz,
                                            separated=spec.separator != "none",
                                            song=spec.mode is Mode.SONG)
        self._detector = DetectorState()
        # SONG (a separator's estimate or a client's stem): the voice detector runs
        # with the detector, here.
        params = self._params
        self._voice_net = voice_net() if params.voice_cap or params.voice_floor else None
        self._voice = (voice.initial_state(self._voice_net) if self._voice_net is not None
                       else None)
        info = engine.info
        sep = None
        if spec.separator != "none":
            sep = info.separator(spec.separator)
            if sep is None:
                loaded = ", ".join(s.name for s in info.separators) or "none"
                raise ConfigError(
                    f"config.separation.backend: {echo(spec.separator)} is not loaded on this "
                    f"server (loaded: {loaded}; see GetCapabilities.separators)")
        self._song = sep is not None
        # Silero on the mix: SONG's mix vote with a separator; the voice detector's
        # input with a stem.
        self._mix_vad = self._song or (self._voice_net is not None
                                       and bool(spec.vocal_stem_channels))
        self._sep = sep
        self._digest = checkpoint.config_digest(cfg, spec, sep)
        self._step = checkpoint.grid_step(cfg, fmt.sample_rate_hz, sep)
        # Positions are counted from the grid's origin: the stream's start, or for a
        # resumed stream the start of the stream it resumes (self._origin + local).
        self._origin = spec.start_sample
        self._resume: checkpoint.ResumePoint | None = None
        first_block = 0
        if spec.resume_token:
            self._resume = self._resumed(spec)
            self._origin = self._resume.origin
            first_block = ((spec.start_sample - self._origin) * ANALYSIS_RATE_HZ
                           // fmt.sample_rate_hz // cfg.engine.block_samples)
        self._front: Frontend = (SongFrontend(spec, cfg, sep, first_block=first_block)
                                 if sep is not None
                                 else DirectFrontend(spec, cfg, first_block=first_block,
                                                     mix16=self._mix_vad))
        # Memory by cost: the stream's units in flight are bounded by the bytes of
        # received audio they stand for, so a high-rate many-channel stream cannot
        # hold more than server.stream_buffer_mib, whatever its rate.
        unit = unit_bytes(cfg, spec, info.separator(spec.separator) if self._song else None)
        allowance = int(cfg.server.stream_buffer_mib * (1 << 20))
        self.max_inflight = max(2, min(cfg.engine.max_inflight_per_stream, allowance // unit))
        self.buffer_bytes = self.max_inflight * unit  # what admission reserves for it
        self._chain = AnalysisChain(self.id, mix_vad=self._mix_vad,
                                    max_blocks=cfg.engine.max_batch_blocks_per_stream)
        self._analysed_all = False  # the stream's last block is analysed
        self._preroll: list[np.ndarray] = []  # client audio of the pre-roll, from its start
        self._next_block = first_block  # the next block to analyse
        self._checkpoint_at = 0  # local frame of the last checkpoint (or of the start)
        self._checkpoint_every = (spec.events.checkpoint_interval_ms * fmt.sample_rate_hz
                                  // 1000)
        # Only separation can run on a GPU; VAD and detection run on the CPU.
        self._device = info.device if self._song else "cpu"
        engine.register(self.id, self._on_result, self._on_notice)
        self._per_stream = asyncio.Semaphore(self.max_inflight)
        self._room = asyncio.Event()
        self._room.set()
        self._inflight = 0
        self._chunks: deque[_Chunk] = deque()
        self._next_seq = 0
        self._processed = self._front.received
        self._final = self._front.received
        self._fallback_told = False
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
        direct = fmt.sample_rate_hz == ANALYSIS_RATE_HZ and not self._song
        self._inline_frames = INLINE_DECODE_WORK // (fmt.channels * (1 if direct else 5))
        if self._resume is not None:
            r = self._resume
            self._chain.vad_state, self._chain.mix_state = r.vad_state, r.mix_state
            self._detector = r.detector
            self._voice = r.voice
            self._processed = self._checkpoint_at = r.sample
            # Not r.sample: a pause before the checkpoint may still be undecided there,
            # and samples_final promises that no cut comes before it.
            self._final = r.detector.final_client
            self.stats.cuts = r.cuts  # cut indexes go on from the first stream's
        self._first_cut = self.stats.cuts

    def _resumed(self, spec: StreamSpec) -> checkpoint.ResumePoint:
        """The checkpoint a resumed stream goes on from (ConfigError if it cannot)."""
        fmt = self.spec.format
        r = checkpoint.decode(spec.resume_token, self._digest, mix_vad=self._mix_vad,
                              voice_shape=((0, 0) if self._voice_net is None
                                           else self._voice_net.hidden),
                              block_samples=self.cfg.engine.block_samples,
                              rate_hz=fmt.sample_rate_hz)
        local = spec.start_sample - r.origin
        if not 0 <= local <= r.resume_from or local % self._step:
            raise ConfigError(
                f"config.start_sample: {spec.start_sample} with this resume token; it must "
                f"be the Checkpoint's resume_from ({r.origin + r.resume_from}), or earlier "
                f"by a multiple of {self._step} frames and not before "
                f"{r.origin} (the first stream's start)")
        return r

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
        self.engine.unregister(self.id)
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
        now = time.perf_counter()
        if isinstance(unit, GridBlock):
            assert isinstance(self._front, DirectFrontend)
            self._chain.add(self._preroll_or(Pending(
                unit, 1, self._seq_at(unit.client_start), last.seq, last.send_ns,
                last.recv_ns, now, mix16=self._front.mix16_of(unit))))
            self._pump()
            return
        first = self._chunks[0].seq if self._chunks else 0
        while len(self._chunks) > 1:  # the job covers every chunk so far
            self._chunks.popleft()
        assert isinstance(self._front, SongFrontend)
        req = self._front.job(self.id, self.engine.new_id(), unit,
                              Pending(None, 1, first, last.seq, last.send_ns, last.recv_ns, now))
        if req is not None:
            self.engine.submit(req)
        else:
            self._assemble()

    def _pump(self) -> None:
        """Send the chain's next requests while it may (markers alone finish at once)."""
        while not self._closed:
            group = self._chain.take()
            if group is None:
                return
            if all(p.block is None for p in group):
                self._analysed([Analysed(p, EMPTY, None, EMPTY) for p in group])
                continue
            self.engine.submit(self._chain.request(group, self.engine.new_id(),
                                                   time.monotonic_ns()))

    def _assemble(self) -> None:
        """Separated units, in submission order, become blocks for analysis."""
        assert isinstance(self._front, SongFrontend)
        for p in self._front.assembled():
            self._chain.add(self._preroll_or(p))
        self._pump()

    def _preroll_or(self, p: Pending) -> Pending:
        """``p``, or for a block of a resumed stream's pre-roll (before its checkpoint) a
        marker in its place: the pre-roll settles the front end and refills the
        detector's ring, and is not analysed (no cut, trace or segment comes of it)."""
        r, b = self._resume, p.block
        if r is None or b is None:
            return p
        if b.index >= r.block:
            if self._preroll:  # the first block after the pre-roll: the ring is whole
                ring = np.concatenate(self._preroll)
                start = b.client_start - ring.shape[0]
                self._detector = dataclasses.replace(
                    self._detector, ring=ring[self._detector.ring_start - start:])
                self._preroll = []
            self._resume = None
            return p
        if b.is_last:
            end = b.client_start + b.client.shape[0] + self._origin
            self._end_with(InvalidAudio(
                f"audio: the stream ended at frame {end}, before its resume token's "
                f"checkpoint at {r.sample + self._origin}: send the audio from "
                "Checkpoint.resume_from to the end"))
        if b.client_start + b.client.shape[0] > r.detector.ring_start:
            self._preroll.append(b.client)
        return dataclasses.replace(p, block=None, mix16=None)

    def _checkpoint(self) -> None:
        """Queue a Checkpoint when one is due (``events.checkpoint_interval_ms`` of audio
        analysed since the last one)."""
        every = self._checkpoint_every
        if (not every or self._closed or self.error is not None or self._resume is not None
                or self._processed - self._checkpoint_at < every or self._analysed_all):
            return
        fmt, det = self.spec.format, self._detector
        w = self._processed
        need = w - checkpoint.preroll_frames(self.cfg, fmt.sample_rate_hz, self._sep)
        start = max(0, min(need, det.ring_start)) // self._step * self._step
        point = checkpoint.ResumePoint(
            origin=self._origin, block=self._next_block, sample=w, resume_from=start,
            cuts=self.stats.cuts, vad_state=self._chain.vad_state,
            mix_state=self._chain.mix_state, detector=checkpoint.without_ring(det),
            voice=self._voice)
        self._checkpoint_at = w
        self._put(Checkpoint(sample=w + self._origin, resume_from=start + self._origin,
                             cuts=self.stats.cuts,
                             token=checkpoint.encode(point, self._digest)))

    def consumed(self) -> None:
        """The writer took an event off the queue."""
        if self.events.qsize() <= self.cfg.server.writer_queue_events:
            self._room.set()

    def _seq_at(self, client_index: int) -> int:
        while len(self._chunks) > 1 and self._chunks[0].client_end <= client_index:
            self._chunks.popleft()
        return self._chunks[0].seq if self._chunks else 0

    # ---------------------------------------------------------------- results
    def _on_notice(self, code: str, message: str) -> None:
        if not self._closed:
            self._put(Notice(code=code, message=message))

    def _on_result(self, r: Result) -> None:
        """An engine result for this stream (event loop). A bug while handling it ends
        this stream with INTERNAL; it must not vanish in a loop callback and leave the
        stream waiting forever."""
        if self._closed or self.error is not None:
            return  # after the first failure the stream only ends; later results are moot
        try:
            self._handle(r)
        except Exception as exc:
            log.exception("handling an engine result failed session_id=%s request_id=%s",
                          self.id, self._request_id(),
                          extra={"session_id": self.id, "request_id": self._request_id()})
            self._end_with(InternalError(f"internal error in session {self.id}: {exc!r}"))

    def _handle(self, r: Result) -> None:
        if r.error is not ErrorCode.OK:
            resume = self._final + self._origin
            self._end_with(report.error_of(r, self.id, resume))
            return
        if r.fallback and not self._fallback_told:
            self._fallback_told = True
            if self._observer is not None:
                self._observer.fallback()
            self._put(Notice(code=GPU_FALLBACK, message=(
                f"the GPU pipeline failed ({r.fallback}); this stream goes on on the CPU, "
                "where it left off: nothing is lost")))
        if r.kind is Kind.SEPARATE:
            assert isinstance(self._front, SongFrontend)
            self._front.separated(r)
            self._assemble()
            return
        done, sent_ns = self._chain.complete(r)
        self._pump()  # gathered blocks go out before the detector runs on these
        self._analysed(done, r, report.ipc_ms(r, sent_ns))
        # Here the chain's VAD states and the detector are both at the end of this
        # request's last block: the one point where a checkpoint is whole.
        self._checkpoint()

    def _end_with(self, error: SeamcutError) -> None:
        """The stream fails: the writer sends ``error``'s status after what is queued."""
        self.error = error
        self.events.put_nowait(None)

    def _analysed(self, entries: list[Analysed], r: Result | None = None,
                  ipc_ms: float = 0.0) -> None:
        for a in entries:
            p = a.pending
            for _ in range(p.releases):
                self._inflight -= 1
                self._released += 1
                self._budget.release()
                self._per_stream.release()
            if p.block is not None:
                assert r is not None
                self._block_done(a, r, ipc_ms)
            while self._flushes and self._flushes[0][0] <= self._released:
                _, fid = self._flushes.popleft()
                self._put(Flushed(flush_id=fid, progress=self._progress_event()))
            if p.block is not None and p.block.is_last:
                self._analysed_all = True
                self._flush_progress()
                self._put(self._summary())
                self.events.put_nowait(None)

    def _block_done(self, a: Analysed, r: Result, ipc: float) -> None:
        p, b = a.pending, a.pending.block
        assert b is not None
        t0 = time.perf_counter()
        self._detector, events, self._voice = detect_block(
            self._detector, self._params, a, self._voice_net, self._voice)
        detect_ms = (time.perf_counter() - t0) * 1000
        off = self._origin
        observer = self._observer
        for ev in events:
            if isinstance(ev, CutDecision):
                self._put(report.cut_event(ev, off=off, rate_hz=self.spec.format.sample_rate_hz,
                                           index=self.stats.cuts))
                self.stats.cuts += 1
                # The END cut is decided by the half-close, not by audio: not timed.
                if observer is not None and ev.kind is not CutKind.END:
                    observer.cut((time.time_ns() - p.recv_ns) / 1e9)
            elif isinstance(ev, SpeechSegment) and self.spec.events.vad_segments:
                self.stats.vad_segments += 1
                self._put(VadSegment(start_sample=ev.start + off, end_sample=ev.end + off,
                                     mean_probability=ev.mean_probability))
        self._processed = b.client_start + int(b.client.shape[0])
        self._final = self._detector.final_client
        self._next_block = b.index + 1
        times = report.block_times(p, r, detect_ms=detect_ms, ipc=ipc)
        self.stats.record(times)
        if self.spec.events.chunk_traces or observer is not None:
            trace = report.chunk_trace(p, r, times, off=off, device=self._device,
                                       song=self._song)
            if self.spec.events.chunk_traces:
                self._put(trace)
            if observer is not None:
                observer.block(trace)
        self._progress()

    def _progress_event(self) -> Progress:
        off = self._origin
        # A resumed stream's detector starts at its checkpoint, ahead of the pre-roll
        # audio it has yet to receive again: received >= processed >= final holds
        # (PROTOCOL.md), and a lower watermark only promises less.
        received = self._front.received
        processed = min(self._processed, received)
        return Progress(
            samples_received=received + off,
            samples_processed=processed + off,
            samples_final=min(self._final, processed) + off,
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

    def _request_id(self) -> str:
        """StreamConfig.request_id for a log line (quoted when it is not plain text)."""
        return log_value(self.spec.request_id)

    def _put(self, ev: Event) -> None:
        self.events.put_nowait(ev)

    def _summary(self) -> Summary:
        # This stream's own counts: a resumed stream's positions start past its origin,
        # and its cut count goes on from its token's.
        first = self.spec.start_sample - self._origin
        stats = dataclasses.replace(self.stats, cuts=self.stats.cuts - self._first_cut)
        return report.summary(
            stats, received=self._front.received - first, processed=self._processed - first,
            wall_s=time.perf_counter() - self._t0, engine=self.engine.stream_engine(self.id),
            device=self._device, short_pause=self._short_pause())

    def _short_pause(self) -> tuple[int, int]:
        """(ms, first frame incl. start_sample) of the longest too-short silence."""
        d = self._detector
        if d.short_pause_start < 0:
            return 0, 0
        start = self._params.to_client(d.short_pause_start)
        end = self._params.to_client(d.short_pause_start + d.short_pause_hops)
        ms = round((end - start) * 1000 / self.spec.format.sample_rate_hz)
        return ms, start + self._origin
