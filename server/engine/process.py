"""``seamcut engine``: one engine process (internal; started by ``seamcut serve``).

vLLM's split: :class:`~.core.EngineCore` is the model step, :class:`~.pipeline.Pipeline`
its stage threads, and this module the IPC shell around them. One thread (the main
one) owns the ZeroMQ ROUTER socket and blocks in ``poll`` on it and on an eventfd
that the stage threads write when results are ready: nothing spins.

Flow control is by credits, never by ZeroMQ's queues: each worker is granted
``engine.max_inflight_blocks // workers`` cost units in READY and may not have more
in flight; the socket is ROUTER_MANDATORY with unlimited high-water marks, so a
message is never dropped silently. Models load and warm up before the socket is
bound, so a worker's HELLO is answered only by an engine that is ready.

Exit codes: 0 after SIGTERM/SIGINT, 3 when the models cannot load (the reason is
printed), 4 when a stage thread died (the supervisor restarts the engine and the
workers replay what it held).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import zmq
from seamcut.server.config import AppConfig
from seamcut.server.engine import wire
from seamcut.server.engine.protocol import Request, Result
from seamcut.server.errors import SeamcutError

log = logging.getLogger(__name__)
EXIT_LOAD_FAILED = 3
EXIT_STAGE_DIED = 4


class EngineProcess:
    def __init__(self, cfg: AppConfig, endpoint: str, engine_id: str, workers: int,
                 status: Callable[[str], None]) -> None:
        from seamcut.server.engine.core import EngineCore
        from seamcut.server.engine.pipeline import Pipeline

        self.endpoint = endpoint
        self.core = EngineCore(cfg, engine_id=engine_id)
        self.core.warm_up()
        self.credits = max(1, cfg.engine.max_inflight_blocks // max(1, workers))
        self._results: collections.deque[Result] = collections.deque()
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._owner: dict[str, tuple[bytes, int]] = {}  # stream -> (worker identity, epoch)
        self._outstanding: dict[str, int] = {}
        self._dead = ""
        self._stop = False
        self._status = status
        self.pipeline = Pipeline(self.core, self._emit, on_death=self._stage_died)

    # ------------------------------------------------------------ stage threads
    def _emit(self, res: Result) -> None:
        self._results.append(res)
        os.eventfd_write(self._wake, 1)

    def _stage_died(self, why: str) -> None:
        self._dead = why
        os.eventfd_write(self._wake, 1)

    # ------------------------------------------------------------ the IO thread
    def serve(self) -> int:
        ctx = zmq.Context(1)
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, 0)  # credits bound what is queued, not HWMs
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        self.pipeline.start()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        # The supervisor owns this process: if it dies (even by SIGKILL), so do we.
        parent = os.pidfd_open(os.getppid())
        poller.register(parent, zmq.POLLIN)
        self._status(f"ready {self.core.engine_id} pid {os.getpid()} "
                     f"device {self.core.device.name} on {self.endpoint}")
        try:
            while not self._stop:
                events = dict(poller.poll())
                if parent in events:
                    log.error("the supervising process is gone; stopping")
                    return 1
                if sock in events:
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._on_message(sock, frames)
                if self._wake in events:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(self._wake)
                    self._send_results(sock)
                    if self._dead:
                        print(f"seamcut-engine: {self._dead}", file=sys.stderr, flush=True)
                        return EXIT_STAGE_DIED
            return 0
        finally:
            self.pipeline.stop()
            sock.close(0)
            ctx.term()
            os.close(self._wake)
            os.close(parent)

    def _on_message(self, sock: zmq.Socket[Any], frames: list[zmq.Frame]) -> None:
        identity, kind, body = frames[0].bytes, frames[1].bytes, frames[1:]
        if kind == wire.HELLO:
            epoch = wire.unpack_header(body).get("epoch", 0)
            info = dataclasses.asdict(self.core.info(self.credits))
            sock.send_multipart([identity, wire.READY,
                                 wire.pack(wire.READY, [], epoch=epoch, info=info)[1]])
        elif kind == wire.REQUESTS:
            now = time.monotonic_ns()
            reqs, header = wire.unpack(Request, body)
            epoch = header.get("epoch", 0)
            for r in reqs:
                self._owner[r.stream] = (identity, epoch)
                self._outstanding[r.stream] = self._outstanding.get(r.stream, 0) + 1
                self.pipeline.submit(r, received_ns=now)
        elif kind == wire.CANCEL:
            for stream in wire.unpack_header(body).get("streams", []):
                self.pipeline.cancel(stream)

    def _send_results(self, sock: zmq.Socket[Any]) -> None:
        by_owner: dict[tuple[bytes, int], list[Result]] = {}
        while self._results:
            res = self._results.popleft()
            owner = self._owner.get(res.stream)
            n = self._outstanding.get(res.stream, 1) - 1
            if n <= 0:
                self._outstanding.pop(res.stream, None)
                self._owner.pop(res.stream, None)
            else:
                self._outstanding[res.stream] = n
            if owner is not None:
                by_owner.setdefault(owner, []).append(res)
        for (identity, epoch), results in by_owner.items():
            stamped = [dataclasses.replace(r, sent_ns=time.monotonic_ns()) for r in results]
            try:
                sock.send_multipart([identity, *wire.pack(wire.RESULTS, stamped, epoch=epoch)],
                                    copy=False)
            except zmq.ZMQError as exc:  # EHOSTUNREACH: that worker is gone
                log.warning("results for a worker that left were dropped: %s", exc)

    def stop(self) -> None:
        self._stop = True
        os.eventfd_write(self._wake, 1)


def _status_writer(fd: int) -> Callable[[str], None]:
    """Where the one status line goes: the supervisor's pipe (then closed), or stdout."""
    def write(line: str) -> None:
        text = f"seamcut-engine: {line}\n"
        if fd < 0:
            print(text, end="", flush=True)
            return
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return write


def run_engine(cfg: AppConfig, endpoint: str, engine_id: str, workers: int,
               status_fd: int = -1) -> int:
    """Load, warm up, serve until SIGTERM; the exit code says how it ended. The line
    "seamcut-engine: ready ..." (or "... failed ...: why") goes to ``status_fd``."""
    status = _status_writer(status_fd)
    try:
        engine = EngineProcess(cfg, endpoint, engine_id, workers, status)
    except (SeamcutError, OSError, RuntimeError, ImportError) as exc:
        why = f"failed {engine_id}: cannot load the models: {exc}"
        print(f"seamcut-engine: {why}", file=sys.stderr, flush=True)
        status(why)
        return EXIT_LOAD_FAILED

    def on_signal(signum: int, _frame: object) -> None:
        engine.stop()

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C reaches the whole process group; the workers drain first and need us
    # meanwhile, so only the supervisor's SIGTERM stops an engine.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return engine.serve()
