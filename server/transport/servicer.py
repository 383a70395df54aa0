"""The Seamcut servicer: thin conversion between gRPC and sessions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from seamcut.server.config import AppConfig
from seamcut.server.engine.pipeline import Engine
from seamcut.server.errors import (
    InternalError,
    Overloaded,
    ProtocolOrderError,
    SeamcutError,
    Unavailable,
)
from seamcut.server.session.session import InflightBudget, Session
from seamcut.server.transport import convert
from seamcut.server.transport.status import status_for, trailing_metadata

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class ServerCounters:
    """Read by tests and metrics: every opened session must be closed."""

    def __init__(self) -> None:
        self.sessions_open = 0
        self.sessions_total = 0
        self.rejected = 0


class SeamcutServicer(pb_grpc.SeamcutServicer):  # type: ignore[misc]  # generated base
    def __init__(self, cfg: AppConfig, engine: Engine) -> None:
        self.cfg = cfg
        self.engine = engine
        self.counters = ServerCounters()
        self.draining = False
        self._budget: InflightBudget | None = None
        self.sessions: set[Session] = set()

    async def GetCapabilities(
        self, request: pb.GetCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> pb.Capabilities:
        return convert.capabilities(self.cfg, self.engine.device.name,
                                    [*self.engine.separators, "none"])

    async def StreamCuts(
        self,
        request_iterator: AsyncIterator[pb.ClientMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ServerMessage]:
        # Admission comes first, before any per-stream allocation.
        try:
            self._admit()
        except SeamcutError as exc:
            self.counters.rejected += 1
            await _abort(context, exc, "")
            return
        self.counters.sessions_open += 1
        self.counters.sessions_total += 1
        session: Session | None = None
        reader: asyncio.Task[None] | None = None
        try:
            first = await _first_message(request_iterator)
            spec = convert.spec_from_proto(self.cfg, first)
            if self._budget is None:
                self._budget = InflightBudget(self.cfg.engine.max_inflight_blocks)
            session = Session(self.cfg, self.engine, spec, self._budget)
            self.sessions.add(session)
            yield convert.event_to_proto(session.ready(), spec)
            failure: list[SeamcutError] = []
            reader = asyncio.create_task(_read(request_iterator, session, failure))
            while True:
                ev = await session.events.get()
                session.consumed()
                if ev is None:
                    break
                yield convert.event_to_proto(ev, spec)
            if failure:
                raise failure[0]
            if session.error is not None:
                raise session.error
        except SeamcutError as exc:
            await _abort(context, exc, session.id if session else "")
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:  # a bug: never let it surface as UNKNOWN
            sid = session.id if session else "-"
            log.exception("session %s failed", sid)
            await _abort(context, InternalError(f"internal error in session {sid}: {exc!r}"), sid)
        finally:
            if reader is not None:
                reader.cancel()
            if session is not None:
                session.close()
                self.sessions.discard(session)
            self.counters.sessions_open -= 1

    def _admit(self) -> None:
        if self.draining:
            raise Unavailable("server is draining; reconnect to another replica or retry later")
        if self.counters.sessions_open >= self.cfg.server.max_streams:
            raise Overloaded(
                f"server at stream capacity ({self.cfg.server.max_streams} open streams); "
                "retry after the hinted delay",
                retry_after_s=1.0,
            )


async def _first_message(it: AsyncIterator[pb.ClientMessage]) -> pb.StreamConfig:
    try:
        msg = await it.__anext__()
    except StopAsyncIteration:
        raise ProtocolOrderError(
            "stream ended before StreamConfig: send a config message first"
        ) from None
    if msg.WhichOneof("msg") != "config":
        raise ProtocolOrderError(
            f"first message must be StreamConfig, got {msg.WhichOneof('msg') or 'an empty message'}"
        )
    return msg.config


async def _read(
    it: AsyncIterator[pb.ClientMessage], session: Session, failure: list[SeamcutError]
) -> None:
    """Reader task: feed messages to the session; on error, record it and wake the writer."""
    try:
        async for msg in it:
            kind = msg.WhichOneof("msg")
            if kind == "audio":
                a = msg.audio
                await session.audio(a.seq, a.data, a.client_send_time_ns)
            elif kind == "control":
                if msg.control.WhichOneof("control") == "flush":
                    await session.flush(msg.control.flush.flush_id)
            elif kind == "config":
                raise ProtocolOrderError("StreamConfig may be sent only once, as the first message")
            else:
                raise ProtocolOrderError("empty ClientMessage: set config, audio or control")
        await session.finish()
    except SeamcutError as exc:
        failure.append(exc)
        session.events.put_nowait(None)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("reader of session %s failed", session.id)
        failure.append(InternalError(f"internal error in session {session.id}: {exc!r}"))
        session.events.put_nowait(None)


async def _abort(context: grpc.aio.ServicerContext, exc: SeamcutError, session_id: str) -> None:
    code = status_for(exc)
    meta = trailing_metadata(exc)
    if session_id:
        meta += (("session-id", session_id),)
    log.info("stream %s ended: %s %s", session_id or "-", code.name, exc)
    await context.abort(code, str(exc), trailing_metadata=meta)
