"""``seamcut serve --workers N``: N server processes sharing one port.

One Python process runs one event loop, and per-message gRPC work holds that loop
(docs/PERFORMANCE.md), so a server scales across cores by processes. Every worker
is a complete ``seamcut serve`` (its own engine, models, admission and drain) that
binds the same address with SO_REUSEPORT; the kernel spreads new connections over
the workers and a connection, with all its streams, stays on the worker that took it.

The supervisor only starts, watches and stops them:

* port 0 is resolved once, so all workers share the port it picked;
* SIGTERM/SIGINT is forwarded; each worker drains (``server.grace_s``) and exits;
  the supervisor exits when all have, non-zero if any failed;
* a worker that dies on its own is restarted after a pause, unless workers keep
  dying within ``_CRASH_WINDOW_S`` of starting (then the supervisor gives up: a bad
  config or environment would otherwise loop forever).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from seamcut.server.config import AppConfig

log = logging.getLogger(__name__)
_CRASH_WINDOW_S = 10.0  # a worker that dies sooner than this after starting "crashed early"
_MAX_EARLY_CRASHES = 3
_RESTART_DELAY_S = 1.0
_POLL_S = 0.2


def _reserve_port(host: str) -> socket.socket:
    """Bind host:0 with SO_REUSEPORT to pick the workers' shared port. The socket is
    kept open (never listening, so it gets no connections) while they start, so no
    other program takes the port in between."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


class Supervisor:
    def __init__(self, cfg: AppConfig, serve_argv: Sequence[str]) -> None:
        """``serve_argv``: the ``seamcut serve`` arguments the workers get, as given."""
        self.cfg = cfg
        self.serve_argv = list(serve_argv)
        self.port = cfg.server.port
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * cfg.server.workers
        self.started: list[float] = [0.0] * cfg.server.workers
        self.stopping = False
        self.early_crashes = 0

    def _spawn(self, i: int) -> None:
        env = {**os.environ, "SEAMCUT_SERVER_REUSE_PORT": "true",
               "SEAMCUT_SERVER_WORKERS": "1"}
        argv = [sys.executable, "-m", "seamcut.cli", "serve", *self.serve_argv,
                "--port", str(self.port), "--workers", "1"]
        self.procs[i] = subprocess.Popen(argv, env=env)
        self.started[i] = time.monotonic()
        log.info("worker %d started (pid %d)", i, self.procs[i].pid)  # type: ignore[union-attr]

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            print(f"seamcut: {signal.Signals(signum).name}: stopping "
                  f"{len(self.procs)} workers", flush=True)
        self.stopping = True
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def run(self) -> int:
        reserved = _reserve_port(self.cfg.server.host) if self.port == 0 else None
        if reserved is not None:
            self.port = reserved.getsockname()[1]
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        print(f"seamcut: starting {len(self.procs)} workers on "
              f"{self.cfg.server.host}:{self.port}", flush=True)
        try:
            for i in range(len(self.procs)):
                self._spawn(i)
            return self._watch()
        finally:
            if reserved is not None:
                reserved.close()

    def _watch(self) -> int:
        failed = False
        while True:
            alive = 0
            for i, p in enumerate(self.procs):
                if p is None:
                    continue
                rc = p.poll()
                if rc is None:
                    alive += 1
                    continue
                self.procs[i] = None
                if self.stopping:
                    # -SIGTERM: our signal came before the worker's Python had installed
                    # its handlers (still importing), when it serves nothing yet.
                    failed |= rc not in (0, -signal.SIGTERM)
                    continue
                early = time.monotonic() - self.started[i] < _CRASH_WINDOW_S
                # Consecutive early deaths only: one that had run for a while resets it.
                self.early_crashes = self.early_crashes + 1 if early else 0
                print(f"seamcut: worker {i} (pid {p.pid}) exited with {rc}", flush=True)
                if self.early_crashes >= _MAX_EARLY_CRASHES:
                    print("seamcut: workers keep failing at start-up; stopping",
                          file=sys.stderr, flush=True)
                    self._on_signal(signal.SIGTERM, None)
                    failed = True
                    continue
                time.sleep(_RESTART_DELAY_S)
                if not self.stopping:
                    self._spawn(i)
                    alive += 1
            if alive == 0 and (self.stopping or all(p is None for p in self.procs)):
                return 1 if failed else 0
            time.sleep(_POLL_S)
