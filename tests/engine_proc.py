"""A real ``seamcut engine`` process for tests, and an in-thread worker that uses it.

The test plays the supervisor: it starts the engine, can SIGKILL it and start a new
one on the same endpoint, while the worker (a :class:`~tests.helpers.ServerThread`
with ``engine.endpoints`` set) exposes its counters to the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from seamcut.server.config import load_config

from tests.helpers import ServerThread


class EngineProc:
    def __init__(self, endpoint: str, env: dict[str, str] | None = None) -> None:
        self.endpoint = endpoint
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        argv = [sys.executable, "-m", "seamcut.cli", "engine", "--endpoint", self.endpoint,
                "--log-level", "WARNING"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=self.env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        self.proc.stdout.close()
        assert "ready" in line, line

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


@contextmanager
def engine_server(env: dict[str, str] | None = None,
                  **server: Any) -> Iterator[tuple[ServerThread, EngineProc]]:
    """A worker on a thread of this process and one engine process behind it."""
    with tempfile.TemporaryDirectory(prefix="seamcut-test-") as d:
        endpoint = f"ipc://{Path(d) / 'engine-0.sock'}"
        engine = EngineProc(endpoint, env)
        cfg = load_config(env={}, overrides={
            "server": {"host": "127.0.0.1", "port": 0, **server},
            "engine": {"endpoints": endpoint}})
        srv = ServerThread(cfg)
        try:
            yield srv, engine
        finally:
            srv.stop()
            engine.stop()
