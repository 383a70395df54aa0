"""Streams that survive losing their replica: the SDK's resume loop.

A stream whose server goes away after its Ready (UNAVAILABLE: killed, crashed,
connection lost, engine lost) or announces a drain while audio is still coming is
opened again, on the next replica the channel picks, with ``StreamConfig.start_sample
= W`` and the audio from ``W`` re-sent from a bounded replay buffer. ``W`` is the last
delivered cut minus a 10 s warm-up, aligned down to the block grid (the analysis grid
starts at the stream's first sample); the detector's signal state converges within
the warm-up on speech, and its policy state is the last cut, so the new stream must
find the last delivered cut again, at the same sample and of the same kind, before
anything after it (cuts, progress) is delivered (else it is retried from 30 s back,
and then fails rather than shift a cut). What the application already has (cuts at
or before the last delivered one, VAD segments, traces and progress it saw) is
dropped; cut indexes continue the count. A SONG stream that separates the vocal
resumes from its first sample (its separation windows are laid from there; see
:func:`~seamcut.client.replay.restart_grid`). A replica that answers with another
server version, block length or effective config would analyse differently: the
stream is not resumed there. A drained stream is moved only once its next stream is
open with a Ready that passes that check; otherwise it finishes on the draining
replica (every cut of the audio it was sent still comes), as it would without resume.

The guarantee (docs/DESIGN.md, "Replicas and resume"): the re-found last cut is
always checked; on speech each cut arrives once, at the sample, kind and index an
uninterrupted run gives it (property-tested over random kill points and slicings in
tests/test_resume.py, and with real processes in tests/test_resume_processes.py).
Later cuts on continuous music may move after a resume (the detector's and the VAD's
long-memory state is not carried across, and does not converge on music). Scores and
pause intervals may differ slightly. Limits: the buffer holds the last
``max_replay_s`` (120 s) of audio sent, so a resume needs a cut within the last
``max_replay_s`` − 10 s (a SONG stream with separation: within its first
``max_replay_s``); 3 resumes in a row without a cut delivered in between.

Imports only the SDK's own modules (no grpc calls of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from typing import TYPE_CHECKING, Literal

import grpc
from seamcut.client import replay
from seamcut.client.audio import Audio, to_wire
from seamcut.client.errors import SeamcutRpcError, StreamClosedError, rpc_error
from seamcut.client.replay import (
    Delivered,
    Desync,
    ReplayBuffer,
    ready_mismatch,
    restart_grid,
)
from seamcut.client.stream import (
    DRAINING_NOTICE,
    CutEvent,
    Event,
    NoticeEvent,
    ReadyEvent,
    ResumedEvent,
    StreamOptions,
)

if TYPE_CHECKING:
    from seamcut.client.aio import AsyncClient, AsyncStream

_log = logging.getLogger(__name__)

# Warm-ups before the last delivered cut, tried in turn: speech converges in 2 s,
# SONG's separator windows need 10 s (measured; docs/DESIGN.md); the longer one is for
# a resumed stream that did not re-find the last delivered cut with the shorter.
WARMUPS_S = (10.0, 30.0)
# Audio kept for a resume at most (AsyncClient's max_replay_s default): the buffer
# holds the last this many seconds sent.
MAX_REPLAY_S = 120.0
# Resumes in a row with no cut delivered in between; a delivered cut starts the count
# again, so a long stream may live through any number of rolling deploys.
MAX_RESUMES = 3
# Blocks from the application are sent (and buffered) in pieces of at most this
# much audio, so that one large block (a whole file) does not outrun the buffer.
PIECE_S = 1.0

OnDrain = Literal["move", "finish", "stay"]


class _Moved(Exception):
    """The server announced a drain: move the stream before its grace runs out, to
    ``target``, already open (at its ``start_sample``) with a Ready that matches the
    first."""

    def __init__(self, target: AsyncStream) -> None:
        super().__init__("the server is draining")
        self.target = target


# Opens the stream a drained one would move to, or None where it cannot go on (and
# should finish where it is).
Probe = Callable[[], Awaitable["AsyncStream | None"]]


def retry_delay(exc: SeamcutRpcError, retried: int, allowed: int) -> float | None:
    """Seconds to wait before opening a stream refused before its Ready again on the
    next replica, or None to give up. Only refusals another replica (or this one, a
    moment later) may not give are retried: full, draining, not reachable, or
    cancelled by a server shutting down as the call arrived (its transport resets the
    stream: CANCELLED, seen in one of six runs of the process drain test; a
    cancel of this client's own raises asyncio.CancelledError or its ready_timeout's
    error instead); a bad config stays bad. The server's ``retry-after-ms`` first."""
    if retried >= allowed or exc.code not in (
            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.CANCELLED):
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
    on_drain: OnDrain = "move",
) -> AsyncGenerator[Event, None]:
    """stream_cuts with resume (see the module's docstring). ``on_drain``: on a
    draining notice while audio is still coming, ``move`` the stream to another replica
    now, ``finish`` it (stop reading audio, half-close: the cuts of what was sent still
    arrive), or ``stay`` (keep sending; resume when the server ends the stream)."""
    rate = config.sample_rate_hz
    origin = config.start_sample
    warmups = [int(w * rate) for w in warmups_s]
    buf = ReplayBuffer(origin, config.frame_bytes, int(max_replay_s * rate))
    seen = Delivered()
    source = _Source(_blocks(audio))
    restart, refused, tries = origin, 0, 0
    resumes = 0  # over the stream's life (reported)
    in_a_row = 0  # since a cut was last delivered (limited)
    first: ReadyEvent | None = None
    previous = ""
    grid: int | None = 1
    lost: SeamcutRpcError | None = None  # what the stream is resuming from; None: a drain
    reason = ""

    def restart_point(warmup: int) -> int:
        if seen.last_cut is None or grid is None:
            return origin
        return replay.restart_point(seen.last_cut, origin, warmup, grid)

    def cannot_resume_from(start: int) -> str:
        """Why the stream cannot resume from ``start``; "" if it can."""
        if in_a_row >= max_resumes:
            return f"resumed {in_a_row} times in a row with no cut delivered in between"
        if buf.reaches(start):
            return ""
        if grid is None:
            return (f"SONG streams with separation resume only within their first "
                    f"{max_replay_s:g} s (from their first sample; max_replay_s)")
        warmup_s = warmups_s[min(tries, len(warmups_s) - 1)]
        return (f"its restart point, {warmup_s:g} s before the last delivered cut, is no "
                f"longer in the replay buffer, which holds the last {max_replay_s:g} s "
                f"sent: a resume needs a cut within the last {max_replay_s - warmup_s:g} s "
                "(max_replay_s)")

    async def probe() -> AsyncStream | None:
        """The stream a drained one moves to: open at the restart point on the next
        replica, its Ready checked, before the drained one is let go. None where that
        cannot be (no restart point in the buffer, refused, another server version or
        config): the drained stream then finishes where it is, which keeps every cut of
        the audio it was sent, where moving would end it with an error."""
        start = restart_point(warmups[tries])
        why = cannot_resume_from(start)
        asked = 0
        while not why:
            target = client.stream(dataclasses.replace(config, start_sample=start),
                                   ready_timeout=ready_timeout)
            await target.__aenter__()
            wait = None
            try:
                why = ready_mismatch(first, await target.wait_ready()) if first else ""
            except SeamcutRpcError as exc:  # the draining replica itself, say: the next
                wait = retry_delay(exc, asked, client.refused_retries)
                why = f"the next replica refused it ({exc.code.name}: {exc.details})"
            except BaseException:  # cancelled while waiting: the stream is not handed on
                await target.__aexit__(None, None, None)
                raise
            if not why:
                return target
            await target.__aexit__(None, None, None)
            if wait is None:
                break
            asked, why = asked + 1, ""
            await asyncio.sleep(wait)
        _log.warning("a draining replica's stream finishes there, not moved: %s", why)
        return None

    adopted: AsyncStream | None = None
    try:
        while True:
            delay = 0.0
            async with contextlib.AsyncExitStack() as held:
                if adopted is not None:
                    s, adopted = adopted, None
                    restart = s.options.start_sample
                    held.push_async_exit(s)
                else:
                    opts = dataclasses.replace(config, start_sample=restart)
                    s = await held.enter_async_context(
                        client.stream(opts, ready_timeout=ready_timeout))
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
                    if first is None:
                        first = ready
                        grid = restart_grid(ready, rate)
                        if grid is None:
                            buf.anchor()
                        yield ready
                    else:
                        differs = ready_mismatch(first, ready)
                        if differs:
                            raise _not_resumed(lost, (
                                f"replica of session {ready.session_id} runs {differs}, "
                                "so it could cut elsewhere"))
                        seen.expect_last_cut()
                        yield ResumedEvent(
                            session_id=ready.session_id, previous_session_id=previous,
                            resume_sample=restart, replayed_frames=buf.end - restart,
                            reason=reason, resumes=resumes)
                    previous = ready.session_id
                    try:
                        # aclosing: a caller leaving early must stop this stream's
                        # sender now, not when the generator is garbage-collected.
                        async with contextlib.aclosing(_one_stream(
                                s, buf, restart, source, on_drain, probe)) as events:
                            async for ev in events:
                                out = seen.admit(ev)
                                if out is None:
                                    continue
                                if isinstance(out, CutEvent):
                                    tries = in_a_row = 0
                                    buf.trim(restart_point(warmups[-1]))
                                yield out
                        return
                    except Desync as exc:
                        # The same audio from further back: the state may converge
                        # over a longer warm-up.
                        tries += 1
                        why = (f"{exc}, so its later cuts could differ from an "
                               "uninterrupted run's") if tries >= len(warmups) else ""
                        restart = restart_point(warmups[min(tries, len(warmups) - 1)])
                        why = why or cannot_resume_from(restart)
                        if why:
                            raise _not_resumed(lost, why) from exc
                        reason = str(exc)
                    except (SeamcutRpcError, _Moved) as exc:
                        if isinstance(exc, _Moved):  # opened and checked by probe()
                            adopted = exc.target  # closed below if unused
                        if source.error is not None:
                            raise source.error from None
                        if isinstance(exc, _Moved):
                            lost, reason = None, "the server is draining"
                        else:
                            if not resumable(exc):
                                raise
                            lost, reason = exc, exc.details
                            restart = restart_point(warmups[tries])
                            why = cannot_resume_from(restart)
                            if why:
                                raise _not_resumed(lost, why) from exc
                    resumes += 1
                    in_a_row += 1
            if delay:
                await asyncio.sleep(delay)
    finally:
        if adopted is not None:
            await adopted.__aexit__(None, None, None)
        await source.aclose()


def _not_resumed(lost: SeamcutRpcError | None, why: str) -> SeamcutRpcError:
    """The error a stream that could not be resumed ends with: the one it lost its
    replica with (code, details, trailing metadata such as its session id), and why."""
    if lost is None:
        return rpc_error(grpc.StatusCode.UNAVAILABLE,
                         f"the server is draining; the stream was not resumed: {why}")
    return rpc_error(lost.code, f"{lost.details} (not resumed: {why})",
                     lost.trailing_metadata, answered=True)


class _Source:
    """The application's audio, read once and shared by the streams of one resumable
    stream.

    The read of the next block outlives the stream that started it: cancelling an
    async generator's ``__anext__`` finalises the generator, so a stream lost while
    waiting for audio would otherwise end the audio for every later stream (the
    resumed stream half-closed at the end of the replay, with an END cut there: found
    by the property test in tests/test_resume.py). A block is sent in pieces
    (``PIECE_S``); what a lost stream had not yet taken of it (``pending``) goes to the
    next one.
    """

    def __init__(self, blocks: AsyncIterator[Audio]) -> None:
        self._blocks = blocks
        self._next: asyncio.Task[tuple[Audio | None, bool]] | None = None
        self.done = False
        self.pending = memoryview(b"")  # wire bytes of the current block not yet buffered
        self.error: BaseException | None = None

    @property
    def finished(self) -> bool:
        """No audio left to send: the source ended and its last block is buffered."""
        return self.done and not self.pending

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

    def stop(self) -> None:
        """Read no more audio: the stream finishes with what was sent."""
        self.done = True
        self.pending = memoryview(b"")

    async def aclose(self) -> None:
        if self._next is not None:
            self._next.cancel()
            await asyncio.wait({self._next})
            if not self._next.cancelled():
                self._next.exception()  # retrieved: its error, if any, was raised already
        aclose = getattr(self._blocks, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # the application's generator failing to close: not ours
                _log.warning("closing the audio source failed", exc_info=True)


async def _one_stream(s: AsyncStream, buf: ReplayBuffer, restart: int, source: _Source,
                      on_drain: OnDrain, probe: Probe) -> AsyncGenerator[Event, None]:
    """One replica's stream: replay from ``restart``, then go on with the source. On a
    draining notice (``move``) the stream moves to what ``probe`` opens, or finishes
    here when it opens nothing."""
    opts = s.options
    piece = max(1, int(PIECE_S * opts.sample_rate_hz)) * opts.frame_bytes

    async def send() -> None:
        try:
            replayed = buf.since(restart)
            if replayed:
                await s.send(replayed)
            while not source.finished:
                if not source.pending:
                    block = await source.next()
                    if block is None:
                        break
                    source.pending = memoryview(to_wire(block, opts.encoding, opts.channels))
                part, source.pending = source.pending[:piece], source.pending[piece:]
                wire = bytes(part)
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
            if (isinstance(ev, NoticeEvent) and ev.code == DRAINING_NOTICE
                    and not source.finished and on_drain != "stay"):
                target = await probe() if on_drain == "move" else None
                if target is not None:
                    raise _Moved(target)
                if not sender.done():
                    sender.cancel()
                    await asyncio.wait({sender})
                    source.stop()
                    await s.close_send()
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
