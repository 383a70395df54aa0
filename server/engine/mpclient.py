"""The process client: a transport worker's link to the engine processes.

One ZeroMQ DEALER socket per engine (``engine.endpoints``), driven from the worker's
event loop (``zmq.asyncio``: the socket's fd wakes the loop, nothing polls). What
the client guarantees:

* **Credits.** An engine grants a number of cost units in READY; requests beyond it
  wait here, in order, until results give credits back. Requests submitted during
  one loop iteration leave as one message.
* **Replay.** Every request stays in ``pending`` until its result arrives. The
  engine's pid comes with READY and is watched through a pidfd (a process sentinel,
  not a time-out): when it exits, the link gets a new socket and epoch (late results
  of the dead engine are dropped), the streams concerned get a Notice, and once the
  restarted engine says READY every pending request is sent again, oldest first. The
  engine is a pure function of the request, so the results are the ones the dead
  engine would have given. A request whose engine died under it twice fails with
  UNAVAILABLE instead of taking a third engine down.
* **Placement.** A stream stays on one engine (its results stay in order); new
  streams go to the serving engine with the fewest streams.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections import deque
from typing import Any

import zmq
import zmq.asyncio
from seamcut.server.config import AppConfig
from seamcut.server.engine import wire
from seamcut.server.engine.client import EngineClient
from seamcut.server.engine.protocol import (
    EngineInfo,
    ErrorCode,
    Kind,
    Request,
    Result,
    SeparatorInfo,
    failed,
)

log = logging.getLogger(__name__)
MAX_REPLAYS = 2
RESTART_NOTICE = "engine_restart"
RESUMED_NOTICE = "engine_resumed"


def _info(d: dict[str, Any]) -> EngineInfo:
    seps = tuple(SeparatorInfo(**s) for s in d.pop("separators"))
    return EngineInfo(separators=seps, **d)


class _Link:
    """One engine: its socket, credits, and the requests it holds."""

    def __init__(self, client: ProcessEngineClient, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint
        self.epoch = 0
        self.sock: zmq.asyncio.Socket | None = None
        self.info: EngineInfo | None = None
        self.ready = asyncio.Event()
        self.used = 0
        self.pending: dict[int, Request] = {}  # sent, no result yet (kept for replay)
        self.backlog: deque[Request] = deque()  # waiting for credits or for the engine
        self.replays: dict[int, int] = {}
        self.streams: set[str] = set()
        # stream -> (id, vad state, mix state) of its last ANALYSE result: a replayed
        # request that continues from an answered one gets that state instead.
        self.end_states: dict[str, tuple[int, Any, Any]] = {}
        self.restarts = 0
        self.replayed = 0  # requests sent again to a restarted engine (metrics)
        self._pidfd: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self._flush_scheduled = False

    @property
    def serving(self) -> bool:
        return self.ready.is_set()

    def connect(self) -> None:
        self.epoch += 1
        sock = self.client.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.IDENTITY, f"{os.getpid()}-{id(self)}-{self.epoch}".encode())
        sock.connect(self.endpoint)
        self.sock = sock
        self._send(wire.pack(wire.HELLO, [], epoch=self.epoch))
        self._reader = asyncio.ensure_future(self._read(sock, self.epoch))

    def close(self) -> None:
        self.ready.clear()
        if self._reader is not None:
            self._reader.cancel()
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def _send(self, frames: list[Any]) -> None:
        assert self.sock is not None
        fut = asyncio.ensure_future(self.sock.send_multipart(frames, copy=False))
        fut.add_done_callback(_log_send_error)

    # ------------------------------------------------------------ requests
    def submit(self, req: Request) -> None:
        self.backlog.append(req)
        self.schedule_flush()

    def schedule_flush(self) -> None:
        if not self._flush_scheduled and self.serving:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self.serving or self.info is None:
            return
        out = []
        while self.backlog:
            req = self.backlog[0]
            if self.used and self.used + req.cost > self.info.credits:
                break  # wait for credits (a request larger than the grant goes alone)
            self.backlog.popleft()
            self.pending[req.id] = req
            self.used += req.cost
            out.append(req)
        if out:
            self._send(wire.pack(wire.REQUESTS, out, epoch=self.epoch))

    def cancel(self, stream: str) -> None:
        kept = deque(r for r in self.backlog if r.stream != stream)
        self.client.answered += len(self.backlog) - len(kept)
        self.backlog = kept
        self.streams.discard(stream)
        self.end_states.pop(stream, None)
        if self.serving:  # also makes the engine forget the stream's kept state
            self._send(wire.pack(wire.CANCEL, [], streams=[stream]))

    # ------------------------------------------------------------ replies
    async def _read(self, sock: zmq.asyncio.Socket, epoch: int) -> None:
        try:
            while True:
                frames = await sock.recv_multipart(copy=False)
                if epoch != self.epoch:
                    return
                kind = frames[0].bytes
                if kind == wire.READY:
                    self._on_ready(wire.unpack_header(frames))
                elif kind == wire.RESULTS:
                    results, header = wire.unpack(Result, frames)
                    if header.get("epoch") == self.epoch:
                        self._on_results(results)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("engine link %s: reading failed", self.endpoint)

    def _on_ready(self, header: dict[str, Any]) -> None:
        if header.get("epoch") != self.epoch:
            return
        self.info = _info(header["info"])
        try:
            self._pidfd = os.pidfd_open(self.info.pid)
        except ProcessLookupError:  # it died between READY and now: wait for the next
            self._on_exit()
            return
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)
        replay = [self._resolve(r) for r in sorted(self.pending.values(), key=lambda r: r.id)]
        self.pending.clear()
        self.used = 0
        if self.epoch > 1:  # a replacement: replay, and tell every stream it is back
            self._replay(replay)
        self.ready.set()
        self.client.link_changed()
        self.schedule_flush()

    def _resolve(self, r: Request) -> Request:
        """A request continuing from one whose result is in: give it that end state
        (the new engine never saw the request it names)."""
        if not r.state_from or r.state_from in self.pending:
            return r
        end = self.end_states.get(r.stream)
        if end is None or end[0] != r.state_from:
            return r  # its predecessor failed: the engine will say so
        return dataclasses.replace(r, state_from=0, vad_state=end[1], mix_state=end[2])

    def _replay(self, reqs: list[Request]) -> None:
        back = []
        for r in reqs:
            if not self.client.is_routed(r.stream):
                self.client.answered += 1  # its stream ended meanwhile
                continue
            n = self.replays.get(r.id, 0) + 1
            self.replays[r.id] = n
            if n > MAX_REPLAYS:
                self.client.deliver(failed(
                    r, ErrorCode.UNAVAILABLE,
                    f"the engine died {MAX_REPLAYS} times while running this stream's "
                    "audio; the stream was stopped so as not to take down the next one"))
                continue
            back.append(r)
        streams = set(self.streams)
        self.replayed += len(back)
        self.backlog.extendleft(reversed(back))
        assert self.info is not None
        self.client.notify(sorted(streams), RESUMED_NOTICE,
                           f"{self.info.engine_id} is back (pid {self.info.pid}); "
                           f"{len(back)} requests replayed, no audio lost")

    def _on_results(self, results: list[Result]) -> None:
        for res in results:
            req = self.pending.pop(res.id, None)
            if req is None:
                continue
            self.used -= req.cost
            self.replays.pop(res.id, None)
            if res.kind is Kind.ANALYSE and res.error is ErrorCode.OK:
                self.end_states[res.stream] = (res.id, res.vad_state, res.mix_state)
            self.client.deliver(res)
        self.schedule_flush()

    def _on_exit(self) -> None:
        """The engine process ended (its pidfd became readable)."""
        info = self.info
        self.restarts += 1
        what = f"{info.engine_id} (pid {info.pid})" if info else self.endpoint
        log.error("engine %s exited; %d requests pending, waiting for its restart", what,
                  len(self.pending))
        streams = sorted(self.streams)  # all placed here wait, not only those with work out
        self.close()
        self.client.link_changed()
        self.client.notify(streams, RESTART_NOTICE,
                           f"engine {what} stopped; its work will be replayed when it "
                           "is back (results are held, nothing is lost)")
        self.connect()


def _log_send_error(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("sending to an engine failed", exc_info=fut.exception())


class ProcessEngineClient(EngineClient):
    def __init__(self, cfg: AppConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.ctx = zmq.asyncio.Context()
        self.links = [_Link(self, e.strip()) for e in cfg.engine.endpoints.split(",")
                      if e.strip()]
        self._placement: dict[str, _Link] = {}

    @property
    def info(self) -> EngineInfo:
        link = next((lk for lk in self.links if lk.info is not None), None)
        assert link is not None and link.info is not None, "start() the client first"
        return link.info

    def engines(self) -> list[tuple[EngineInfo, bool]]:
        return [(lk.info, lk.serving) for lk in self.links if lk.info is not None]

    def stream_engine(self, stream: str) -> EngineInfo:
        link = self._placement.get(stream)
        return link.info if link is not None and link.info is not None else self.info

    async def start(self, timeout_s: float = 120.0) -> None:
        for link in self.links:
            link.connect()
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(lk.ready.wait() for lk in self.links))

    async def close(self) -> None:
        for link in self.links:
            link.close()
        self.ctx.term()

    def _place(self, stream: str) -> _Link:
        link = self._placement.get(stream)
        if link is None:
            serving = [lk for lk in self.links if lk.serving] or self.links
            link = min(serving, key=lambda lk: len(lk.streams))
            link.streams.add(stream)
            self._placement[stream] = link
        return link

    def _send(self, req: Request) -> None:
        self._place(req.stream).submit(req)

    def _cancel(self, stream: str) -> None:
        link = self._placement.pop(stream, None)
        if link is not None:
            link.cancel(stream)

    def link_changed(self) -> None:
        down = [lk.endpoint for lk in self.links if not lk.serving]
        self._set_health(not down, f"engine(s) down: {', '.join(down)}" if down else "")

    @property
    def restarts(self) -> int:
        return sum(lk.restarts for lk in self.links)

    @property
    def replayed(self) -> int:
        """Requests replayed to restarted engines, all links."""
        return sum(lk.replayed for lk in self.links)

    @property
    def backlog(self) -> int:
        """Requests waiting here for an engine's credits (or for it to come back)."""
        return sum(len(lk.backlog) for lk in self.links)

