"""Streams that survive losing their replica: the SDK's replay buffer and resume loop.

A stream whose server goes away after its Ready (UNAVAILABLE: killed, crashed,
connection lost, engine lost) or announces a drain while audio is still coming is
opened again, on the next replica the channel picks, with ``StreamConfig.start_sample
= W`` and the audio from ``W`` re-sent from a bounded replay buffer. ``W`` is the last
delivered cut minus a 10 s warm-up, aligned down to the block grid (the analysis grid
starts at the stream's first sample); the detector's signal state converges within
the warm-up, and its policy state is the last cut, so the new stream must find the
last delivered cut again, at the same sample and of the same kind, before anything
after it is delivered (else it is retried from 30 s back, and then fails rather than
shift a cut). What the application already has (cuts at or before the last delivered
one, VAD segments, traces and progress it saw) is dropped; cut indexes continue the
count. A SONG stream that separates the vocal resumes from its first sample (its
separation windows are laid from there; see :func:`restart_grid`).

The guarantee, property-tested over random kill points and slicings
(tests/test_resume.py) and with real processes (tests/test_resume_processes.py): each
cut arrives once, at the sample, kind and index an uninterrupted run gives it. Scores
and pause intervals may differ slightly after a resume. Its limits: the buffer holds
at most 120 s from the restart point (no cut for that long, or a SONG stream past
120 s: a lost replica then ends the stream with its error), 3 resumes per stream, and
FORCED cuts chained through sound with no quiet point (SPEECH mode over music with a
short max_segment) can land tens of ms elsewhere after a resume (measured; the
detector's long-memory state is not carried across: docs/DESIGN.md).

Imports only the SDK's own modules (no grpc calls of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING

import grpc
from seamcut.client.audio import Audio, to_wire
from seamcut.client.errors import SeamcutRpcError, StreamClosedError, rpc_error
from seamcut.client.stream import (
    CutEvent,
    Event,
    NoticeEvent,
    ProgressEvent,
    ReadyEvent,
    ResumedEvent,
    StreamOptions,
    TraceEvent,
    VadSegmentEvent,
)

if TYPE_CHECKING:
    from seamcut.client.aio import AsyncClient, AsyncStream

ANALYSIS_RATE_HZ = 16_000
# Warm-ups before the last delivered cut, tried in turn: speech converges in 2 s,
# SONG's separator windows need 10 s (measured; docs/DESIGN.md); the longer one is for
# a resumed stream that did not re-find the last delivered cut with the shorter.
WARMUPS_S = (10.0, 30.0)
# Audio kept for a resume at most; beyond it (no cut for this long) a lost replica
# ends the stream with its error, as an exact continuation is no longer possible.
MAX_REPLAY_S = 120.0
MAX_RESUMES = 3


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


class ReplayBuffer:
    """The wire bytes sent from ``base`` (an absolute frame index) on."""

    def __init__(self, base: int, frame_bytes: int, max_frames: int) -> None:
        self.base = base
        self.frame_bytes = frame_bytes
        self.max_frames = max_frames
        self.exact = True  # False once audio needed for an exact resume was dropped
        self._data = bytearray()

    @property
    def end(self) -> int:
        return self.base + len(self._data) // self.frame_bytes

    def append(self, wire: bytes) -> None:
        self._data += wire
        over = len(self._data) // self.frame_bytes - self.max_frames
        if over > 0:
            self._drop(over)
            self.exact = False

    def trim(self, keep_from: int) -> None:
        """Forget the audio before ``keep_from``, the restart point a resume needs now:
        the buffer is exact again if it still starts there."""
        self._drop(keep_from - self.base)
        self.exact = self.base <= keep_from

    def _drop(self, frames: int) -> None:
        drop = min(max(0, frames), len(self._data) // self.frame_bytes)
        del self._data[:drop * self.frame_bytes]
        self.base += drop

    def since(self, start: int) -> bytes:
        if start < self.base:
            raise ValueError(f"replay from {start}: the buffer starts at {self.base}")
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
    """

    def __init__(self) -> None:
        self.last_cut: int | None = None
        self.last_kind = ""
        self.cuts = 0
        self._resync = False
        self._vad_end = -1
        self._trace_end = -1
        self._processed = -1

    def expect_last_cut(self) -> None:
        """A resumed stream starts: hold its cuts until it re-finds the last one."""
        self._resync = self.last_cut is not None

    def admit(self, ev: Event) -> Event | None:
        """``ev`` as the application should see it, or None for a repeat. Raises
        :class:`Desync` for a resumed stream's cut past the last delivered one that
        it did not re-find first."""
        if isinstance(ev, CutEvent):
            if self.last_cut is not None and ev.sample <= self.last_cut:
                if (self._resync and ev.sample == self.last_cut
                        and ev.kind == self.last_kind):
                    self._resync = False
                return None
            if self._resync and self.last_cut is not None:
                raise Desync(self.last_cut, self.last_kind, ev)
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
            if ev.samples_processed <= self._processed:
                return None
            self._processed = ev.samples_processed
        return ev


class Desync(Exception):
    """A resumed stream went past the last delivered cut without finding it again."""

    def __init__(self, sample: int, kind: str, found: CutEvent) -> None:
        super().__init__(
            f"the resumed stream did not find the last delivered cut again ({kind} at "
            f"sample {sample}; its next cut was {found.kind} at {found.sample})")


class _Moved(Exception):
    """The server announced a drain: move the stream before its grace runs out."""


def retry_delay(exc: SeamcutRpcError, retried: int, allowed: int) -> float | None:
    """Seconds to wait before opening a stream refused before its Ready again on the
    next replica, or None to give up. Only refusals another replica (or this one, a
    moment later) may not give are retried: full, draining, or not reachable; a bad
    config stays bad. The server's ``retry-after-ms`` first."""
    if retried >= allowed or exc.code not in (
            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
        return None
    return exc.retry_after_ms / 1000 if exc.retry_after_ms else 0.05 * (retried + 1)


def resumable(exc: SeamcutRpcError) -> bool:
    """A stream that failed after Ready with this can go on elsewhere: its server is
    gone or going (UNAVAILABLE). Everything else (a bad config, a deadline, the
    client's own cancel) would fail the same way again."""
    return bool(exc.code == grpc.StatusCode.UNAVAILABLE)


async def resume_stream(
    client: AsyncClient, config: StreamOptions, audio: AsyncIterable[Audio] | Iterable[Audio],
    *, ready_timeout: float | None, max_resumes: int = MAX_RESUMES,
    warmups_s: tuple[float, ...] = WARMUPS_S, max_replay_s: float = MAX_REPLAY_S,
) -> AsyncGenerator[Event, None]:
    """stream_cuts with resume (see the module's docstring)."""
    rate = config.sample_rate_hz
    origin = config.start_sample
    warmups = [int(w * rate) for w in warmups_s]
    buf = ReplayBuffer(origin, config.frame_bytes, int(max_replay_s * rate))
    seen = Delivered()
    source = _Source(_blocks(audio))
    restart, resumes, refused, tries = origin, 0, 0, 0
    previous: ReadyEvent | None = None
    grid: int | None = 1
    reason = ""

    def restart_point(warmup: int) -> int:
        if seen.last_cut is None or grid is None:
            return origin
        return _restart_point(seen.last_cut, origin, warmup, grid)

    try:
        while True:
            delay = 0.0
            opts = dataclasses.replace(config, start_sample=restart)
            async with client.stream(opts, ready_timeout=ready_timeout) as s:
                try:
                    ready = await s.wait_ready()
                except SeamcutRpcError as exc:
                    # Refused at admission (full, draining, down): the next replica.
                    wait = retry_delay(exc, refused, client.refused_retries)
                    if wait is None:
                        raise
                    refused, delay = refused + 1, wait
                else:
                    refused = 0
                    if previous is None:
                        grid = restart_grid(ready, rate)
                        yield ready
                    else:
                        seen.expect_last_cut()
                        yield ResumedEvent(
                            session_id=ready.session_id,
                            previous_session_id=previous.session_id,
                            resume_sample=restart, replayed_frames=buf.end - restart,
                            reason=reason, resumes=resumes)
                    previous = ready
                    try:
                        # aclosing: a caller leaving early must stop this stream's
                        # sender now, not when the generator is garbage-collected.
                        async with contextlib.aclosing(
                                _one_stream(s, buf, restart, source)) as events:
                            async for ev in events:
                                out = seen.admit(ev)
                                if out is None:
                                    continue
                                if isinstance(out, CutEvent):
                                    tries = 0
                                    buf.trim(restart_point(warmups[-1]))
                                yield out
                        return
                    except Desync as exc:
                        # The same audio from further back: the state may converge
                        # over a longer warm-up.
                        tries += 1
                        if tries >= len(warmups) or resumes >= max_resumes or not buf.exact:
                            raise rpc_error(
                                grpc.StatusCode.UNAVAILABLE,
                                f"{reason} (not resumed: {exc}, so its later cuts could "
                                "differ from an uninterrupted run's)") from exc
                        resumes += 1
                        restart = restart_point(warmups[tries])
                        reason = str(exc)
                    except (SeamcutRpcError, _Moved) as exc:
                        if source.error is not None:
                            raise source.error from None
                        rpc = exc if isinstance(exc, SeamcutRpcError) else None
                        if rpc is not None and not resumable(rpc):
                            raise
                        if resumes >= max_resumes or not buf.exact:
                            raise _not_resumed(rpc, buf, resumes) from exc
                        resumes += 1
                        reason = rpc.details if rpc is not None else "the server is draining"
                        restart = restart_point(warmups[tries])
            if delay:
                await asyncio.sleep(delay)
    finally:
        await source.aclose()


def _restart_point(cut: int, origin: int, warmup: int, grid: int) -> int:
    """Where a resume after ``cut`` starts: ``warmup`` frames earlier, on the grid."""
    return origin + max(0, (cut - warmup - origin) // grid * grid)


def _not_resumed(rpc: SeamcutRpcError | None, buf: ReplayBuffer,
                 resumes: int) -> SeamcutRpcError:
    why = (f"no cut within the replay buffer's last {buf.max_frames} frames, so no "
           "exact restart point" if not buf.exact else f"already resumed {resumes} times")
    if rpc is None:
        return rpc_error(grpc.StatusCode.UNAVAILABLE,
                         f"the server is draining; the stream was not resumed: {why}")
    return rpc_error(rpc.code, f"{rpc.details} (not resumed: {why})", rpc.trailing_metadata,
                     answered=True)


class _Source:
    """The application's audio, read once and shared by the streams of one resumable
    stream.

    The read of the next block outlives the stream that started it: cancelling an
    async generator's ``__anext__`` finalises the generator, so a stream lost while
    waiting for audio would otherwise end the audio for every later stream (the
    resumed stream half-closed at the end of the replay, with an END cut there: found
    by the property test in tests/test_resume.py).
    """

    def __init__(self, blocks: AsyncIterator[Audio]) -> None:
        self._blocks = blocks
        self._next: asyncio.Task[tuple[Audio | None, bool]] | None = None
        self.done = False
        self.error: BaseException | None = None

    async def _pull(self) -> tuple[Audio | None, bool]:
        try:
            return await anext(self._blocks), False
        except StopAsyncIteration:
            return None, True

    async def next(self) -> Audio | None:
        """The next block, or None at the end of the audio."""
        if self._next is None:
            self._next = asyncio.create_task(self._pull(), name="seamcut-resume-source")
        block, end = await asyncio.shield(self._next)
        self._next = None  # only once it is ours: a cancelled wait leaves it for the next
        self.done = end
        return block

    async def aclose(self) -> None:
        if self._next is not None:
            self._next.cancel()
            await asyncio.wait({self._next})
            if not self._next.cancelled():
                self._next.exception()  # retrieved: its error, if any, was raised already
        aclose = getattr(self._blocks, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def _one_stream(s: AsyncStream, buf: ReplayBuffer, restart: int, source: _Source,
                      ) -> AsyncGenerator[Event, None]:
    """One replica's stream: replay from ``restart``, then go on with the source."""
    opts = s.options

    async def send() -> None:
        try:
            replay = buf.since(restart)
            if replay:
                await s.send(replay)
            while not source.done:
                block = await source.next()
                if block is None:
                    break
                wire = to_wire(block, opts.encoding, opts.channels)
                buf.append(wire)  # before sending: a send cut short is replayed
                await s.send(wire)
            await s.close_send()
        except (SeamcutRpcError, StreamClosedError):
            raise  # the stream has ended: its reader reports the status
        except Exception as exc:  # the source's own failure, reported as itself
            source.error = exc
            await s.aclose()
            raise

    sender = asyncio.create_task(send(), name="seamcut-resume-sender")
    try:
        async for ev in s:
            yield ev
            if isinstance(ev, NoticeEvent) and ev.code == "draining" and not source.done:
                raise _Moved()
    finally:
        if not sender.done():
            sender.cancel()
        await asyncio.wait({sender})
        if not sender.cancelled():
            sender.exception()


async def _blocks(audio: AsyncIterable[Audio] | Iterable[Audio]) -> AsyncIterator[Audio]:
    if isinstance(audio, AsyncIterable):
        async for block in audio:
            yield block
    else:
        for block in audio:
            yield block
