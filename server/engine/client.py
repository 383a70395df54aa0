"""The one interface sessions, the servicer, the app and ``--offline`` use: EngineClient.

Two implementations: :class:`InprocEngine` (the stage threads in this process: tests,
``--offline``, ``--engine inline``) and ``ProcessEngineClient`` (engine processes over
IPC, :mod:`.mpclient`). :func:`make_engine_client` picks one. Callers see typed
:class:`~.protocol.EngineInfo` capabilities, never a model object.

All methods are called on the event loop thread; results and notices are delivered
there too. Per stream, results arrive in the order of the requests.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seamcut.server.config import AppConfig
from seamcut.server.engine.protocol import EngineInfo, ErrorCode, Request, Result

if TYPE_CHECKING:  # the concrete engine loads models: imported only when started
    from seamcut.server.engine.pipeline import Pipeline

log = logging.getLogger(__name__)

ResultHandler = Callable[[Result], None]
NoticeHandler = Callable[[str, str], None]  # (code, message) for one stream


@dataclass(frozen=True, slots=True)
class _Route:
    on_result: ResultHandler
    on_notice: NoticeHandler


class EngineClient(ABC):
    """Submit requests, get results per stream, watch the engine's health."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        self._health_listeners: list[Callable[[bool, str], None]] = []
        self.healthy = False
        self.reason = "starting"  # why not healthy ("" when healthy)
        self.submitted = 0
        self.answered = 0
        self._next_id = 0

    @property
    @abstractmethod
    def info(self) -> EngineInfo:
        """Capabilities of the engine(s) behind this client (valid after start)."""

    @abstractmethod
    async def start(self) -> None:
        """Start or connect to the engine(s); returns once they are warm."""

    @abstractmethod
    async def close(self) -> None:
        """Stop using the engine(s); pending requests are abandoned."""

    @abstractmethod
    def _send(self, req: Request) -> None: ...

    @abstractmethod
    def _cancel(self, stream: str) -> None: ...

    def stream_engine(self, stream: str) -> EngineInfo:
        """The engine serving ``stream`` now (several engines: the one it is placed on)."""
        return self.info

    def engines(self) -> list[tuple[EngineInfo, bool]]:
        """Every engine behind this client, and whether it is serving now."""
        return [(self.info, self.healthy)]

    def new_id(self) -> int:
        """A request id unique for this client."""
        self._next_id += 1
        return self._next_id

    # ------------------------------------------------------------ streams
    def register(self, stream: str, on_result: ResultHandler, on_notice: NoticeHandler) -> None:
        self._routes[stream] = _Route(on_result, on_notice)

    def unregister(self, stream: str) -> None:
        """The stream is over: its pending requests are cancelled, results dropped, and
        the engine forgets the state it kept for it."""
        if self._routes.pop(stream, None) is not None:
            self._cancel(stream)

    def submit(self, req: Request) -> None:
        """Queue ``req`` (never blocks; the session bounds its work in flight)."""
        self.submitted += 1
        self._send(req)

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet answered (0 on an idle server)."""
        return self.submitted - self.answered

    def deliver(self, res: Result) -> None:
        """Hand a result to its stream (loop thread; for the implementations)."""
        self.answered += 1
        route = self._routes.get(res.stream)
        if route is None or res.error is ErrorCode.CANCELLED:
            return
        route.on_result(res)

    def is_routed(self, stream: str) -> bool:
        """Whether ``stream`` is still registered."""
        return stream in self._routes

    def notify(self, streams: list[str], code: str, message: str) -> None:
        """Give these streams a Notice (loop thread; for the implementations)."""
        for s in streams:
            route = self._routes.get(s)
            if route is not None:
                route.on_notice(code, message)

    # ------------------------------------------------------------ health
    def add_health_listener(self, cb: Callable[[bool, str], None]) -> None:
        self._health_listeners.append(cb)

    def _set_health(self, healthy: bool, reason: str = "") -> None:
        if healthy == self.healthy and reason == self.reason:
            return
        self.healthy, self.reason = healthy, reason
        (log.info if healthy else log.error)("engine %s%s", "healthy" if healthy else
                                             "NOT serving: ", reason)
        for cb in self._health_listeners:
            cb(healthy, reason)


class InprocEngine(EngineClient):
    """The engine's stage threads in this process."""

    def __init__(self, cfg: AppConfig, *, separators: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self._want_separators = separators
        self._pipeline: Pipeline | None = None
        self._info: EngineInfo | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def info(self) -> EngineInfo:
        assert self._info is not None, "start() the engine first"
        return self._info

    async def start(self) -> None:
        """Load and warm the models; called again from another loop, rebinds to it."""
        if self._pipeline is not None:
            self._loop = asyncio.get_running_loop()
            return
        from seamcut.server.engine.core import EngineCore
        from seamcut.server.engine.pipeline import Pipeline

        self._loop = asyncio.get_running_loop()
        core = await asyncio.to_thread(EngineCore, self.cfg, separators=self._want_separators)
        pipeline = Pipeline(core, self._from_thread, on_death=self._died_from_thread)
        pipeline.start()
        await asyncio.to_thread(core.warm_up)
        self._pipeline = pipeline
        self._info = core.info(self.cfg.engine.max_inflight_blocks)
        self._set_health(True)

    @property
    def pipeline(self) -> Pipeline | None:
        """The stage threads (tests read their error counters)."""
        return self._pipeline

    async def close(self) -> None:
        p = self._pipeline
        if p is not None:
            self._pipeline = None
            await asyncio.to_thread(p.stop)

    def _send(self, req: Request) -> None:
        assert self._pipeline is not None, "start() the engine first"
        self._pipeline.submit(req)

    def _cancel(self, stream: str) -> None:
        if self._pipeline is not None:
            self._pipeline.cancel(stream)

    def _from_thread(self, res: Result) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.deliver, res)

    def _died_from_thread(self, why: str) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._set_health, False, why)


def make_engine_client(cfg: AppConfig, *, separators: bool = True) -> EngineClient:
    """The client ``cfg`` asks for: in process, or the engine processes named in
    ``engine.endpoints`` (set by ``seamcut serve`` for its transport workers)."""
    if cfg.engine.endpoints:
        from seamcut.server.engine.mpclient import ProcessEngineClient

        return ProcessEngineClient(cfg)
    return InprocEngine(cfg, separators=separators)
