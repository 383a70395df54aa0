"""The engine: one per device, shared by all streams."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import numpy as np
from seamcut.server.config import (
    ANALYSIS_RATE_HZ,
    HOP_SAMPLES,
    VAD_FRAME_SAMPLES,
    AppConfig,
)
from seamcut.server.dsp.detector import BlockInput, DetectorEvent, detect_finish, detect_step
from seamcut.server.dsp.features import band_energy_db
from seamcut.server.engine.blocks import Block, BlockResult, SepJob
from seamcut.server.engine.device import CPU_PROVIDERS, Device, confirm_ort, select_device
from seamcut.server.engine.separation import SeparationRunner
from seamcut.server.engine.stages import Stage
from seamcut.server.errors import ConfigError, InternalError, SeamcutError
from seamcut.server.events import StageTimes
from seamcut.server.models.loader import load_separators
from seamcut.server.models.separator import Separator
from seamcut.server.models.vad import SileroVad, VadState

log = logging.getLogger(__name__)


class EngineCounters:
    """Thread-safe counters that tests and metrics read (created == released)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.blocks_submitted = 0
        self.blocks_done = 0
        self.blocks_dropped = 0
        self.batches = 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    @property
    def blocks_in_flight(self) -> int:
        with self._lock:
            return self.blocks_submitted - self.blocks_done - self.blocks_dropped


class Engine:
    """S1 (separation, for SONG streams), S2 (VAD) and S3 (features + detection)."""

    def __init__(self, cfg: AppConfig, *, separators: bool = True) -> None:
        """``separators=False`` skips loading the SONG backends (torch and model files):
        for in-process SPEECH-only use, where start-up time counts."""
        self.cfg = cfg
        self.device: Device = select_device(cfg.engine.device)
        self.vad = SileroVad(providers=CPU_PROVIDERS, threads=cfg.engine.vad_threads)
        self.separators = (
            load_separators(cfg.separator, device=self.device.name,
                            providers=self.device.ort_providers())
            if separators else {}
        )
        for sep in self.separators.values():
            if hasattr(sep, "providers"):  # backends with an ONNX Runtime session
                self.device = confirm_ort(self.device, list(sep.providers))
        if self.device.fallback_reason:
            log.warning("device %s: %s", self.device.name, self.device.fallback_reason)
        self.counters = EngineCounters()
        wait_s = cfg.engine.batch_wait_ms / 1000
        self._s3: Stage[Block] = Stage(
            "s3-detect",
            self._run_s3,
            max_streams=cfg.engine.max_batch_streams,
            wait_s=0.0,
            on_drop=self._dropped,
        )
        self._s2: Stage[Block] = Stage(
            "s2-vad",
            self._run_s2,
            max_streams=cfg.engine.max_batch_streams,
            max_per_stream=cfg.engine.max_batch_blocks_per_stream,
            wait_s=wait_s,
            on_drop=self._dropped,
        )
        self._s1: Stage[SepJob] = Stage(
            "s1-separate",
            SeparationRunner(self.separators, self._s2.put, self._fail_job),
            max_streams=cfg.engine.max_batch_streams,
            wait_s=wait_s,
            on_drop=self._dropped_job,
        )
        self._started = False
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._s1.start()
                self._s2.start()
                self._s3.start()
                self._started = True

    def stop(self) -> None:
        with self._lock:
            if self._started:
                self._s1.stop()
                self._s2.stop()
                self._s3.stop()
                self._started = False

    def warm_up(self) -> None:
        """Run every model once so the first stream does not pay for initialisation."""
        frames = np.zeros((1, VAD_FRAME_SAMPLES), np.float32)
        self.vad.run_sequence(frames, VadState.initial())
        self.vad.run_batched([frames] * 3, [VadState.initial()] * 3)
        for sep in self.separators.values():
            sep.separate(np.zeros((1, 2, sep.window_samples), np.float32))

    def separator(self, name: str) -> Separator:
        """The loaded backend ``name`` (ConfigError naming the loaded ones otherwise)."""
        if name not in self.separators:
            loaded = ", ".join(self.separators) or "none"
            raise ConfigError(
                f"config.separation.backend: {name!r} is not loaded on this server "
                f"(loaded: {loaded}; see GetCapabilities.separators)"
            )
        return self.separators[name]

    # ---------------------------------------------------------------- streams
    def submit(self, block: Block) -> None:
        """Queue a block (never blocks; the session bounds how many are in flight)."""
        self.counters.add("blocks_submitted")
        block.t_submit = time.perf_counter()
        self._s2.put(block)

    def submit_job(self, job: SepJob) -> None:
        """Queue separation windows of a SONG stream (never blocks)."""
        self.counters.add("blocks_submitted")
        job.t_submit = time.perf_counter()
        self._s1.put(job)

    def queue_depths(self) -> dict[str, int]:
        return {"s1": self._s1.depth(), "s2": self._s2.depth(), "s3": self._s3.depth()}

    def _dropped(self, block: Block) -> None:
        if block.releases:
            self.counters.add("blocks_dropped")

    def _dropped_job(self, job: SepJob) -> None:
        self.counters.add("blocks_dropped")

    def _fail_job(self, job: SepJob, err: SeamcutError) -> None:
        self.counters.add("blocks_done")
        job.stream.deliver(
            BlockResult(
                index=-1,
                client_start=0,
                client_end=0,
                first_seq=job.first_seq,
                last_seq=job.last_seq,
                client_send_time_ns=job.client_send_time_ns,
                receive_time_ns=job.receive_time_ns,
                is_last=job.is_last,
                events=(),
                final_client=0,
                times=StageTimes(),
                batch_size=0,
                marker=True,
                error=err,
            )
        )

    # ---------------------------------------------------------------- S2: VAD
    def _run_s2(self, batch: list[Block]) -> None:
        groups: dict[str, list[Block]] = defaultdict(list)
        for b in batch:
            groups[b.stream.key].append(b)
        streams = list(groups.values())
        t0 = time.perf_counter()
        try:
            self._vad_groups(streams)
            failed: list[tuple[list[Block], SeamcutError]] = []
        except Exception:  # isolate the stream that broke the batch
            log.exception("batched VAD call failed; retrying stream by stream")
            failed = []
            for group in streams:
                try:
                    self._vad_groups([group])
                except Exception as exc:
                    log.exception("VAD failed for stream %s", group[0].stream.key)
                    failed.append((group, InternalError(f"VAD stage failed: {exc!r}")))
        dt = (time.perf_counter() - t0) * 1000
        bad = {id(b) for group, _ in failed for b in group}
        for group, err in failed:
            for b in group:
                self._fail(b, err)
        for b in batch:
            if id(b) not in bad:
                b.times["vad_ms"] = dt
                b.batch_size = len(streams)
                self._s3.put(b)
        self.counters.add("batches")

    def _vad_groups(self, streams: list[list[Block]]) -> None:
        """One batched Silero pass: each stream's frames, plus the mix for SONG streams."""
        frames = [np.concatenate([_vad_frames(b.samples16[HOP_SAMPLES:], b.length16)
                                  for b in g]) for g in streams]
        states = [g[0].stream.vad for g in streams]
        mixed = [g for g in streams if g[0].stream.song is not None]
        for g in mixed:
            frames.append(np.concatenate([
                _vad_frames(b.samples16[:0] if b.mix16 is None else b.mix16, b.length16)
                for b in g
            ]))
            song = g[0].stream.song
            assert song is not None
            states.append(song.vad_mix)
        probs, new_states = self.vad.run_sequences(frames, states)
        for g, p, st in zip(streams, probs, new_states, strict=False):
            _scatter(g, p, "probs")
            g[0].stream.vad = st
        for g, p, st in zip(mixed, probs[len(streams):], new_states[len(streams):],
                            strict=True):
            _scatter(g, p, "probs_mix")
            song = g[0].stream.song
            assert song is not None
            song.vad_mix = st

    # ---------------------------------------------------------------- S3: detection
    def _run_s3(self, batch: list[Block]) -> None:
        for b in batch:
            if b.marker:
                self._done(b)
                b.stream.deliver(_result(b, (), 0, StageTimes()))
                continue
            t0 = time.perf_counter()
            try:
                result = self._detect(b)
            except Exception as exc:
                log.exception("detection failed for stream %s", b.stream.key)
                self._fail(b, InternalError(f"detection stage failed: {exc!r}"))
                continue
            dt = (time.perf_counter() - t0) * 1000
            total = (time.perf_counter() - b.t_submit) * 1000
            times = StageTimes(
                queue_wait_ms=b.t_queue * 1000,
                separation_ms=b.separation_ms,
                vad_ms=b.times.get("vad_ms", 0.0),
                features_ms=dt,
                total_ms=total,
            )
            self._done(b)
            b.stream.deliver(_result(b, result[0], result[1], times))

    def _detect(self, b: Block) -> tuple[tuple[DetectorEvent, ...], int]:
        st = b.stream
        det = self.cfg.detector
        n_hops = -(-b.length16 // HOP_SAMPLES)
        energy = band_energy_db(
            b.samples16,
            n_hops,
            rate_hz=ANALYSIS_RATE_HZ,
            low_hz=det.band_low_hz,
            high_hz=det.band_high_hz,
        )
        assert b.probs is not None
        hop_pos = b.start16 + HOP_SAMPLES * np.arange(n_hops)
        frame_idx = (hop_pos - b.start16) // VAD_FRAME_SAMPLES
        state, events = detect_step(
            st.detector,
            st.params,
            BlockInput(
                start_hop=b.start16 // HOP_SAMPLES,
                probs=b.probs[frame_idx],
                probs_mix=None if b.probs_mix is None else b.probs_mix[frame_idx],
                energy_db=energy,
                client_start=b.client_start,
                client=b.client,
                is_last=b.is_last,
            ),
        )
        if b.is_last:
            state, tail = detect_finish(state, st.params, b.client_end)
            events = events + tail
        st.detector = state
        return tuple(events), state.final_client

    def _done(self, b: Block) -> None:
        """A submitted unit is finished when the block carrying its release is."""
        if b.releases:
            self.counters.add("blocks_done")

    def _fail(self, b: Block, err: SeamcutError) -> None:
        self._done(b)
        b.stream.deliver(_result(b, (), b.stream.detector.final_client, StageTimes(), err))


def _frame_count(length16: int) -> int:
    return -(-length16 // VAD_FRAME_SAMPLES)


def _scatter(group: list[Block], probs: np.ndarray, attr: str) -> None:
    offset = 0
    for b in group:
        n = _frame_count(b.length16)
        setattr(b, attr, probs[offset : offset + n])
        offset += n


def _vad_frames(x: np.ndarray, length16: int) -> np.ndarray:
    """``length16`` samples as [n, 512] VAD frames, the last one zero-padded."""
    n = _frame_count(length16)
    x = x[:length16]
    if x.shape[0] < n * VAD_FRAME_SAMPLES:
        x = np.pad(x, (0, n * VAD_FRAME_SAMPLES - x.shape[0]))
    return x.reshape(n, VAD_FRAME_SAMPLES)


def _result(
    b: Block,
    events: tuple[DetectorEvent, ...],
    final_client: int,
    times: StageTimes,
    error: SeamcutError | None = None,
) -> BlockResult:
    return BlockResult(
        index=b.index,
        client_start=b.client_start,
        client_end=b.client_end,
        first_seq=b.first_seq,
        last_seq=b.last_seq,
        client_send_time_ns=b.client_send_time_ns,
        receive_time_ns=b.receive_time_ns,
        is_last=b.is_last,
        events=events,
        final_client=final_client,
        times=times,
        batch_size=b.batch_size,
        error=error,
        releases=b.releases,
        marker=b.marker,
        separation_batch=b.separation_batch,
    )
