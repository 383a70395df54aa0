"""Streams that survive losing their replica: the SDK's resume loop.

A stream whose server goes away after its Ready (UNAVAILABLE: killed, crashed,
connection lost, engine lost) or announces a drain while audio is still coming is
opened again, on the next replica the channel picks, from the server's newest
checkpoint: the SDK asks for a :class:`~seamcut.client.stream.CheckpointEvent` every
second of audio (``CHECKPOINT_MS``), keeps the newest, and resumes with
``StreamConfig.start_sample`` = its ``resume_from`` and ``resume_token`` = its token,
re-sending the audio from there from a bounded replay buffer. The token carries what
re-analysis cannot reproduce (both Silero states, the detector's state); the server
runs the audio before the checkpoint through its front end only, so the resumed
stream makes exactly the cuts the first one makes after the checkpoint, with the same
indexes. Before any checkpoint the stream restarts at its first sample (no token),
which reproduces it too. The cuts the first stream had already delivered after the
checkpoint come again and must match, each of its index (sample and kind), before
anything new is delivered (else the stream fails rather than shift a cut); what the
application already has (cuts, VAD segments, traces, progress) is dropped. A replica
that answers with another server version, block length or effective config would
analyse differently (and refuses the token): the stream is not resumed there. A
drained stream is moved only once its next stream is open with a Ready that passes
that check; otherwise it finishes on the draining replica (every cut of the audio it
was sent still comes), as it would without resume.

The guarantee (docs/DESIGN.md, "Replicas and resume"): each cut arrives once, at the
sample, kind and index of an uninterrupted run, on speech and on music with
separation alike (property-tested over random checkpoints and slicings in
tests/test_checkpoint.py, over random kill points in tests/test_resume.py, and with
real processes in tests/test_resume_processes.py). Limits: the buffer holds the last
``max_replay_s`` (120 s) of audio sent, so a resume needs the newest checkpoint's
``resume_from`` in it (a checkpoint every second of audio analysed; its pre-roll
1-5 s, more inside a long pause); 3 resumes in a row without a cut delivered in
between.

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
from seamcut.client.audio import Audio, to_wire
from seamcut.client.errors import SeamcutRpcError, StreamClosedError, rpc_error
from seamcut.client.replay import Delivered, Desync, ReplayBuffer, Restart, ready_mismatch
from seamcut.client.stream import (
    DRAINING_NOTICE,
    CheckpointEvent,
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

# Audio between the server's checkpoints (StreamOptions.checkpoint_interval_ms) when
# the SDK asks for them itself: a resume re-sends about this much more, plus the
# checkpoint's pre-roll; one token (~2-4 KB) per interval comes back.
CHECKPOINT_MS = 1000
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
    ``target``, already open at ``restart`` with a Ready that matches the first."""

    def __init__(self, target: AsyncStream, restart: Restart) -> None:
        super().__init__("the server is draining")
        self.target = target
        self.restart = restart


# Opens the stream a drained one would move to (and says where it starts), or None
# where it cannot go on (and should finish where it is).
Probe = Callable[[], Awaitable["tuple[AsyncStream, Restart] | None"]]


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
    max_replay_s: float = MAX_REPLAY_S, on_drain: OnDrain = "move",
) -> AsyncGenerator[Event, None]:
    """stream_cuts with resume (see the module's docstring). ``on_drain``: on a
    draining notice while audio is still coming, ``move`` the stream to another replica
    now, ``finish`` it (stop reading audio, half-close: the cuts of what was sent still
    arrive), or ``stay`` (keep sending; resume when the server ends the stream)."""
    rate = config.sample_rate_hz
    own_checkpoints = not config.checkpoint_interval_ms  # the application's are yielded
    if own_checkpoints:
        config = dataclasses.replace(config, checkpoint_interval_ms=CHECKPOINT_MS)
    buf = ReplayBuffer(config.start_sample, config.frame_bytes, int(max_replay_s * rate))
    seen = Delivered()
    source = _Source(_blocks(audio))
    restart = Restart(config.start_sample, config.resume_token)
    refused = 0
    resumes = 0  # over the stream's life (reported)
    in_a_row = 0  # since a cut was last delivered (limited)
    first: ReadyEvent | None = None
    previous = ""
    lost: SeamcutRpcError | None = None  # what the stream is resuming from; None: a drain
    reason = ""

    def cannot_resume() -> str:
        """Why the stream cannot resume from ``restart``; "" if it can."""
        if in_a_row >= max_resumes:
            return f"resumed {in_a_row} times in a row with no cut delivered in between"
        if buf.reaches(restart.start):
            return ""
        where = ("the server's newest checkpoint" if restart.token
                 else "the stream's first sample (no checkpoint came yet)")
        return (f"its restart point, frame {restart.start} ({where}), is no longer in the "
                f"replay buffer, which holds the last {max_replay_s:g} s sent "
                "(max_replay_s)")

    def options() -> StreamOptions:
        return dataclasses.replace(config, start_sample=restart.start,
                                   resume_token=restart.token)

    async def probe() -> tuple[AsyncStream, Restart] | None:
        """The stream a drained one moves to: open at the restart point on the next
        replica, its Ready checked, before the drained one is let go. None where that
        cannot be (no restart point in the buffer, refused, another server version or
        config): the drained stream then finishes where it is, which keeps every cut of
        the audio it was sent, where moving would end it with an error."""
        why = cannot_resume()
        asked = 0
        at = restart
        while not why:
            target = client.stream(options(), ready_timeout=ready_timeout)
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
                return target, at
            await target.__aexit__(None, None, None)
            if wait is None:
                break
            asked, why = asked + 1, ""
            await asyncio.sleep(wait)
        _log.warning("a draining replica's stream finishes there, not moved: %s", why)
        return None

    adopted: tuple[AsyncStream, Restart] | None = None
    try:
        while True:
            delay = 0.0
            async with contextlib.AsyncExitStack() as held:
                if adopted is not None:
                    (s, restart), adopted = adopted, None
                    held.push_async_exit(s)
                else:
                    s = await held.enter_async_context(
                        client.stream(options(), ready_timeout=ready_timeout))
                try:
                    ready = await s.wait_ready()
                except SeamcutRpcError as exc:
                    # Refused at admission (full, draining, down; or, resuming, a
                    # token this replica cannot use): the next replica.
                    wait = retry_delay(exc, refused, client.refused_retries)
                    if wait is None:
                        raise (_not_resumed(lost, f"{exc.code.name}: {exc.details}")
                               if first is not None else exc) from None
                    refused, delay = refused + 1, wait
                else:
                    refused = 0
                    if first is None:
                        first = ready
                        yield ready
                    else:
                        differs = ready_mismatch(first, ready)
                        if differs:
                            raise _not_resumed(lost, (
                                f"replica of session {ready.session_id} runs {differs}, "
                                "so it could cut elsewhere"))
                        seen.resumed(restart.cuts)
                        yield ResumedEvent(
                            session_id=ready.session_id, previous_session_id=previous,
                            resume_sample=restart.start,
                            replayed_frames=buf.end - restart.start, reason=reason,
                            resumes=resumes)
                    previous = ready.session_id
                    try:
                        # aclosing: a caller leaving early must stop this stream's
                        # sender now, not when the generator is garbage-collected.
                        async with contextlib.aclosing(_one_stream(
                                s, buf, restart.start, source, on_drain, probe)) as events:
                            async for ev in events:
                                if isinstance(ev, CheckpointEvent):
                                    restart = Restart(ev.resume_from, ev.token, ev.cuts)
                                    buf.trim(ev.resume_from)
                                    seen.checkpoint(ev.cuts)
                                    if own_checkpoints:
                                        continue
                                out = seen.admit(ev)
                                if out is None:
                                    continue
                                if isinstance(out, CutEvent):
                                    in_a_row = 0
                                yield out
                        return
                    except Desync as exc:
                        raise _not_resumed(lost, (
                            f"{exc}, so its later cuts could differ from an uninterrupted "
                            "run's")) from exc
                    except (SeamcutRpcError, _Moved) as exc:
                        if isinstance(exc, _Moved):  # opened and checked by probe()
                            adopted = (exc.target, exc.restart)  # closed below if unused
                        if source.error is not None:
                            raise source.error from None
                        if isinstance(exc, _Moved):
                            lost, reason = None, "the server is draining"
                        else:
                            if not resumable(exc):
                                raise
                            lost, reason = exc, exc.details
                            why = cannot_resume()
                            if why:
                                raise _not_resumed(lost, why) from exc
                    resumes += 1
                    in_a_row += 1
            if delay:
                await asyncio.sleep(delay)
    finally:
        if adopted is not None:
            await adopted[0].__aexit__(None, None, None)
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
                    raise _Moved(*target)
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
