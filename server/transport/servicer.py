"""The Seamcut servicer: thin conversion between gRPC and sessions.

Per stream, three parts: the handler (an async generator) is the writer; a reader task
feeds client messages to the session; a watchdog task ends a stream whose client has
stopped reading. Every way a stream can end (half-close, error, client cancel, client
killed, limit, drain) goes through :meth:`SeamcutServicer._release`, called from the
handler's ``finally`` and from the RPC's done-callback: grpc.aio may leave a cancelled
handler suspended at a ``yield``, so ``finally`` alone could run late.

Limits a stream can hit, and their statuses (the table is ``status.py``):

* refused at admission: draining -> UNAVAILABLE; ``max_streams`` open, or this
  connection, peer address or token at its share (``max_streams_per_*``) ->
  RESOURCE_EXHAUSTED with ``retry-after-ms`` (before any per-stream allocation, and
  server-wide across workers: ``admission.py``); after the config, the stream's
  buffered-audio reservation over ``max_buffered_mib`` -> RESOURCE_EXHAUSTED;
* no client message that moves the stream on for ``idle_timeout_s`` -> DEADLINE_EXCEEDED
  (:class:`IdleTimeout`): empty chunks and flushes with no new audio do not count;
* open longer than ``max_session_s`` -> OUT_OF_RANGE (:class:`SessionTooLong`);
  both judged while the server waits for the client's next message (time spent pushing
  back on the client does not count as idle). After the config they are one timer
  per stream that is rescheduled only when it fires, not an ``asyncio.timeout`` per
  message: at thousands of messages per second that was 7 % of the event loop;
* no message could be sent for ``stall_timeout_s`` -> DEADLINE_EXCEEDED
  (:class:`ConsumerStalled`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import grpc
from seamcut.server.config import AppConfig
from seamcut.server.engine.client import EngineClient
from seamcut.server.errors import (
    ConfigError,
    ConsumerStalled,
    IdleTimeout,
    InternalError,
    Overloaded,
    ProtocolOrderError,
    SeamcutError,
    SessionTooLong,
    Unavailable,
    echo,
    log_value,
)
from seamcut.server.events import Notice
from seamcut.server.session.session import InflightBudget, Session
from seamcut.server.transport import admission, convert
from seamcut.server.transport.admission import Claim
from seamcut.server.transport.refusals import RefusalLog
from seamcut.server.transport.security import TokenAuth, bearer_token
from seamcut.server.transport.status import status_for, trailing_metadata
from seamcut.server.transport.telemetry import StreamTelemetry, Telemetry

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
DRAIN_NOTICE = "draining"
# How long ending a stream from outside (stall, drain) waits for its status to be
# queued before cancelling the handler anyway; the client may not be reading.
_ABORT_WAIT_S = 0.25
# A StreamConfig is a few hundred bytes; anything this big is not one (the transport
# limit, server.max_message_bytes, is for audio).
MAX_CONFIG_BYTES = 16 << 10
MAX_STATUS_CHARS = 512  # of a status message: ours are short, this is a backstop
RETRY_AFTER_S = 1.0


class ServerCounters:
    """Read by tests and metrics: every admitted stream must be released."""

    def __init__(self) -> None:
        self.sessions_open = 0  # admitted and not yet released
        self.sessions_total = 0
        self.rejected = 0  # refused at admission (capacity, a client's share, draining)
        self.tasks_alive = 0  # reader and watchdog tasks not yet finished
        self.idle_timeouts = 0
        self.session_limits = 0
        self.stalls = 0
        self.drain_notices = 0


class _Stream:
    """One admitted stream's bookkeeping (event-loop only)."""

    def __init__(self, context: grpc.aio.ServicerContext, peer: str,
                 claims: list[Claim], tel: StreamTelemetry) -> None:
        self.context = context
        self.tel = tel
        self.peer = peer  # the connection (address:port)
        self.claims = claims  # what admission took for it, given back at release
        self.task = asyncio.current_task()  # the RPC's task: it drives the handler
        self.opened = time.monotonic()
        self.session: Session | None = None
        self.reader: asyncio.Task[None] | None = None
        self.watchdog: asyncio.Task[None] | None = None
        self.failure: SeamcutError | None = None
        self.writing_since: float | None = None  # monotonic start of a pending write
        self.reading_since: float | None = None  # monotonic start of a pending read
        # Since when the client has sent nothing that moves the stream on (empty chunks
        # and flushes with nothing new do not reset it); the idle limit counts from it.
        self.quiet_since: float | None = None
        self.limit_timer: asyncio.TimerHandle | None = None
        self.ended_from_outside = False
        self.drain_notified = False
        self.completed = False  # ended with OK (Summary sent)
        self.released = False
        self.request_id = "-"  # StreamConfig.request_id as it may appear in logs

    @property
    def ids(self) -> str:
        """``session_id=… request_id=…``: every log line about the stream carries both,
        so a client's own id finds the server's lines (and the session id its status)."""
        return f"session_id={self.session_id or '-'} request_id={self.request_id}"

    @property
    def session_id(self) -> str:
        return self.session.id if self.session is not None else ""

    @property
    def log_extra(self) -> dict[str, str]:
        """The stream's ids as logging ``extra`` fields (the JSON log format's keys)."""
        return {"session_id": self.session_id, "request_id": self.request_id,
                "trace_id": self.tel.trace_id}

    def fail(self, exc: SeamcutError) -> None:
        """Record the stream's first failure and wake the writer to report it."""
        if self.failure is None:
            self.failure = exc
        if self.session is not None:
            self.session.events.put_nowait(None)


class SeamcutServicer(pb_grpc.SeamcutServicer):  # type: ignore[misc]  # generated base
    def __init__(self, cfg: AppConfig, engine: EngineClient,
                 auth: TokenAuth | None = None, telemetry: Telemetry | None = None) -> None:
        self.cfg = cfg
        self.engine = engine
        self.telemetry = telemetry if telemetry is not None else Telemetry(cfg)
        self.counters = ServerCounters()
        # Server-wide counters (all workers): streams, per peer and token, bytes.
        self.ledger = admission.Ledger(cfg.server.stream_slots_path, cfg.server.worker_index)
        self._auth = auth
        self._per_connection: dict[str, int] = {}  # a connection lives in one worker
        self.refusals = RefusalLog(log)
        self.draining = False
        self._drain_message = ""
        self._budget: InflightBudget | None = None
        self.sessions: set[Session] = set()
        self._streams: set[_Stream] = set()
        self._idle = asyncio.Event()  # set while no stream is open
        self._idle.set()

    async def GetCapabilities(
        self, request: pb.GetCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> pb.Capabilities:
        return convert.capabilities(self.cfg, self.engine.info, self.engine.engines())

    async def StreamCuts(
        self,
        request_iterator: AsyncIterator[pb.ClientMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ServerMessage]:
        # Admission comes first, before any per-stream allocation.
        peer = context.peer() or ""
        tel = self.telemetry.open_stream(context.invocation_metadata())
        try:
            claims = self._admit(context, peer)
        except SeamcutError as exc:
            self.counters.rejected += 1
            tel.rejected(status_for(exc).name, str(exc))
            await self._abort(context, exc, "")
            return
        st = _Stream(context, peer, claims, tel)
        tel.admitted()
        self.counters.sessions_open += 1
        self.counters.sessions_total += 1
        self._streams.add(st)
        self._idle.clear()
        context.add_done_callback(lambda _ctx: self._release(st))
        try:
            config = _config_of(await self._next(request_iterator, st))
            st.request_id = log_value(config.request_id)
            spec = convert.spec_from_proto(self.cfg, config)
            if self._budget is None:
                self._budget = InflightBudget(self.cfg.engine.max_inflight_blocks)
            session = Session(self.cfg, self.engine, spec, self._budget, observer=tel.observer)
            st.session = session
            self.sessions.add(session)
            ready = dataclasses.replace(session.ready(), trace_id=tel.trace_id)
            tel.configured(spec, session.id, ready.device, st.request_id)
            self._reserve_buffer(st, session)
            yield convert.event_to_proto(ready, spec)
            log.debug("stream started %s peer=%s mode=%s rate_hz=%d channels=%d", st.ids,
                      log_value(peer), spec.mode.value, spec.format.sample_rate_hz,
                      spec.format.channels, extra=st.log_extra)
            if self.draining:  # admitted just before the drain began
                self._notify_drain(st)
            st.reader = self._spawn(self._read(request_iterator, st))
            st.watchdog = self._spawn(self._watch(st))
            while True:
                ev = await session.events.get()
                session.consumed()
                if ev is None:
                    break
                st.writing_since = time.monotonic()
                yield convert.event_to_proto(ev, spec)
                st.writing_since = None
            if st.failure is not None:
                raise st.failure
            if session.error is not None:
                raise session.error
            st.completed = True
            log.info("stream ended: OK %s chunks=%d cuts=%d wall_s=%.1f", st.ids,
                     session.stats.chunks, session.stats.cuts, time.monotonic() - st.opened,
                     extra=st.log_extra)
        except SeamcutError as exc:
            # Its traceback holds the frames that saw the client's message, and it
            # outlived the call: each round of 200 refused 900 KB configs kept another
            # ~150 MiB until this line (docs/RELIABILITY.md, "Abuse").
            exc.__traceback__ = None
            st.failure = st.failure or exc  # for _release: this end is logged with its status
            if not st.ended_from_outside:
                await self._abort(context, exc, st.session_id, st.request_id, st.log_extra)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except grpc.aio.AbortError:
            pass  # ended from outside (stall, drain, shutdown) while this waited to read
        except Exception as exc:  # a bug: never let it surface as UNKNOWN
            sid = st.session_id or "-"
            st.failure = InternalError(f"internal error in session {sid}")
            log.exception("stream failed %s", st.ids, extra=st.log_extra)
            await self._abort(context, InternalError(
                f"internal error in session {sid}: {echo(exc, 200)}"), st.session_id,
                st.request_id, st.log_extra)
        finally:
            self._release(st)

    # ------------------------------------------------------------ admission, release

    def _admit(self, context: grpc.aio.ServicerContext, peer: str) -> list[Claim]:
        """Take a stream slot of the server, the peer and the token, or raise why not."""
        s = self.cfg.server
        if self.draining:
            raise Unavailable("server is draining; reconnect to another replica or retry later")
        if self._per_connection.get(peer, 0) >= s.max_streams_per_connection:
            raise Overloaded(
                f"this connection has server.max_streams_per_connection = "
                f"{s.max_streams_per_connection} streams open; end one, or spread streams "
                "over more connections", retry_after_s=RETRY_AFTER_S)
        claims = [Claim(admission.STREAMS, 1, s.max_streams, "server.max_streams")]
        if s.max_streams_per_peer:
            claims.append(Claim(self.ledger.peer_column(peer_address(peer)), 1,
                                s.max_streams_per_peer, "server.max_streams_per_peer"))
        token = self._token(context)
        if token and s.max_streams_per_token:
            claims.append(Claim(self.ledger.token_column(token), 1, s.max_streams_per_token,
                                "server.max_streams_per_token"))
        over = self.ledger.acquire(claims)
        if over is not None:
            raise Overloaded(_capacity_message(over), retry_after_s=RETRY_AFTER_S)
        self._per_connection[peer] = self._per_connection.get(peer, 0) + 1
        return claims

    def _token(self, context: grpc.aio.ServicerContext) -> str:
        """The bearer token the call carries (already checked by TokenAuth), or ""."""
        if self._auth is None:
            return ""
        return bearer_token(context.invocation_metadata()) or ""

    def _reserve_buffer(self, st: _Stream, session: Session) -> None:
        """Admission by cost: reserve the bytes of audio the stream may hold."""
        s = self.cfg.server
        claim = Claim(admission.BUFFERED, session.buffer_bytes,
                      int(s.max_buffered_mib * (1 << 20)), "server.max_buffered_mib")
        if self.ledger.acquire([claim]) is not None:
            raise Overloaded(
                f"server's audio buffers are in use (server.max_buffered_mib = "
                f"{s.max_buffered_mib:g}; this stream needs "
                f"{session.buffer_bytes / (1 << 20):.2f} MiB at its rate and channels); "
                "retry after the hinted delay", retry_after_s=RETRY_AFTER_S)
        st.claims.append(claim)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self.counters.tasks_alive += 1
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.counters.tasks_alive -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("stream task failed", exc_info=task.exception())

    def _release(self, st: _Stream) -> None:
        """Release everything the stream holds (idempotent; any point, any path)."""
        if st.released:
            return
        st.released = True
        if not st.completed and st.failure is None:
            # The client cancelled or went away (errors were logged with their status).
            log.debug("stream ended: CANCELLED %s", st.ids, extra=st.log_extra)
        if st.completed:
            status, message = "OK", ""
        elif st.failure is not None:
            status, message = status_for(st.failure).name, str(st.failure)
        else:
            status, message = "CANCELLED", "the client cancelled or went away"
        engine_id = (self.engine.stream_engine(st.session.id).engine_id
                     if st.session is not None else "")
        st.tel.end(status, message, engine_id)
        me = asyncio.current_task()
        for task in (st.reader, st.watchdog):
            if task is not None and task is not me:
                task.cancel()
        if st.limit_timer is not None:
            st.limit_timer.cancel()
            st.limit_timer = None
        if st.session is not None:
            st.session.close()
            self.sessions.discard(st.session)
        # Break the cycle task -> handler generator -> st -> task, so that a handler
        # grpc abandoned at a yield is finalised by refcount, not by a later GC pass.
        st.task = None
        self._streams.discard(st)
        self.counters.sessions_open -= 1
        self.ledger.release(st.claims)
        left = self._per_connection.get(st.peer, 1) - 1
        if left > 0:
            self._per_connection[st.peer] = left
        else:
            self._per_connection.pop(st.peer, None)
        if not self._streams:
            self._idle.set()

    # ------------------------------------------------------------ reading

    def _limit_due(self, st: _Stream) -> tuple[float, bool]:
        """When the pending read times out: (deadline, is it the session limit). Times are
        ``time.monotonic()``, the clock of asyncio's default loop (``loop.time()``)."""
        s = self.cfg.server
        assert st.reading_since is not None
        quiet = st.quiet_since if st.quiet_since is not None else st.reading_since
        due, session_limit = quiet + s.idle_timeout_s, False
        if s.max_session_s > 0 and st.opened + s.max_session_s <= due:
            due, session_limit = st.opened + s.max_session_s, True
        return due, session_limit

    def _limit_error(self, session_limit: bool) -> SeamcutError:
        s = self.cfg.server
        if session_limit:
            self.counters.session_limits += 1
            return SessionTooLong(
                f"stream open longer than server.max_session_s = {s.max_session_s:g} s; "
                "open a new stream (StreamConfig.start_sample resumes the time base)")
        self.counters.idle_timeouts += 1
        return IdleTimeout(
            f"no audio from the client for server.idle_timeout_s = {s.idle_timeout_s:g} s "
            "(empty chunks and flushes with nothing new do not count); send audio, or "
            "half-close when done")

    async def _next(self, it: AsyncIterator[pb.ClientMessage],
                    st: _Stream) -> pb.ClientMessage | None:
        """The first message (the config), None at half-close; raises a limit's error."""
        st.reading_since = st.quiet_since = time.monotonic()
        due, session_limit = self._limit_due(st)
        try:
            async with asyncio.timeout_at(due):
                return await it.__anext__()
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise self._limit_error(session_limit) from None
        finally:
            st.reading_since = None

    def _check_limits(self, st: _Stream) -> None:
        """Timer callback: end the stream if its pending read is past a limit, else
        sleep until the next possible deadline (a read that started later)."""
        st.limit_timer = None
        if st.released:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        s = self.cfg.server
        if st.reading_since is None:  # the server is busy with (or pushing back on) it
            due = now + s.idle_timeout_s
            if s.max_session_s > 0:  # past the session limit: look again when reading
                due = min(due, max(now + 0.05, st.opened + s.max_session_s))
        else:
            due, session_limit = self._limit_due(st)
            if due <= now:
                st.fail(self._limit_error(session_limit))  # the writer ends the stream
                return
        st.limit_timer = loop.call_at(due, self._check_limits, st)

    async def _read(self, it: AsyncIterator[pb.ClientMessage], st: _Stream) -> None:
        """Reader task: feed messages to the session; on error, record it and wake the writer."""
        session = st.session
        assert session is not None
        self._check_limits(st)
        moved = True  # did the last message move the stream on (resets the idle clock)
        unflushed = False  # audio since the last flush
        try:
            while True:
                st.reading_since = time.monotonic()
                if moved:
                    st.quiet_since = st.reading_since
                try:
                    msg = await it.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    st.reading_since = None
                kind = msg.WhichOneof("msg")
                if kind == "audio":
                    a = msg.audio
                    moved = len(a.data) > 0
                    unflushed = unflushed or moved
                    await session.audio(a.seq, a.data, a.client_send_time_ns)
                elif kind == "control":
                    moved = False
                    if msg.control.WhichOneof("control") == "flush":
                        moved, unflushed = unflushed, False
                        await session.flush(msg.control.flush.flush_id)
                elif kind == "config":
                    raise ProtocolOrderError(
                        "StreamConfig may be sent only once, as the first message")
                else:
                    raise ProtocolOrderError("empty ClientMessage: set config, audio or control")
            await session.finish()
        except SeamcutError as exc:
            st.fail(exc)
        except grpc.aio.AbortError:
            pass  # the stream was ended from outside (stall, drain) while this read waited
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("reader of stream failed %s", st.ids, extra=st.log_extra)
            st.fail(InternalError(f"internal error in session {session.id}: {exc!r}"))

    # ------------------------------------------------------------ stalled readers, drain

    async def _watch(self, st: _Stream) -> None:
        """Watchdog task: end the stream once one write has been pending for the stall
        limit (the client stopped reading and HTTP/2 flow control holds the write)."""
        stall = self.cfg.server.stall_timeout_s
        period = min(1.0, stall / 4)
        while True:
            await asyncio.sleep(period)
            since = st.writing_since
            if since is not None and time.monotonic() - since >= stall:
                break
        self.counters.stalls += 1
        await self._end(st, ConsumerStalled(
            f"the client stopped reading: no message could be sent for "
            f"server.stall_timeout_s = {stall:g} s; read the stream's messages as they come"
        ))

    async def _end(self, st: _Stream, exc: SeamcutError) -> None:
        """End a stream from outside its handler: send ``exc``'s status if the transport
        takes it, then cancel the handler (it may be blocked in a write that never ends)."""
        if st.released or st.ended_from_outside:
            return
        st.ended_from_outside = True
        st.failure = st.failure or exc
        try:
            async with asyncio.timeout(_ABORT_WAIT_S):
                await self._abort(st.context, exc, st.session_id, st.request_id, st.log_extra)
        except (grpc.aio.AbortError, grpc.aio.UsageError, TimeoutError):
            pass  # AbortError: the status is queued; the others: the stream is past help
        if st.task is not None and not st.task.done():
            st.task.cancel()
        self._release(st)

    def begin_drain(self, grace_s: float) -> None:
        """Refuse new streams and tell the open ones (Notice ``draining``) to finish."""
        self.draining = True
        self._drain_message = (
            f"server is shutting down: half-close within {grace_s:g} s to get the "
            "remaining cuts; open new streams on another replica"
        )
        for st in list(self._streams):
            self._notify_drain(st)

    def _notify_drain(self, st: _Stream) -> None:
        if st.session is not None and not st.drain_notified:
            st.drain_notified = True
            self.counters.drain_notices += 1
            st.session.events.put_nowait(Notice(code=DRAIN_NOTICE, message=self._drain_message))

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no stream is open (True) or ``timeout_s`` passed (False)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def _abort(self, context: grpc.aio.ServicerContext, exc: SeamcutError,
                     session_id: str, request_id: str = "-",
                     extra: dict[str, str] | None = None) -> None:
        code = status_for(exc)
        self.telemetry.error(code.name)
        meta = trailing_metadata(exc)
        if session_id:
            meta += (("session-id", session_id),)
        message = str(exc)
        if len(message) > MAX_STATUS_CHARS:
            message = message[:MAX_STATUS_CHARS] + "…"
        self.refusals.note(code.name, "stream ended: %s session_id=%s request_id=%s %s",
                           code.name, session_id or "-", request_id, message, extra=extra)
        await context.abort(code, message, trailing_metadata=meta)

    async def end_all(self, exc: SeamcutError) -> None:
        """End every open stream with ``exc``'s status (one failure stops no other)."""
        results = await asyncio.gather(*(self._end(st, exc) for st in list(self._streams)),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                log.error("ending a stream failed", exc_info=r)


def _config_of(msg: pb.ClientMessage | None) -> pb.StreamConfig:
    if msg is None:
        raise ProtocolOrderError("stream ended before StreamConfig: send a config message first")
    if msg.WhichOneof("msg") != "config":
        raise ProtocolOrderError(
            f"first message must be StreamConfig, got {msg.WhichOneof('msg') or 'an empty message'}"
        )
    size = msg.config.ByteSize()
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config: StreamConfig of {size} bytes; at most {MAX_CONFIG_BYTES} "
                          "(check the string fields: separation.backend, request_id)")
    return msg.config


def peer_address(peer: str) -> str:
    """The client address of a grpc peer string, the key of max_streams_per_peer:
    "ipv4:10.0.0.7:5123" -> "10.0.0.7"; IPv6 by its /64 prefix (one host or LAN can
    have a whole /64 to itself); anything else (unix sockets) as it is."""
    kind, _, rest = peer.partition(":")
    host = rest.rpartition(":")[0].strip("[]")
    try:
        if kind == "ipv4":
            return str(ipaddress.IPv4Address(host))
        if kind == "ipv6":
            addr = ipaddress.IPv6Address(host)
            if addr.ipv4_mapped is not None:
                return str(addr.ipv4_mapped)
            return str(ipaddress.IPv6Network((addr, 64), strict=False))
    except ValueError:
        pass
    return peer


def _capacity_message(over: Claim) -> str:
    if over.column == admission.STREAMS:
        return (f"server at stream capacity ({over.limit} open streams, server.max_streams); "
                "retry after the hinted delay")
    whose = "this client address" if over.what.endswith("peer") else "this token"
    return (f"{whose} has {over.what} = {over.limit} streams open on this server; end one "
            "before opening more, or retry after the hinted delay")
