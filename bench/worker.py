"""Where the load generators run: in this process, or in worker processes.

``--processes 1`` runs one :class:`~seamcut.bench.load.LoadGenerator` on the parent's
event loop (:class:`LocalWorkers`). ``--processes P`` starts P worker processes
(``spawn``: grpc must not be forked) with one event loop each
(:class:`ProcessWorkers`); the parent sends them commands and they send back a
``WorkerReport`` every report interval over a pipe. Both offer the same methods, so
the runner does not know which it drives.

Imports multiprocessing and the bench's ``config``, ``load`` and ``source`` modules.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Protocol

from seamcut.bench.config import REPORT_INTERVAL_S, BenchConfig
from seamcut.bench.load import LoadGenerator, WorkerReport
from seamcut.bench.source import LoopedAudio, load_sources

START_TIMEOUT_S = 60.0
POLL_S = 0.02  # how often a worker looks for commands


@dataclass(frozen=True, kw_only=True, slots=True)
class Scale:
    total: int
    at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Stop:
    at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Hello:
    worker: int
    pid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerFailed:
    worker: int
    error: str


class WorkerError(RuntimeError):
    """A worker process failed to start or crashed; the message says which and why."""


class Workers(Protocol):
    pids: list[int]

    async def start(self) -> None: ...
    def scale(self, total: int, at: float) -> None: ...
    def stop(self, at: float) -> None: ...
    def poll(self) -> list[WorkerReport]: ...
    async def aclose(self) -> None: ...


class LocalWorkers:
    """One load generator on the caller's event loop."""

    def __init__(self, cfg: BenchConfig, sources: list[LoopedAudio]) -> None:
        self.gen = LoadGenerator(cfg, sources)
        self.pids = [os.getpid()]

    async def start(self) -> None:
        return None

    def scale(self, total: int, at: float) -> None:
        self.gen.scale(total, at)

    def stop(self, at: float) -> None:
        self.gen.stop(at)

    def poll(self) -> list[WorkerReport]:
        return [self.gen.report()]

    async def aclose(self) -> None:
        await self.gen.aclose()


class ProcessWorkers:
    """``cfg.processes`` worker processes, each running its share of the streams."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.pids: list[int] = []
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._conns: list[Connection] = []
        self._reports: list[WorkerReport] = []
        self._hello: dict[int, int] = {}
        self._failure: str | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for w in range(self.cfg.processes):
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=worker_main, args=(child, self.cfg, w),
                                     name=f"seamcut-bench-worker-{w}", daemon=True)
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
            # Read as soon as data arrives: a worker blocked on a full pipe would stall
            # every stream it runs.
            loop.add_reader(parent.fileno(), self._on_readable, parent)
        deadline = loop.time() + START_TIMEOUT_S
        while len(self._hello) < len(self._procs):
            self._raise_failure()
            if loop.time() > deadline:
                raise WorkerError(f"only {len(self._hello)} of {len(self._procs)} worker "
                                  f"processes started within {START_TIMEOUT_S} s")
            await asyncio.sleep(0.02)
        self.pids = [self._hello[w] for w in sorted(self._hello)]

    def _on_readable(self, conn: Connection) -> None:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            return
        if isinstance(msg, WorkerReport):
            self._reports.append(msg)
        elif isinstance(msg, Hello):
            self._hello[msg.worker] = msg.pid
        elif isinstance(msg, WorkerFailed):
            self._failure = f"worker {msg.worker} failed: {msg.error}"

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise WorkerError(self._failure)
        for w, proc in enumerate(self._procs):
            if proc.exitcode not in (None, 0):
                raise WorkerError(f"worker {w} exited with code {proc.exitcode}")

    def _send(self, msg: Scale | Stop) -> None:
        for conn in self._conns:
            conn.send(msg)

    def scale(self, total: int, at: float) -> None:
        self._send(Scale(total=total, at=at))

    def stop(self, at: float) -> None:
        self._send(Stop(at=at))

    def poll(self) -> list[WorkerReport]:
        self._raise_failure()
        out, self._reports = self._reports, []
        return out

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        for conn in self._conns:
            loop.remove_reader(conn.fileno())
        for proc in self._procs:
            await asyncio.to_thread(proc.join, 10)
            if proc.is_alive():
                proc.terminate()  # our own child, by its handle
                await asyncio.to_thread(proc.join, 5)
        for conn in self._conns:
            conn.close()


def worker_main(conn: Connection, cfg: BenchConfig, worker: int) -> None:
    """Entry point of a worker process."""
    try:
        asyncio.run(_worker(conn, cfg, worker))
    except BaseException as exc:
        conn.send(WorkerFailed(worker=worker, error=repr(exc)))
        raise
    finally:
        conn.close()


async def _worker(conn: Connection, cfg: BenchConfig, worker: int) -> None:
    sources = load_sources(cfg.files, cfg.chunk_ms, cfg.mode)
    gen = LoadGenerator(cfg, sources, worker=worker)
    loop = asyncio.get_running_loop()
    conn.send(Hello(worker=worker, pid=os.getpid()))
    next_report = loop.time() + REPORT_INTERVAL_S
    try:
        while True:
            while conn.poll():
                cmd = conn.recv()
                if isinstance(cmd, Scale):
                    gen.scale(cmd.total, cmd.at)
                elif isinstance(cmd, Stop):
                    gen.stop(cmd.at)
            if loop.time() >= next_report:
                next_report += REPORT_INTERVAL_S
                rep = gen.report()
                # Pickling and writing off the loop: the streams keep their schedule.
                await asyncio.to_thread(conn.send, rep)
                if rep.done:
                    return
            await asyncio.sleep(POLL_S)
    finally:
        await gen.aclose()
