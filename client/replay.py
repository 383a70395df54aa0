"""The pure state behind a resume: the restart grid, the replay buffer, and the filter
that keeps what the application has seen from repeating (``resume`` drives them).

No I/O and no clocks: each piece is a small state machine tested on its own
(tests/test_resume.py). Imports only the SDK's ``stream`` module (the event types).
"""

from __future__ import annotations

import dataclasses
import math

from seamcut.client.stream import (
    CutEvent,
    Event,
    FlushedEvent,
    ProgressEvent,
    ReadyEvent,
    StreamOptions,
    TraceEvent,
    VadSegmentEvent,
)


def grid_frames(block_ms: int, rate_hz: int) -> int:
    """The smallest restart step in client frames that is a whole number of analysis
    blocks (``block_ms`` at 16 kHz) and of client frames."""
    num = block_ms * rate_hz  # k blocks are whole frames once k * num is a multiple of 1000
    return num // math.gcd(num, 1000)


def restart_grid(ready: ReadyEvent, rate_hz: int) -> int | None:
    """The restart step for this stream, or None when only its first sample will do.

    The analysis blocks are laid from the stream's first sample, so a resumed stream
    analyses the same frames only from a point on their grid. A SONG stream that
    separates the vocal resumes from its first sample: its separation windows are laid
    from there too (the built-in separator's hop meets the block grid every 163.84 s),
    and even on both grids (a 960 ms hop, 10 s warm-up) its cuts after a resume moved
    by up to 40 ms (tests/test_resume.py; docs/DESIGN.md).
    """
    cfg = ready.config
    if cfg is not None and cfg.mode == "song" and not cfg.vocal_stem_channels:
        return None
    return grid_frames(ready.block_ms, rate_hz)


def restart_point(cut: int, origin: int, warmup: int, grid: int) -> int:
    """Where a resume after ``cut`` starts: ``warmup`` frames earlier, down on the grid
    laid from ``origin`` (frames, absolute), never before ``origin``."""
    return origin + max(0, (cut - warmup - origin) // grid * grid)


def ready_mismatch(first: ReadyEvent, again: ReadyEvent) -> str:
    """How a resumed stream's server would analyse differently from the first one's:
    its version, its block length, or its effective config (``start_sample`` aside);
    "" when they agree."""
    def effective(ready: ReadyEvent) -> StreamOptions | None:
        cfg = ready.config
        return None if cfg is None else dataclasses.replace(cfg, start_sample=0)

    diffs = []
    if again.server_version != first.server_version:
        diffs.append(f"server {again.server_version or '?'} "
                     f"(the stream began on {first.server_version or '?'})")
    if again.block_ms != first.block_ms:
        diffs.append(f"block_ms {again.block_ms} (not {first.block_ms})")
    a, b = effective(first), effective(again)
    if a != b and a is not None and b is not None:
        changed = [f"{f.name} {getattr(b, f.name)!r} (not {getattr(a, f.name)!r})"
                   for f in dataclasses.fields(b)
                   if getattr(a, f.name) != getattr(b, f.name)]
        diffs.append("config " + ", ".join(changed))
    elif a != b:
        diffs.append("a config it does not report" if b is None else "a reported config")
    return "; ".join(diffs)


class ReplayBuffer:
    """The wire bytes sent from ``base`` (an absolute frame index) on: at most
    ``max_frames`` of them, the oldest dropped first.

    ``anchored``: only ``origin``, the stream's first frame, will do as a restart point
    (a SONG stream that separates the vocal). Once such a buffer no longer reaches back
    to it, no resume is possible any more, so it is freed and keeps nothing (``spent``).
    """

    def __init__(self, base: int, frame_bytes: int, max_frames: int) -> None:
        self.origin = base
        self.base = base
        self.frame_bytes = frame_bytes
        self.max_frames = max_frames
        self.anchored = False
        self.spent = False
        self._end = base
        self._data = bytearray()

    @property
    def end(self) -> int:
        """The frame after the last one appended (counted when spent too)."""
        return self._end

    def reaches(self, start: int) -> bool:
        """Whether :meth:`since` can replay from ``start``."""
        return not self.spent and self.base <= start <= self._end

    def append(self, wire: bytes) -> None:
        self._end += len(wire) // self.frame_bytes
        if self.spent:
            return
        self._data += wire
        over = len(self._data) // self.frame_bytes - self.max_frames
        if over > 0:
            self._drop(over)
        if self.anchored and self.base > self.origin:
            self.spent = True
            self._data = bytearray()
            self.base = self._end

    def anchor(self) -> None:
        """From now on only ``origin`` will do as a restart point."""
        self.anchored = True
        self.append(b"")  # spent at once if it no longer reaches back there

    def trim(self, keep_from: int) -> None:
        """Forget the audio before ``keep_from``, the earliest restart point a resume
        may need now."""
        self._drop(keep_from - self.base)

    def _drop(self, frames: int) -> None:
        drop = min(max(0, frames), len(self._data) // self.frame_bytes)
        del self._data[:drop * self.frame_bytes]
        self.base += drop

    def since(self, start: int) -> bytes:
        if not self.reaches(start):
            raise ValueError(f"replay from {start}: the buffer holds {self.base}..{self._end}"
                             + (" (spent)" if self.spent else ""))
        return bytes(self._data[(start - self.base) * self.frame_bytes:])


class Delivered:
    """What the application has seen, to drop it when a resumed stream repeats it.

    After a resume the new stream must first find the last delivered cut again, at
    the same sample and of the same kind (:meth:`expect_last_cut`): the cut policy's
    state is the position of the last cut (min_segment, max_segment and the FORCED
    chain count from it), so a stream that re-found it goes on exactly as the
    uninterrupted one, and one that did not may place its next cuts elsewhere.
    Measured: a FORCED chain through music with no pause never re-synchronises
    (tests/test_resume.py); such a stream raises :class:`Desync` instead of
    delivering a shifted cut.

    Until it re-finds that cut the new stream's Progress and Flushed are held back
    too: their ``samples_final`` promises that no cut comes before it, a promise a
    stream that turns out off course cannot make. The delivered ``samples_final``
    never goes back, and a cut before it (a resumed stream contradicting what the
    first one promised) is a :class:`Desync` too.
    """

    def __init__(self) -> None:
        self.last_cut: int | None = None
        self.last_kind = ""
        self.cuts = 0
        self.final = -1  # the highest samples_final delivered
        self._resync = False
        self._vad_end = -1
        self._trace_end = -1
        self._processed = -1

    def expect_last_cut(self) -> None:
        """A resumed stream starts: hold its cuts until it re-finds the last one."""
        self._resync = self.last_cut is not None

    def admit(self, ev: Event) -> Event | None:
        """``ev`` as the application should see it, or None for a repeat (or a watermark
        of a stream not yet re-synchronised). Raises :class:`Desync` for a resumed
        stream's cut past the last delivered one that it did not re-find first, or
        before a delivered ``samples_final``."""
        if isinstance(ev, CutEvent):
            if self.last_cut is not None and ev.sample <= self.last_cut:
                if (self._resync and ev.sample == self.last_cut
                        and ev.kind == self.last_kind):
                    self._resync = False
                return None
            if self._resync and self.last_cut is not None:
                raise Desync(
                    f"the resumed stream did not find the last delivered cut again "
                    f"({self.last_kind} at sample {self.last_cut}; its next cut was "
                    f"{ev.kind} at {ev.sample})")
            if ev.sample < self.final:
                raise Desync(
                    f"the resumed stream cut at sample {ev.sample} ({ev.kind}), before "
                    f"samples_final {self.final} already delivered")
            self.last_cut, self.last_kind = ev.sample, ev.kind
            ev = dataclasses.replace(ev, index=self.cuts)
            self.cuts += 1
        elif isinstance(ev, VadSegmentEvent):
            if ev.start_sample < self._vad_end:
                return None
            self._vad_end = ev.end_sample
        elif isinstance(ev, TraceEvent):
            if ev.end_sample <= self._trace_end:
                return None
            self._trace_end = ev.end_sample
        elif isinstance(ev, ProgressEvent):
            if self._resync or ev.samples_processed <= self._processed:
                return None
            self._processed = ev.samples_processed
            return self._final(ev)
        elif isinstance(ev, FlushedEvent):
            if self._resync:
                return None
            return dataclasses.replace(ev, progress=self._final(ev.progress))
        return ev

    def _final(self, ev: ProgressEvent) -> ProgressEvent:
        if ev.samples_final >= self.final:
            self.final = ev.samples_final
            return ev
        return dataclasses.replace(ev, samples_final=self.final)


class Desync(Exception):
    """A resumed stream went past the last delivered cut without finding it again, or
    cut where the application was told no cut would come."""
