"""``--server spawn``: a local ``seamcut serve`` child process whose pid the bench knows.

The server listens on 127.0.0.1 (or a given address) on a free port, logs to a
temporary file, and is stopped with SIGTERM (its graceful drain) when the bench ends.
The tests start their ``seamcut serve`` processes with it too. Imports the stdlib only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 90.0
_LISTENING = re.compile(r"listening on ([\w.\-\[\]:]+:\d+)")


class ServerStartError(RuntimeError):
    """The child server exited or did not listen in time; carries its log."""


class LocalServer:
    """A ``seamcut serve --host 127.0.0.1 --port 0`` child process.

    ``env``: variables added to this process's environment (``SEAMCUT_*`` settings).
    ``listeners``: wait until this many processes listen (``--workers N`` prints one
    line per worker). ``host``: the address to bind; ``prefix``: a command that runs
    the server, such as ``("ip", "netns", "exec", NAME)`` (it must exec the server,
    so that ``pid`` is the server's).
    """

    def __init__(self, extra_args: tuple[str, ...] = (), *,
                 env: dict[str, str] | None = None, listeners: int = 1,
                 host: str = "127.0.0.1", prefix: tuple[str, ...] = ()) -> None:
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115  # closed in stop()
            prefix="seamcut-bench-serve-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "seamcut.cli", "serve", "--host", host,
             "--port", "0", *extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **env} if env else None)
        self.pid = self.proc.pid
        self.keep_log = False  # keep the log after a clean exit too (e.g. a failed test)
        self.target = self._wait_listening(listeners)

    def _wait_listening(self, listeners: int) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        text = ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            text = self.log_path.read_text(errors="replace")
            found = _LISTENING.findall(text)
            if len(found) >= listeners:
                return str(found[0])
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(f"seamcut serve did not start (log {self.log_path}):\n{text}")

    def stop(self) -> int | None:
        """SIGTERM, wait for the drain (30 s), kill if needed; the exit code. The log is
        removed after a clean exit (unless ``keep_log``) and kept (its path is in
        errors) otherwise."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()
            if self.proc.returncode == 0 and not self.keep_log:
                self.log_path.unlink(missing_ok=True)
        return self.proc.returncode

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
