"""CPU and memory of the client and server processes over time, and the machine.

CPU is in percent of one core (200 % = two cores busy), averaged over the interval
since the previous sample; RSS in MiB, summed over the processes of a group. A process
that has gone away is left out. Imports psutil.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil

MIN_INTERVAL_S = 0.2  # shorter CPU intervals are dominated by the clock-tick resolution

@dataclass(frozen=True, kw_only=True, slots=True)
class ResourcePoint:
    """One sample of a process group: ``t`` relative to t0 (s)."""

    t: float
    cpu_percent: float
    rss_mib: float


class ProcessGroup:
    """Samples the summed CPU and RSS of a set of pids (e.g. the bench's processes).

    CPU is computed from each process's user + system CPU seconds between two samples
    over the monotonic time between them (not psutil's ``cpu_percent``, whose first
    interval can be a fraction of a millisecond and read as thousands of percent).
    """

    def __init__(self, pids: list[int], *, children: bool = False) -> None:
        """``children``: include each pid's descendants at start (the workers of
        ``seamcut serve --workers N`` when given the supervisor's pid)."""
        self.procs: list[psutil.Process] = []
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                self.procs.append(proc)
                if children:
                    self.procs += proc.children(recursive=True)
            except psutil.Error:
                continue
        self.points: list[ResourcePoint] = []
        self._last: tuple[float, float] | None = self._cpu_seconds()

    def _cpu_seconds(self) -> tuple[float, float] | None:
        total, alive = 0.0, 0
        for p in self.procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
                alive += 1
            except psutil.Error:
                continue
        return (time.monotonic(), total) if alive else None

    def sample(self, t: float) -> ResourcePoint | None:
        """Record (and return) one sample; None when no process is left or when less
        than MIN_INTERVAL_S passed since the previous one."""
        now = self._cpu_seconds()
        rss = self.rss_mib()
        if now is None or rss is None:
            return None
        last = self._last
        if last is not None and now[0] - last[0] < MIN_INTERVAL_S:
            return None
        # A process that exited between samples takes its CPU seconds with it: clamp.
        cpu = 0.0 if last is None else max(0.0, (now[1] - last[1]) / (now[0] - last[0]) * 100)
        self._last = now
        point = ResourcePoint(t=round(t, 3), cpu_percent=round(cpu, 1), rss_mib=round(rss, 2))
        self.points.append(point)
        return point

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the group's live processes have used so far."""
        now = self._cpu_seconds()
        return now[1] if now is not None else 0.0

    def rss_mib(self) -> float | None:
        """The current summed RSS in MiB (no sample is recorded)."""
        total, alive = 0.0, 0
        for p in self.procs:
            try:
                total += p.memory_info().rss / 2**20
                alive += 1
            except psutil.Error:
                continue
        return total if alive else None


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: fall through to the portable (often empty) answer
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """The machine as the JSON report records it."""
    import grpc
    import numpy

    mem = psutil.virtual_memory()
    return {
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_model": cpu_model(),
        "ram_bytes": int(mem.total),
        "ram_gib": round(mem.total / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "grpcio": grpc.__version__,
        "numpy": numpy.__version__,
    }


def software_info() -> dict[str, Any]:
    """seamcut's version and, from a git checkout, the commit and whether tracked files
    differ from it (figures belong to the code that produced them)."""
    from importlib import metadata

    try:
        version = metadata.version("seamcut")
    except metadata.PackageNotFoundError:
        version = None
    here = os.path.dirname(os.path.abspath(__file__))
    commit = dirty = None
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip() or None
        status = subprocess.run(["git", "-C", here, "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=5, check=True).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout (an installed wheel): version only
    return {"seamcut": version, "git_commit": commit, "git_dirty": dirty}


def now_iso() -> str:
    """The current local date and time, ISO 8601 with the UTC offset."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
