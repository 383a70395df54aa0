"""The pure state behind a resume: the replay buffer, and the filter that keeps what
the application has seen from repeating (``resume`` drives them).

No I/O and no clocks: each piece is a small state machine tested on its own
(tests/test_replay.py). Imports only the SDK's ``stream`` module (the event types).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Restart:
    """Where a resumed stream starts: ``start_sample`` and the token to send, and the
    index of the first cut it will make (None: the first stream's, no token)."""

    start: int
    token: bytes = b""
    cuts: int | None = None


def ready_mismatch(first: ReadyEvent, again: ReadyEvent) -> str:
    """How a resumed stream's server would analyse differently from the first one's:
    its version, its block length, or its effective config (``start_sample`` aside);
    "" when they agree. (The server refuses a resume token made by another version or
    config too; this check also covers a restart from the first sample, and says what
    differs.)"""
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
    ``max_frames`` of them, the oldest dropped first."""

    def __init__(self, base: int, frame_bytes: int, max_frames: int) -> None:
        self.base = base
        self.frame_bytes = frame_bytes
        self.max_frames = max_frames
        self._end = base
        self._data = bytearray()

    @property
    def end(self) -> int:
        """The frame after the last one appended."""
        return self._end

    def reaches(self, start: int) -> bool:
        """Whether :meth:`since` can replay from ``start``."""
        return self.base <= start <= self._end

    def append(self, wire: bytes) -> None:
        self._end += len(wire) // self.frame_bytes
        self._data += wire
        over = len(self._data) // self.frame_bytes - self.max_frames
        if over > 0:
            self._drop(over)

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
            raise ValueError(f"replay from {start}: the buffer holds {self.base}..{self._end}")
        return bytes(self._data[(start - self.base) * self.frame_bytes:])


class Delivered:
    """What the application has seen, to drop it when a resumed stream repeats it.

    A resumed stream goes on from a checkpoint (or from the first stream's start), so
    it makes again the cuts the first one made after that point, with the same
    indexes: each must be the delivered one of its index, at the same sample and of
    the same kind, before anything new is delivered. Until it has repeated them all
    its Progress and Flushed are held back too: their ``samples_final`` promises that
    no cut comes before it, a promise a stream that turns out off course cannot
    make. A repeat that differs, a cut that skips an index, or a new cut before a
    delivered ``samples_final`` raises :class:`Desync` instead of delivering it.
    """

    def __init__(self) -> None:
        self.final = -1  # the highest samples_final delivered
        self.next_index: int | None = None  # the index of the next new cut
        self._cuts: dict[int, tuple[int, str]] = {}  # delivered since the checkpoint
        self._since = 0  # the checkpoint's first index: _cuts holds those from it
        self._first: int | None = None  # the index of the first cut delivered
        self._repeat_to = -1  # a resumed stream repeats the cuts before this index
        self._expect = 0  # ... and this is the next one it must repeat
        self._vad_end = -1
        self._trace_end = -1
        self._processed = -1

    @property
    def cuts(self) -> int:
        """Cuts delivered."""
        return 0 if self.next_index is None or self._first is None else (
            self.next_index - self._first)

    @property
    def catching_up(self) -> bool:
        return self.next_index is not None and self._repeat_to > -1

    def checkpoint(self, cuts: int) -> None:
        """A checkpoint after ``cuts`` cuts: a resume from it repeats only those after."""
        self._since = cuts
        self._cuts = {i: c for i, c in self._cuts.items() if i >= cuts}

    def resumed(self, first_index: int | None) -> None:
        """A resumed stream starts; its first cut has index ``first_index`` (None: the
        first stream's first)."""
        if first_index is None:
            first_index = self._first
        if self.next_index is None or first_index is None or first_index >= self.next_index:
            self._repeat_to = -1
            return
        if first_index < self._since:
            raise ValueError(f"resumed before the checkpoint ({first_index} < {self._since})")
        self._repeat_to, self._expect = self.next_index, first_index

    def admit(self, ev: Event) -> Event | None:
        """``ev`` as the application should see it, or None for a repeat (or a watermark
        of a stream still repeating). Raises :class:`Desync` for a cut that is not the
        one an uninterrupted run makes there."""
        if isinstance(ev, CutEvent):
            return self._cut(ev)
        if isinstance(ev, VadSegmentEvent):
            if ev.start_sample < self._vad_end:
                return None
            self._vad_end = ev.end_sample
        elif isinstance(ev, TraceEvent):
            if ev.end_sample <= self._trace_end:
                return None
            self._trace_end = ev.end_sample
        elif isinstance(ev, ProgressEvent):
            if self.catching_up or ev.samples_processed <= self._processed:
                return None
            self._processed = ev.samples_processed
            return self._final(ev)
        elif isinstance(ev, FlushedEvent):
            if self.catching_up:
                return None
            return dataclasses.replace(ev, progress=self._final(ev.progress))
        return ev

    def _cut(self, ev: CutEvent) -> CutEvent | None:
        nxt = self.next_index
        if self.catching_up:  # a resumed stream repeats the cuts from its checkpoint
            if ev.index != self._expect:
                raise Desync(f"the resumed stream's cut {ev.index} ({ev.kind} at sample "
                             f"{ev.sample}) skips cut {self._expect}")
            was = self._cuts.get(ev.index)
            if was != (ev.sample, ev.kind):
                what = "" if was is None else f" ({was[1]} at sample {was[0]})"
                raise Desync(f"the resumed stream's cut {ev.index} is {ev.kind} at sample "
                             f"{ev.sample}, not the delivered one{what}")
            self._expect += 1
            if self._expect == nxt:
                self._repeat_to = -1  # caught up: what comes next is new
            return None
        if nxt is not None and ev.index != nxt:
            raise Desync(f"the resumed stream's cut {ev.index} ({ev.kind} at sample "
                         f"{ev.sample}) is not cut {nxt}, the next one")
        if ev.sample < self.final:
            raise Desync(
                f"the resumed stream cut at sample {ev.sample} ({ev.kind}), before "
                f"samples_final {self.final} already delivered")
        if self._first is None:
            self._first = ev.index
        self._cuts[ev.index] = (ev.sample, ev.kind)
        self.next_index = ev.index + 1
        return ev

    def _final(self, ev: ProgressEvent) -> ProgressEvent:
        if ev.samples_final >= self.final:
            self.final = ev.samples_final
            return ev
        return dataclasses.replace(ev, samples_final=self.final)


class Desync(Exception):
    """A resumed stream made a cut the uninterrupted run does not make there, or cut
    where the application was told no cut would come."""
