"""The asyncio client (grpc.aio): ``AsyncClient`` and its ``AsyncStream``.

One StreamCuts call per stream, driven by two halves that never wait on each other:

* writing: :meth:`AsyncStream.send` puts messages on a small bounded queue that feeds
  the call's request iterator; grpc writes one message at a time, so when the server
  stops reading (its back-pressure) the queue fills and ``send`` waits;
* reading: a task reads every ServerMessage as it arrives, converts it to a typed
  event and appends it to an unbounded event queue, so a client busy sending never
  stalls the server's output. Events are small (one per cut, block or watermark).

Imports grpc, numpy, the generated stubs and the SDK's ``stream``, ``audio`` and
``security`` modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Sequence
from types import TracebackType
from typing import Any

import grpc
from seamcut.client.audio import Audio, to_wire
from seamcut.client.capabilities import Capabilities
from seamcut.client.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    InvalidOptions,
    SeamcutRpcError,
    StreamClosedError,
    UsageError,
    rpc_error,
    wrap_rpc_error,
)
from seamcut.client.resume import MAX_REPLAY_S, OnDrain, resume_stream, retry_delay
from seamcut.client.security import PemSource, channel_credentials, token_metadata
from seamcut.client.stream import (
    CORE_WRITE_ERROR,
    DRAINING_NOTICE,
    Event,
    FlushedEvent,
    NoticeEvent,
    ReadyEvent,
    StreamOptions,
    event_from_proto,
    status_now,
)
from seamcut.client.targets import channel_target

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc

DEFAULT_TARGET = "localhost:50051"
# Messages queued ahead of the transport: enough to keep the connection busy, small
# enough that back-pressure reaches the caller within a few chunks.
SEND_QUEUE_MESSAGES = 8
# One send() of a long array or buffer is split into AudioChunks no larger than this
# (well under the server's default 1 MiB message and 10 s chunk limits).
MAX_MESSAGE_BYTES = 256 * 1024
MAX_MESSAGE_MS = 5_000

RESUME_KEEPALIVE_MS = 20_000
RESUME_KEEPALIVE_TIMEOUT_MS = 10_000

Metadata = Sequence[tuple[str, str | bytes]]


class AsyncClient:
    """A connection to a seamcut server (one grpc.aio channel, opened on first use).

    Security, the convenient way: ``tls_ca`` (the CA of the server's certificate; a
    path or PEM bytes), ``tls_cert`` + ``tls_key`` (a client certificate for mTLS),
    ``tls=True`` (TLS with the system's roots), ``token`` (sent as
    ``authorization: Bearer <token>`` on every call). Or pass ready ``credentials``
    (``grpc.ssl_channel_credentials(...)``) instead of the ``tls*`` options.
    ``metadata`` is sent with every call; ``options`` are grpc channel args. A server
    that wants a client certificate refuses the TLS handshake without one (TlsError).

    Replicas: ``target`` may be a list of ``host:port`` or a ``dns:///name:port`` with
    several records; streams are then spread with gRPC's ``round_robin`` (``targets``
    module), and :meth:`stream_cuts` retries a stream refused before its Ready
    (RESOURCE_EXHAUSTED, UNAVAILABLE) on the next replica, after the server's
    ``retry-after-ms``, up to ``refused_retries`` times (default 2 with replicas, 0
    for one address). ``resume`` (default: on with several replicas or a ``dns:///``
    name, off for one address): a stream whose replica is lost after Ready (killed,
    connection lost, draining) goes on on another one from the server's newest
    checkpoint and the SDK's replay buffer, and each cut arrives once, at the sample an
    uninterrupted run gives it (the ``resume`` module has the guarantee and its
    limits). ``max_replay_s`` (default 120): seconds of the audio sent that each
    resumable stream keeps in memory at most for a resume (f32le 48 kHz stereo: 384 kB
    a second, 46 MB at 120 s); it holds what was sent since the newest checkpoint's
    ``resume_from``, a few seconds behind the analysis; 0 keeps none and turns resume
    off.
    ``tls_server_name``: the name
    the servers' certificates carry, when the target is a list of IP addresses.
    Use as ``async with AsyncClient(...) as client`` or call :meth:`close`.
    """

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Metadata = (),
        options: Sequence[tuple[str, Any]] = (),
        tls: bool = False,
        tls_ca: PemSource | None = None,
        tls_cert: PemSource | None = None,
        tls_key: PemSource | None = None,
        token: str | None = None,
        tls_server_name: str | None = None,
        refused_retries: int | None = None,
        resume: bool | None = None,
        max_replay_s: float = MAX_REPLAY_S,
    ) -> None:
        wants_tls = tls or tls_ca is not None or tls_cert is not None or tls_key is not None
        if credentials is not None and wants_tls:
            raise InvalidOptions("give credentials or the tls* options, not both")
        if token is not None and any(k.lower() == "authorization" for k, _ in metadata):
            raise InvalidOptions("give token or an authorization entry in metadata, not both")
        where = channel_target(target)
        self.target = where.display
        self._grpc_target = where.target
        self.refused_retries = (refused_retries if refused_retries is not None
                                else 0 if where.replicas == 1 else 2)
        if self.refused_retries < 0:
            raise InvalidOptions(f"refused_retries: must be >= 0, got {refused_retries}")
        if not (math.isfinite(max_replay_s) and max_replay_s >= 0):
            raise InvalidOptions(
                f"max_replay_s: must be a finite number of seconds >= 0, got {max_replay_s}")
        if resume and max_replay_s == 0:
            raise InvalidOptions("resume=True needs max_replay_s > 0 (the audio to resend)")
        self.max_replay_s = float(max_replay_s)
        self.resume = (resume if resume is not None else where.replicas != 1) \
            and max_replay_s > 0
        self.metadata: tuple[tuple[str, str | bytes], ...] = (
            *tuple(metadata), *token_metadata(token)
        )
        self._credentials = credentials if credentials is not None else channel_credentials(
            tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
        )
        tls_name = tls_server_name or (where.tls_name if self._credentials else None)
        names = (() if tls_name is None else (
            ("grpc.ssl_target_name_override", tls_name),
            ("grpc.default_authority", tls_name)))
        # A resumable stream must notice a connection that went silent (a cut cable, a
        # frozen host) rather than wait on TCP for minutes: keepalive pings, no more
        # often than the server's minimum ping interval (20 s by default).
        # The caller's own keepalive options replace these (a faster ping needs a
        # server that allows it: server.min_ping_interval_ms).
        given = {k for k, _ in options}
        alive = tuple(kv for kv in (("grpc.keepalive_time_ms", RESUME_KEEPALIVE_MS),
                                    ("grpc.keepalive_timeout_ms", RESUME_KEEPALIVE_TIMEOUT_MS))
                      if self.resume and kv[0] not in given)
        self._options = (*where.options, *names, *alive, *tuple(options))
        self.tls = self._credentials is not None
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.SeamcutStub | None = None

    def _get_stub(self) -> pb_grpc.SeamcutStub:
        # Created lazily so that the channel binds to the loop that uses it.
        if self._stub is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self._grpc_target, options=self._options)
            else:
                self._channel = grpc.aio.secure_channel(
                    self._grpc_target, self._credentials, options=self._options
                )
            self._stub = pb_grpc.SeamcutStub(self._channel)
        return self._stub

    async def get_capabilities(self, *, timeout: float | None = None) -> Capabilities:
        """The server's encodings, rates, limits, modes, device and defaults.

        ``timeout`` in seconds. Raises a SeamcutRpcError subclass on a non-OK status
        (ConnectionFailed, TlsError, Unauthenticated, ...).
        """
        try:
            caps: pb.Capabilities = await self._get_stub().GetCapabilities(
                pb.GetCapabilitiesRequest(), metadata=self.metadata, timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise wrap_rpc_error(exc, answered=False, tls=self.tls) from exc
        return Capabilities.from_proto(caps)

    def stream(self, config: StreamOptions, *, ready_timeout: float | None = None) -> AsyncStream:
        """A new stream; the call starts when it is entered (``async with``).

        ``ready_timeout``: seconds to wait for the server's Ready before giving up with
        ConnectionFailed (no connection) or DeadlineExceeded (connected, no answer);
        None waits as long as grpc does (its connection attempts take up to ~20 s).
        """
        return AsyncStream(self, config, ready_timeout=ready_timeout)

    async def stream_cuts(
        self, config: StreamOptions, audio: AsyncIterable[Audio] | Iterable[Audio], *,
        ready_timeout: float | None = None, finish_on_drain: bool | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Audio in, events out: send every block of ``audio`` and yield each event as it
        arrives, Ready first and Summary last::

            async for ev in client.stream_cuts(StreamOptions(sample_rate_hz=16000), blocks):
                if isinstance(ev, CutEvent):
                    print(ev.sample)

        ``audio`` yields numpy arrays (``[frames, channels]``, or ``[frames]`` for mono;
        float or int16) or bytes in the configured encoding, of any sizes; it is read
        only as fast as the server takes the audio (back-pressure), and the end of it
        half-closes the stream. A plain iterable is read on the event loop, so it must
        not block: give a live source as an async iterable (or use the sync Client,
        which reads plain iterables on a thread of their own).

        ``finish_on_drain``: when the server announces it is shutting down (a NoticeEvent
        "draining", yielded too), stop reading ``audio`` and half-close, so the cuts of
        what was sent still arrive, up to an END cut at the last sample sent. Without
        resume None (the default) means True. Leaving the loop early cancels the stream
        (use ``contextlib.aclosing`` to do it at once).

        With several replicas a stream refused before its Ready (full, draining, down)
        is opened again on the next one (``refused_retries``); ``audio`` is read only
        once the stream has its Ready, so nothing is lost or sent twice.

        With resume on (the default with several replicas), a stream that loses its
        replica after Ready (UNAVAILABLE, or a draining notice while audio is still
        coming) is opened again on another one from the server's newest checkpoint
        (a resume token carrying the analysis state) and the audio from there is sent
        again; a ResumedEvent marks the move, each cut arrives once, at the sample,
        kind and index of an uninterrupted run, and no event is repeated (``resume``
        module has the guarantee and its limits). A drain announced
        while audio is still coming then moves the stream to another replica (None, the
        default) once that replica's Ready shows it analyses alike, and otherwise
        finishes the stream where it is; ``finish_on_drain=True``
        finishes it there instead (as without resume), and ``False`` keeps sending
        until the server ends the stream, then resumes. A drain announced after the
        last audio was sent lets the stream finish where it is.

        Raises what ``audio`` raised (the stream is cancelled), AudioError for a block
        that does not fit the config, or the stream's SeamcutRpcError subclass.
        """
        if self.resume:
            on_drain: OnDrain = ("move" if finish_on_drain is None
                                 else "finish" if finish_on_drain else "stay")
            async with contextlib.aclosing(resume_stream(
                    self, config, audio, ready_timeout=ready_timeout,
                    max_replay_s=self.max_replay_s, on_drain=on_drain)) as evs:
                async for ev in evs:
                    yield ev
            return
        attempt = 0
        while True:
            async with self.stream(config, ready_timeout=ready_timeout) as s:
                # Nothing is read from ``audio`` before Ready, so a stream refused at
                # admission can be opened again elsewhere with the same audio.
                try:
                    await s.wait_ready()
                except SeamcutRpcError as exc:
                    wait = retry_delay(exc, attempt, self.refused_retries)
                    if wait is None:
                        raise
                    attempt, delay = attempt + 1, wait
                else:
                    finish = finish_on_drain is not False
                    async with contextlib.aclosing(_run_stream(s, audio, finish)) as events:
                        async for ev in events:
                            yield ev
                    return
            await asyncio.sleep(delay)

    async def close(self, grace: float | None = None) -> None:
        """Close the channel; calls still running are cancelled after ``grace`` seconds."""
        if self._channel is not None:
            await self._channel.close(grace)
            self._channel = None
            self._stub = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncStream:
    """One StreamCuts call. Enter it, ``send`` audio, iterate events::

        async with client.stream(StreamOptions(sample_rate_hz=16000)) as s:
            await s.send(chunk)          # bytes in the configured encoding, or an array
            await s.close_send()         # end of audio
            async for ev in s:           # ReadyEvent, CutEvent, ..., SummaryEvent
                ...

    Iteration ends after the last event of a stream that closed OK and raises
    the stream's SeamcutRpcError for one that ended with a non-OK status. Leaving the block
    cancels the call if the server has not finished it.
    """

    def __init__(self, client: AsyncClient, options: StreamOptions, *,
                 ready_timeout: float | None = None) -> None:
        if ready_timeout is not None and not ready_timeout > 0:
            raise InvalidOptions(f"ready_timeout: must be > 0 seconds, got {ready_timeout}")
        self.options = options
        self._client = client
        self._ready_timeout = ready_timeout
        self._timed_out: SeamcutRpcError | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._reader: asyncio.Task[None] | None = None
        self._requests: asyncio.Queue[pb.ClientMessage | None] = asyncio.Queue(
            SEND_QUEUE_MESSAGES
        )
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._finished = asyncio.Event()
        self._ready: asyncio.Future[ReadyEvent] | None = None
        self._ready_event: ReadyEvent | None = None
        self._flushes: dict[int, asyncio.Future[FlushedEvent]] = {}
        self._error: SeamcutRpcError | None = None
        self._first_status: SeamcutRpcError | None = None
        self._send_closed = False
        self._end_queued = False
        self._seq = 0
        self._flush_id = 0
        rate = options.sample_rate_hz
        self._max_frames = max(
            1, min(MAX_MESSAGE_BYTES // options.frame_bytes, rate * MAX_MESSAGE_MS // 1000)
        )

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AsyncStream:
        if self._call is not None:
            raise UsageError("a stream can be entered only once; open a new one")
        self._ready = asyncio.get_running_loop().create_future()
        self._call = self._client._get_stub().StreamCuts(
            _Requests(self.options.to_proto(), self._requests),
            metadata=(*self._client.metadata, *trace_metadata()),
        )
        self._call.add_done_callback(self._on_call_done)
        self._reader = asyncio.create_task(self._read(), name="seamcut-stream-reader")
        if self._ready_timeout is not None:
            timer = asyncio.get_running_loop().call_later(self._ready_timeout, self._no_ready)
            self._ready.add_done_callback(lambda _: timer.cancel())
        return self

    def _on_call_done(self, call: grpc.aio.Call) -> None:
        # Runs synchronously when the call first gets a status: keep it, as grpc may
        # overwrite it before any task looks (see _status_error).
        self._first_status = status_now(call, answered=self._ready_event is not None,
                                        tls=self._client.tls)

    def _no_ready(self) -> None:
        if self._finished.is_set() or self._call is None:
            return
        wait = f"{self._ready_timeout:g} s"
        target = self._client.target
        channel = self._client._channel
        connected = channel is not None and (
            channel.get_state() == grpc.ChannelConnectivity.READY)
        if connected:
            self._timed_out = DeadlineExceeded(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{target} accepted the connection but sent no Ready within {wait}", {})
        else:
            self._timed_out = ConnectionFailed(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no answer from {target} within {wait} (is the address right and the "
                "server up? a TLS server and a plaintext client also look like this)", {})
        self._call.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the call unless the server has finished it; wait for the reader."""
        if self._call is None or self._reader is None:
            return
        if not self._finished.is_set():
            self._call.cancel()
        # wait() rather than await: the reader may end cancelled, which is not our error.
        await asyncio.wait({self._reader})

    @property
    def ready(self) -> ReadyEvent | None:
        """The server's Ready (session id, look-ahead, config in force); None until it came."""
        return self._ready_event

    async def wait_ready(self) -> ReadyEvent:
        """Wait for Ready. Raises the stream's SeamcutRpcError if it fails first."""
        if self._ready is None:
            raise UsageError("the stream is not open: use `async with client.stream(...)`")
        # shield: a cancelled waiter must not cancel the future other waiters share.
        return await asyncio.shield(self._ready)

    @property
    def done(self) -> bool:
        """True once the call has ended (all events are queued for iteration)."""
        return self._finished.is_set()

    # ------------------------------------------------------------ writing

    async def send(self, audio: Audio) -> None:
        """Send audio: bytes already in the configured encoding (whole frames), or an
        array ``[frames, channels]`` (``[frames]`` for mono), float or int16, encoded
        per ``options.encoding``. Long audio goes out as several AudioChunks (each gets
        the next seq and the current time as client_send_time_ns).

        Waits while the server applies back-pressure. Raises AudioError for a shape or
        size that does not fit the config, StreamClosedError after close_send(), and
        the stream's SeamcutRpcError if it has already failed.
        """
        data = to_wire(audio, self.options.encoding, self.options.channels)
        step = self._max_frames * self.options.frame_bytes
        async with self._send_lock:
            self._check_open()
            for offset in range(0, max(len(data), 1), step):
                msg = pb.ClientMessage(audio=pb.AudioChunk(
                    seq=self._seq, data=data[offset:offset + step],
                    client_send_time_ns=time.time_ns(),
                ))
                await self._put(msg)
                self._seq += 1

    async def flush(self) -> FlushedEvent:
        """Ask the server to emit everything decidable now; wait for its Flushed.

        The FlushedEvent also appears in the event iteration, in order.
        """
        async with self._send_lock:
            self._check_open()
            self._flush_id += 1
            fid = self._flush_id
            fut: asyncio.Future[FlushedEvent] = asyncio.get_running_loop().create_future()
            self._flushes[fid] = fut
            await self._put(pb.ClientMessage(control=pb.Control(flush=pb.Flush(flush_id=fid))))
        return await fut

    async def close_send(self) -> None:
        """Half-close: no more audio. The server finishes, sends Summary and closes."""
        async with self._send_lock:
            if self._end_queued or self._call is None:
                return
            self._send_closed = True
            if not self._finished.is_set():
                # Marked only once queued: a close_send cancelled while waiting for room
                # (e.g. stream_cuts stopping its sender on a drain notice) can be
                # repeated, so the server still gets the half-close.
                await self._put(None)
            self._end_queued = True

    def _check_open(self) -> None:
        if self._call is None:
            raise UsageError("the stream is not open: use `async with client.stream(...)`")
        if self._finished.is_set():
            raise self._error or StreamClosedError("the stream has ended")
        if self._send_closed:
            raise StreamClosedError("send after close_send(): the audio has ended")

    async def _put(self, msg: pb.ClientMessage | None) -> None:
        q = self._requests
        if not q.full():
            q.put_nowait(msg)
            return
        # Full: the server is pushing back. Wait for room, but stop waiting if the call
        # ends meanwhile (nothing would ever take from the queue again).
        put = asyncio.ensure_future(q.put(msg))
        ended = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait({put, ended}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            put.cancel()
            raise
        finally:
            ended.cancel()
        if put.done():
            return
        put.cancel()  # the call ended first: the message was not queued
        raise self._error or StreamClosedError("the stream has ended")

    # ------------------------------------------------------------ reading

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Event:
        ev = await self.next_event()
        if ev is None:
            raise StopAsyncIteration
        return ev

    def events(self) -> AsyncStream:
        """The event iterator (the stream itself), for symmetry with the sync client."""
        return self

    async def next_event(self) -> Event | None:
        """The next event; None after the last one of a stream that ended OK.

        Raises the SeamcutRpcError (every time it is called) once a failed stream's
        events are used up.
        """
        if self._reader is None:
            raise UsageError("the stream is not open: use `async with client.stream(...)`")
        ev = await self._events.get()
        if ev is None:
            self._events.put_nowait(None)  # stay at the end for later calls
            if self._error is not None:
                raise self._error
        return ev

    async def _read(self) -> None:
        assert self._call is not None and self._ready is not None
        error: SeamcutRpcError | None = None
        ended = False
        try:
            async for msg in self._call:
                ev = event_from_proto(msg)
                if ev is None:
                    continue
                if isinstance(ev, ReadyEvent) and not self._ready.done():
                    self._ready_event = ev
                    self._ready.set_result(ev)
                elif isinstance(ev, FlushedEvent):
                    fut = self._flushes.pop(ev.flush_id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(ev)
                self._events.put_nowait(ev)
            ended = True
        except grpc.aio.AioRpcError as exc:
            error = await self._status_error(exc)
            ended = True
        except Exception as exc:  # a client bug must reach the caller, not vanish in a task
            error = rpc_error(grpc.StatusCode.UNKNOWN, f"reading the stream failed: {exc!r}")
            error.__cause__ = exc
            ended = True
        finally:
            if not ended:  # cancelled, also while in a handler above
                error = rpc_error(grpc.StatusCode.CANCELLED,
                                  "the stream was cancelled by the client")
            if self._timed_out is not None and self._ready_event is None:
                error = self._timed_out
            self._finish(error)

    async def _status_error(self, exc: grpc.aio.AioRpcError) -> SeamcutRpcError:
        """The stream's real status. grpc.aio reports INTERNAL "Internal error from Core"
        instead of the server's status when a write was in flight as the server ended the
        stream (grpc/grpc#36066): the server's status either came first (kept by
        _on_call_done) or replaces the INTERNAL a moment later."""
        answered, tls = self._ready_event is not None, self._client.tls
        if (exc.code(), exc.details()) != CORE_WRITE_ERROR:
            return wrap_rpc_error(exc, answered=answered, tls=tls)
        first = self._first_status
        if first is not None and (first.code, first.details) != CORE_WRITE_ERROR:
            return first
        assert self._call is not None
        for _ in range(40):  # up to ~200 ms, only on this rare path
            await asyncio.sleep(0.005)
            now = status_now(self._call, answered=answered, tls=tls)
            if now is not None and (now.code, now.details) != CORE_WRITE_ERROR:
                return now
        return wrap_rpc_error(exc, answered=answered, tls=tls)

    def _finish(self, error: SeamcutRpcError | None) -> None:
        self._error = error
        self._finished.set()
        failure = error or StreamClosedError("the stream ended without an answer")
        pending: list[asyncio.Future[Any]] = [*self._flushes.values()]
        if self._ready is not None:
            pending.append(self._ready)
        for fut in pending:
            if not fut.done():
                fut.set_exception(failure)
                # Mark it retrieved: whoever awaits it gets the error; if nobody does,
                # iteration reports the same failure, so no "never retrieved" warning.
                fut.exception()
        self._flushes.clear()
        self._events.put_nowait(None)


async def _run_stream(
    s: AsyncStream, audio: AsyncIterable[Audio] | Iterable[Audio], finish_on_drain: bool
) -> AsyncGenerator[Event, None]:
    """stream_cuts on an open stream that has its Ready: send ``audio``, yield events."""
    source_errors: list[BaseException] = []
    sender = asyncio.create_task(_send_all(s, audio, source_errors), name="seamcut-sender")
    failure: SeamcutRpcError | None = None
    try:
        async for ev in s:
            if (finish_on_drain and isinstance(ev, NoticeEvent)
                    and ev.code == DRAINING_NOTICE and not sender.done()):
                sender.cancel()
                await asyncio.wait({sender})
                await s.close_send()
            yield ev
    except SeamcutRpcError as exc:
        failure = exc
    finally:
        if not sender.done():
            sender.cancel()
        await asyncio.wait({sender})
        if not sender.cancelled():
            sender.exception()  # retrieved: it is in source_errors or is `failure`
    # The audio's own failure caused the cancellation the reader then saw.
    if source_errors:
        raise source_errors[0]
    if failure is not None:
        raise failure


async def _send_all(stream: AsyncStream, audio: AsyncIterable[Audio] | Iterable[Audio],
                    errors: list[BaseException]) -> None:
    """stream_cuts' writing half: every block of ``audio``, then the half-close. A
    failure of the source (or of encoding it) goes to ``errors`` before the stream is
    cancelled, so the caller reports it rather than the cancellation it causes."""
    try:
        if isinstance(audio, AsyncIterable):
            async for block in audio:
                await stream.send(block)
        else:
            for block in audio:
                await stream.send(block)
        await stream.close_send()
    except (SeamcutRpcError, StreamClosedError):
        raise  # the stream has ended: the reader reports its status
    except Exception as exc:
        errors.append(exc)
        await stream.aclose()  # the server would wait for audio that never comes
        raise


class _Requests:
    """The call's request iterator: the config, then the queue's messages until None.

    A plain class rather than an async generator: grpc may abandon it mid-wait when the
    call ends, and an unfinished generator would need its loop alive to be finalised.
    """

    def __init__(self, config: pb.StreamConfig, queue: asyncio.Queue[pb.ClientMessage | None]):
        self._config: pb.StreamConfig | None = config
        self._queue = queue

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> pb.ClientMessage:
        if self._config is not None:
            config, self._config = self._config, None
            return pb.ClientMessage(config=config)
        msg = await self._queue.get()
        if msg is None:
            raise StopAsyncIteration
        return msg


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """W3C ``traceparent`` (and ``tracestate``) of the caller's current OpenTelemetry
    span, so that the server's stream span joins the caller's trace; nothing when
    there is no valid current span or OpenTelemetry is not installed (the client-only
    install has none: imported lazily, never required)."""
    otel = _opentelemetry()
    if otel is None:
        return ()
    trace, propagator = otel
    if not trace.get_current_span().get_span_context().is_valid:
        return ()
    carrier: dict[str, str] = {}
    propagator.inject(carrier)
    return tuple(carrier.items())


@functools.cache
def _opentelemetry() -> tuple[Any, Any] | None:
    """(the trace API module, a W3C propagator), or None without OpenTelemetry; looked
    up once, as a failed import searches sys.path again every time."""
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    return trace, TraceContextTextMapPropagator()
