"""``seamcut serve --workers N [--engine process]``: the supervising parent.

Layout (docs/DESIGN.md): N transport worker processes (grpc.aio, sessions, decoding,
the detector) share one port through SO_REUSEPORT, and K engine processes
(``seamcut engine``: the models and the three stages) serve them over ZeroMQ
``ipc://`` sockets in a private run directory. Workers load no model. With
``--engine inline`` every worker is a complete server with its own engine instead.

The supervisor only starts, watches and stops them:

* engines first; each prints one line when it is warm (or why it could not load its
  models, and then ``serve`` exits non-zero with that reason); then the workers, with
  the engines' endpoints and one slot each in the shared stream count;
* port 0 is resolved once, so all workers share the port it picked;
* SIGTERM/SIGINT drains the workers (``server.grace_s``), then stops the engines,
  removes the run directory and exits, non-zero if anything failed;
* whatever dies on its own is restarted after a pause: an engine's work is replayed
  by the workers, a worker's streams end (UNAVAILABLE for the clients) and its slot
  of the stream count is reset. Processes that keep dying within
  ``_CRASH_WINDOW_S`` of starting stop the supervisor (a bad config or environment
  would otherwise loop forever).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from seamcut.server.config import AppConfig
from seamcut.server.transport import admission

if TYPE_CHECKING:  # OpenTelemetry is imported only when metrics are on
    from seamcut.server.transport.metrics_export import SupervisorMetrics

log = logging.getLogger(__name__)
_CRASH_WINDOW_S = 10.0  # a process that dies sooner than this after starting "crashed early"
_MAX_EARLY_CRASHES = 3
_RESTART_DELAY_S = 1.0
_POLL_S = 0.2
_ENGINE_STOP_S = 10.0


def _reserve_port(host: str) -> socket.socket:
    """Bind host:0 with SO_REUSEPORT to pick the workers' shared port. The socket is
    kept open (never listening, so it gets no connections) while they start, so no
    other program takes the port in between."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def seamcut_command() -> list[str]:
    """How to run ``seamcut``: the console script next to this Python when it exists
    (so ``ps`` shows ``seamcut engine`` / ``seamcut serve``), else ``python -m``."""
    script = Path(sys.executable).with_name("seamcut")
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "seamcut.cli"]


def visible_gpus(cfg: AppConfig, env: Mapping[str, str] | None = None,
                 dev: Sequence[str] | None = None) -> list[str]:
    """The GPUs the engines may use (CUDA_VISIBLE_DEVICES entries, else /dev/nvidiaN
    numbers); none when the engine is set to the CPU or the host has no NVIDIA device."""
    env = os.environ if env is None else env
    if cfg.engine.device == "cpu":
        return []
    if dev is None:
        if not os.path.exists("/dev/nvidiactl"):
            return []
        dev = os.listdir("/dev")
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return sorted((n.removeprefix("nvidia") for n in dev if n.removeprefix("nvidia").isdigit()),
                  key=int)


def engine_count(cfg: AppConfig) -> int:
    """Engine processes: as configured, else one per visible GPU, else 1."""
    if cfg.server.engines:
        return cfg.server.engines
    return max(1, len(visible_gpus(cfg)))


def engine_env(cfg: AppConfig, index: int, gpus: Sequence[str]) -> dict[str, str] | None:
    """The environment of engine ``index``: on a GPU host each engine sees one GPU
    (round robin when there are more engines than GPUs), so "cuda" means its own
    card; None (inherit) on a CPU host or when the config names a device itself."""
    if not gpus or cfg.engine.device.startswith("cuda:"):
        return None
    return {**os.environ, "CUDA_VISIBLE_DEVICES": gpus[index % len(gpus)]}


@dataclass
class _Child:
    kind: str  # "worker" | "engine"
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.kind} {self.index}"


class Supervisor:
    def __init__(self, cfg: AppConfig, serve_argv: Sequence[str]) -> None:
        """``serve_argv``: the ``seamcut serve`` arguments, as given."""
        self.cfg = cfg
        self.serve_argv = list(serve_argv)
        self.port = cfg.server.port
        self.workers = [_Child("worker", i) for i in range(cfg.server.workers)]
        self.gpus = visible_gpus(cfg)
        k = engine_count(cfg) if cfg.server.process_engines else 0
        self.engines = [_Child("engine", i) for i in range(k)]
        self.rundir = Path(tempfile.mkdtemp(prefix="seamcut-"))
        self.slots = self.rundir / "streams"
        self.endpoints = [f"ipc://{self.rundir}/engine-{i}.sock" for i in range(k)]
        self.stopping = False
        self.early_crashes = 0
        # Metrics: each worker answers on its socket, the supervisor serves the sum.
        self.metric_sockets = ([str(self.rundir / f"metrics-{w.index}.sock")
                                for w in self.workers] if cfg.server.metrics_port else [])
        self.metrics: SupervisorMetrics | None = None

    # ------------------------------------------------------------ starting
    def _spawn_engine(self, e: _Child, *, wait: bool) -> str:
        """Start engine ``e``; with ``wait``, block until it is warm and return ""
        (or why it failed)."""
        argv = [*seamcut_command(), "engine", *self.serve_argv,
                "--endpoint", self.endpoints[e.index], "--engine-id", f"engine-{e.index}",
                "--worker-count", str(len(self.workers))]
        env = engine_env(self.cfg, e.index, self.gpus)
        if not wait:  # a restart: its status line just goes to our stdout
            e.proc = subprocess.Popen(argv, env=env)
            e.started = time.monotonic()
            return ""
        r, w = os.pipe()
        e.proc = subprocess.Popen([*argv, "--status-fd", str(w)], pass_fds=(w,), env=env)
        e.started = time.monotonic()
        os.close(w)
        with os.fdopen(r) as status:  # one line, or EOF if it died first
            line = status.readline().strip()
        if line.startswith("seamcut-engine: ready"):
            print(line.replace("seamcut-engine:", "seamcut: engine"), flush=True)
            return ""
        e.proc.wait()
        return line.removeprefix("seamcut-engine: ") or f"exited with {e.proc.returncode}"

    def _spawn_worker(self, w: _Child) -> None:
        env = {**os.environ, "SEAMCUT_SERVER_REUSE_PORT": "true",
               "SEAMCUT_SERVER_WORKERS": "1", "SEAMCUT_SERVER_ENGINE": "inline",
               "SEAMCUT_SERVER_WORKER_INDEX": str(w.index),
               "SEAMCUT_SERVER_STREAM_SLOTS_PATH": str(self.slots),
               "SEAMCUT_ENGINE_ENDPOINTS": ",".join(self.endpoints)}
        if self.metric_sockets:
            env["SEAMCUT_SERVER_METRICS_SOCKET_PATH"] = self.metric_sockets[w.index]
        argv = [*seamcut_command(), "serve", *self.serve_argv,
                "--port", str(self.port), "--workers", "1", "--engine", "inline",
                "--metrics-port", "0"]
        w.proc = subprocess.Popen(argv, env=env)
        w.started = time.monotonic()
        log.info("worker %d started (pid %d)", w.index, w.proc.pid)

    def run(self) -> int:
        reserved = _reserve_port(self.cfg.server.host) if self.port == 0 else None
        if reserved is not None:
            self.port = reserved.getsockname()[1]
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        admission.create(self.slots, len(self.workers))
        try:
            if self.metric_sockets:
                from seamcut.server.transport.metrics_export import SupervisorMetrics

                self.metrics = SupervisorMetrics(self.metric_sockets, self.cfg.server.host,
                                                 self.cfg.server.metrics_port)
                print(f"seamcut: metrics on http://{self.cfg.server.host}:"
                      f"{self.cfg.server.metrics_port}/metrics", flush=True)
            if self.engines:
                print(f"seamcut: starting {len(self.engines)} engine process(es)", flush=True)
                for e in self.engines:
                    why = self._spawn_engine(e, wait=True)
                    if why:
                        print(f"seamcut serve: engine {e.index} could not start: {why}",
                              file=sys.stderr, flush=True)
                        self._stop_engines()
                        return 1
                    if self.stopping:
                        self._stop_engines()
                        return 0
            print(f"seamcut: starting {len(self.workers)} workers on "
                  f"{self.cfg.server.host}:{self.port}", flush=True)
            for w in self.workers:
                self._spawn_worker(w)
            return self._watch()
        finally:
            if reserved is not None:
                reserved.close()
            if self.metrics is not None:
                self.metrics.close()
            shutil.rmtree(self.rundir, ignore_errors=True)

    # ------------------------------------------------------------ watching
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            print(f"seamcut: {signal.Signals(signum).name}: stopping "
                  f"{len(self.workers)} workers", flush=True)
        self.stopping = True
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)

    def _stop_engines(self) -> bool:
        """SIGTERM the engines and wait for them; False if one had to be killed."""
        ok = True
        for e in self.engines:
            if e.proc is not None and e.proc.poll() is None:
                e.proc.send_signal(signal.SIGTERM)
        for e in self.engines:
            if e.proc is None:
                continue
            try:
                e.proc.wait(_ENGINE_STOP_S)
            except subprocess.TimeoutExpired:
                e.proc.kill()
                e.proc.wait()
                ok = False
            e.proc = None
        return ok

    def _restart(self, c: _Child, rc: int) -> bool:
        """A child died on its own: restart it (False: give up, they keep failing)."""
        early = time.monotonic() - c.started < _CRASH_WINDOW_S
        # Consecutive early deaths only: one that had run for a while resets it.
        self.early_crashes = self.early_crashes + 1 if early else 0
        pid = c.proc.pid if c.proc is not None else 0
        print(f"seamcut: {c.name} (pid {pid}) exited with {rc}", flush=True)
        c.proc = None
        if self.early_crashes >= _MAX_EARLY_CRASHES:
            print(f"seamcut: {c.kind}s keep failing at start-up; stopping",
                  file=sys.stderr, flush=True)
            self._on_signal(signal.SIGTERM, None)
            return False
        if early:  # pause before trying again; a long-lived one is replaced at once
            time.sleep(_RESTART_DELAY_S)
        if self.stopping:
            return True
        if self.metrics is not None:
            self.metrics.restarted(c.kind, c.index)
        if c.kind == "worker":
            admission.reset_row(self.slots, c.index)
            self._spawn_worker(c)
        else:
            self._spawn_engine(c, wait=False)  # the workers reconnect and replay
        return True

    def _watch(self) -> int:
        failed = False
        while True:
            alive = 0
            for c in [*self.engines, *self.workers]:
                if c.proc is None:
                    continue
                rc = c.proc.poll()
                if rc is None:
                    alive += c.kind == "worker"
                    continue
                if self.stopping:
                    if c.kind == "worker":
                        # -SIGTERM: our signal came before the worker's Python had
                        # installed its handlers (still importing): it served nothing.
                        failed |= rc not in (0, -signal.SIGTERM)
                        c.proc = None
                    continue
                if not self._restart(c, rc):
                    failed = True
                elif c.kind == "worker" and c.proc is not None:
                    alive += 1
            if alive == 0 and (self.stopping or all(w.proc is None for w in self.workers)):
                failed |= not self._stop_engines()
                return 1 if failed else 0
            time.sleep(_POLL_S)
