"""Per-stream front ends: decoded client frames in, units of engine work out.

SPEECH (and SONG with a client-supplied vocal stem): grid blocks of the analysis
source, straight to analysis. SONG with a separator: stereo windows at the
separator's rate for the engine's S1; :meth:`SongFrontend.assemble` turns the vocal
windows it returns back into grid blocks (overlap-add, resampling, re-blocking), in
the session, because that state is sequential per stream.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
from seamcut.server.config import ANALYSIS_RATE_HZ, AppConfig, StreamSpec
from seamcut.server.dsp.overlap_add import OverlapAdd
from seamcut.server.dsp.pcm import downmix
from seamcut.server.dsp.reblock import GridBlock, Reblocker
from seamcut.server.dsp.resample import StreamResampler
from seamcut.server.dsp.windows import WindowFeeder
from seamcut.server.engine.protocol import Kind, Request, Result, SeparatorInfo
from seamcut.server.errors import ConfigError
from seamcut.server.session.chain import Pending
from seamcut.server.session.report import ipc_ms

_EMPTY = np.zeros(0, np.float32)


@dataclass(slots=True)
class _SongJob:
    """A SONG unit between separation and assembly (assembled strictly in order)."""

    unit: SongUnit
    pending: Pending  # its trace info and release; assembly hands them to its blocks
    sent_ns: int = 0
    vocal: np.ndarray | None = None  # set when the separation result arrives


@dataclass(frozen=True, slots=True)
class SongUnit:
    windows: np.ndarray  # [m, 2, size]
    client: np.ndarray  # client mono since the previous unit
    mix16: np.ndarray  # the same mix mono at 16 kHz (for the mix VAD), since the previous unit
    total_model: int  # -1 until the last unit
    is_last: bool


Unit = GridBlock | SongUnit


class _Mix16:
    """The mix at 16 kHz from the grid's origin on, handed out block by block (for the
    mix VAD and the voice detector)."""

    def __init__(self, start16: int) -> None:
        self._buf = _EMPTY  # the mix at 16 kHz not yet given to a block
        self._start = start16  # analysis index of _buf[0]

    def add(self, x16: np.ndarray) -> None:
        self._buf = np.concatenate([self._buf, x16])

    def take(self, start16: int, length16: int) -> np.ndarray:
        """The mix over [start16, start16 + length16); zeros past its end (the
        detection source can run a few samples longer after its own resampler)."""
        lo = start16 - self._start
        out = self._buf[lo : lo + length16]
        self._buf = self._buf[lo + length16 :]
        self._start = start16 + length16
        if out.shape[0] < length16:
            out = np.pad(out, (0, length16 - out.shape[0]))
        return out


class DirectFrontend:
    """Detection on the mix (SPEECH) or on client-supplied vocal stem channels (SONG)."""

    def __init__(self, spec: StreamSpec, cfg: AppConfig, *, first_block: int = 0,
                 mix16: bool = False) -> None:
        """``first_block``: the grid block the stream's first frame starts (not 0 for a
        resumed stream's pre-roll: the grid is the stream's it resumes). ``mix16``:
        with stems, also give each block the mix at 16 kHz (:meth:`mix16_of`)."""
        rate = spec.format.sample_rate_hz
        self.reblock = Reblocker(rate, cfg.engine.block_samples, first_block=first_block)
        stems = list(spec.vocal_stem_channels)
        self._stems = stems
        self._mix = [c for c in range(spec.format.channels) if c not in stems]
        self.received = self.reblock.received  # client frames, counted from the grid's origin
        self._resample16 = StreamResampler(rate, ANALYSIS_RATE_HZ) if mix16 and stems else None
        self._mix16 = _Mix16(first_block * cfg.engine.block_samples)

    def push(self, frames: np.ndarray) -> list[Unit]:
        self.received += int(frames.shape[0])
        if not self._stems:
            return list(self.reblock.push(downmix(frames)))
        source, mix = downmix(frames[:, self._stems]), downmix(frames[:, self._mix])
        if self._resample16 is not None:
            self._mix16.add(self._resample16.process(mix))
        return list(self.reblock.push(source, mix))

    def finish(self) -> list[Unit]:
        if self._resample16 is not None:
            self._mix16.add(self._resample16.process(_EMPTY, last=True))
        return list(self.reblock.finish())

    def mix16_of(self, block: GridBlock) -> np.ndarray | None:
        """The mix at 16 kHz over ``block`` (blocks in order, each once), or None
        without it."""
        if self._resample16 is None:
            return None
        return self._mix16.take(block.start16, block.length16)

    def extra_delay16(self) -> int:
        return self.reblock.resampler.delay_out_samples()


class SongFrontend:
    """Separation windows at the model rate; the mix mono rides along for snapping."""

    def __init__(self, spec: StreamSpec, cfg: AppConfig, sep: SeparatorInfo, *,
                 first_block: int = 0) -> None:
        """``first_block`` as for :class:`DirectFrontend`; the separation windows are
        laid on the grid of the stream's origin too, so a resumed stream's windows are
        the ones its first stream separated."""
        rate = spec.format.sample_rate_hz
        start16 = first_block * cfg.engine.block_samples
        if start16 * sep.rate_hz % ANALYSIS_RATE_HZ:
            raise ValueError(f"block {first_block} does not start on a {sep.name} sample")
        start_model = start16 * sep.rate_hz // ANALYSIS_RATE_HZ
        size = sep.window_samples
        if spec.window_hop_ms:
            hop = spec.window_hop_ms * sep.rate_hz // 1000
        else:
            hop = size - int(size * cfg.separator.overlap)
        if not size // 4 <= hop <= size:
            lo, hi = -(-size // 4 * 1000 // sep.rate_hz), size * 1000 // sep.rate_hz
            raise ConfigError(
                f"config.separation.window_hop_ms: must be {lo} ..= {hi} ms for backend "
                f"{sep.name} (window {hi} ms)"
            )
        self.feeder = WindowFeeder(rate, sep.rate_hz, size, hop, start=start_model)
        self.backend = sep.name
        self.windows_sent = self.feeder.next_window  # the next window's index
        # Every separation result so far came through the CUDA pipeline (overlap-add
        # mixes a block's vocal from neighbouring windows, so one that did not taints
        # the blocks after it: the traces then claim nothing).
        self._s1_cuda = True
        self._jobs: dict[int, _SongJob] = {}  # by request id, in submission order
        self.ola = OverlapAdd(2, size, hop, start=start_model)
        self.reblock = Reblocker(rate, cfg.engine.block_samples, source_rate_hz=sep.rate_hz,
                                 first_block=first_block)
        self._mix16 = _Mix16(start16)
        self._sep = sep
        self._resample16 = StreamResampler(rate, ANALYSIS_RATE_HZ)
        self._pending: list[np.ndarray] = []
        self._pending16: list[np.ndarray] = []
        self.received = self.reblock.received  # client frames, counted from the grid's origin

    def push(self, frames: np.ndarray) -> list[Unit]:
        self.received += int(frames.shape[0])
        mono = downmix(frames)
        self._pending.append(mono)
        self._pending16.append(self._resample16.process(mono))
        stereo = frames if frames.shape[1] >= 2 else np.repeat(frames, 2, axis=1)
        windows = self.feeder.push(stereo[:, :2])
        if not windows.shape[0]:
            return []
        return [self._unit(windows, -1)]

    def finish(self) -> list[Unit]:
        windows, total = self.feeder.finish()
        self._pending16.append(self._resample16.process(_EMPTY, last=True))
        return [self._unit(windows, total)]

    def _unit(self, windows: np.ndarray, total: int) -> SongUnit:
        def take(parts: list[np.ndarray]) -> np.ndarray:
            out = np.concatenate(parts) if parts else _EMPTY
            parts.clear()
            return out

        return SongUnit(windows=windows, client=take(self._pending),
                        mix16=take(self._pending16), total_model=total, is_last=total >= 0)

    def extra_delay16(self) -> int:
        """Separation delay (a sample is final once every window over it is in) plus both
        resamplers' hold-back, in analysis samples."""
        sep = self._sep
        model = sep.window_samples + self.feeder.resampler.delay_out_samples()
        return (-(-model * ANALYSIS_RATE_HZ // sep.rate_hz)
                + self.reblock.resampler.delay_out_samples())

    def job(self, stream: str, req_id: int, unit: SongUnit, p: Pending) -> Request | None:
        """Queue ``unit`` for assembly; the SEPARATE request for its windows (None when
        it has none: it is assembled as soon as the units before it are)."""
        job = _SongJob(unit, p, time.monotonic_ns())
        self._jobs[req_id] = job
        m = int(unit.windows.shape[0])
        if not m:
            job.vocal = unit.windows
            return None
        self.windows_sent += m
        return Request(kind=Kind.SEPARATE, stream=stream, id=req_id,
                       index=self.windows_sent - m, audio=unit.windows, backend=self.backend)

    def separated(self, r: Result) -> None:
        """The engine's vocal windows for one job."""
        job = self._jobs[r.id]
        job.vocal = r.vocal
        p = job.pending
        p.separation_ms, p.separation_batch = r.separation_ms, r.batch_size
        p.separation_queue_ms, p.separation_ipc_ms = r.queue_ms, ipc_ms(r, job.sent_ns)
        self._s1_cuda = self._s1_cuda and r.pipeline == "cuda"
        p.separation_pipeline = "cuda" if self._s1_cuda else ""
        p.h2d_ms, p.d2h_ms = r.h2d_ms, r.d2h_ms

    def assembled(self) -> list[Pending]:
        """Blocks of the jobs whose vocal is in, in order (stops at the first that is
        not). A job's slot frees with its last block, or with a marker if it made none."""
        out: list[Pending] = []
        while self._jobs:
            req_id = next(iter(self._jobs))
            job = self._jobs[req_id]
            if job.vocal is None:
                break
            del self._jobs[req_id]
            p = job.pending
            entries = [dataclasses.replace(p, block=gb, mix16=mix16, releases=0)
                       for gb, mix16 in self.assemble(job.unit, job.vocal)]
            if entries:
                entries[-1].releases = p.releases
            out += entries or [p]
        return out

    def assemble(self, unit: SongUnit, vocal: np.ndarray) -> list[tuple[GridBlock, np.ndarray]]:
        """The vocal windows [m, 2, size] of ``unit`` -> the grid blocks now complete,
        each with the mix at 16 kHz over the same span (for the mix VAD). Units must
        come in order."""
        if unit.is_last:
            self.ola.set_total(unit.total_model)
        parts = [self.ola.add(v) for v in vocal]
        if unit.is_last:
            parts.append(self.ola.finish(unit.total_model))
        mono = (np.concatenate(parts, axis=1).mean(axis=0) if parts
                else _EMPTY).astype(np.float32)
        grid = self.reblock.push(mono, unit.client, client_complete=unit.is_last)
        if unit.is_last:
            grid += self.reblock.finish()
        self._mix16.add(unit.mix16)
        return [(gb, self._mix16.take(gb.start16, gb.length16)) for gb in grid]


Frontend = DirectFrontend | SongFrontend
