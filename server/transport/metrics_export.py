"""The Prometheus endpoint: one process, or the whole server across worker processes.

* One process (``seamcut serve``, one worker): prometheus_client's HTTP server on
  ``server.metrics_port`` exposes the worker's registry.
* ``--workers N`` / engine processes: the supervisor owns the port. Each worker
  answers on a Unix socket in the supervisor's run directory with its pid and its
  exposition text; on every scrape the supervisor reads all workers, adds their
  samples up (same name and labels: counters, histogram buckets and gauges alike, as
  every gauge here is a per-worker share of a server-wide total) and adds its own
  (engine and worker restarts). Why pull-on-scrape and not pushes or shared files:
  docs/DESIGN.md, "Telemetry".

A restarted worker starts its counters from zero. So that the server's totals never
go down, the supervisor keeps the last counters and histograms it read from every
(worker, pid) that is gone and goes on adding them; increments made after a dead
worker's last scrape are lost (Prometheus reads the small drop, if any, as a reset).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import BaseServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)
_READ_TIMEOUT_S = 5.0
_CUMULATIVE = ("counter", "histogram")  # what a gone worker's snapshot keeps


def serve_http(registry: CollectorRegistry, host: str, port: int) -> BaseServer:
    """Serve ``registry`` at http://host:port/metrics on a daemon thread."""
    try:
        server, _thread = start_http_server(port, addr=host or "0.0.0.0", registry=registry)
    except OSError as exc:
        raise OSError(f"could not bind the metrics port {host}:{port}: {exc}") from exc
    return server


async def serve_unix(registry: CollectorRegistry, path: str) -> asyncio.Server:
    """Answer every connection on ``path`` with ``<pid>\\n`` and ``registry``'s text."""
    pid = f"{os.getpid()}\n".encode()

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            # Collecting runs the observable callbacks: off the loop, like a scrape
            # of the single-process endpoint.
            w.write(pid + await asyncio.to_thread(generate_latest, registry))
            await w.drain()
        except (ConnectionError, OSError) as exc:
            log.warning("metrics socket: %s", exc)
        finally:
            w.close()

    Path(path).unlink(missing_ok=True)
    return await asyncio.start_unix_server(answer, path)


@dataclass
class _Family:
    type: str
    doc: str
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)


_Snapshot = dict[str, _Family]


def parse(text: str) -> _Snapshot:
    """Exposition text -> family name -> (type, help, (sample, labels) -> value)."""
    out: _Snapshot = {}
    for fam in text_string_to_metric_families(text):
        f = out.setdefault(fam.name, _Family(fam.type, fam.documentation))
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue  # a creation time: adding those up means nothing
            key = (s.name, tuple(sorted(s.labels.items())))
            f.values[key] = f.values.get(key, 0.0) + s.value
    return out


def merge(snapshots: Sequence[_Snapshot]) -> _Snapshot:
    """Add the snapshots up, sample by sample."""
    out: _Snapshot = {}
    for snap in snapshots:
        for name, fam in snap.items():
            f = out.setdefault(name, _Family(fam.type, fam.doc))
            for key, v in fam.values.items():
                f.values[key] = f.values.get(key, 0.0) + v
    return out


def _cumulative(snap: _Snapshot) -> _Snapshot:
    return {n: f for n, f in snap.items() if f.type in _CUMULATIVE}


class WorkerAggregator:
    """prometheus_client collector: the workers' metrics plus ``own`` (the supervisor's),
    read afresh on every scrape."""

    def __init__(self, sockets: Sequence[str], own: CollectorRegistry) -> None:
        self.sockets = list(sockets)
        self.own = own
        self._lock = threading.Lock()  # scrapes may come in on several threads
        self._live: dict[int, tuple[int, _Snapshot]] = {}  # worker -> (pid, last read)
        self._gone: dict[tuple[int, int], _Snapshot] = {}  # (worker, pid) -> counters
        self.failed_reads = 0

    def describe(self) -> list[Metric]:
        return []  # registering must not scrape the workers

    def _read(self, path: str) -> tuple[int, str]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(_READ_TIMEOUT_S)
            s.connect(path)
            chunks = []
            while chunk := s.recv(1 << 16):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\n")
        return int(head), body.decode()

    def snapshot(self) -> _Snapshot:
        """Every worker's current metrics, the gone ones' counters and the own ones."""
        with self._lock:
            for index, path in enumerate(self.sockets):
                try:
                    pid, text = self._read(path)
                    snap = parse(text)
                except (OSError, ValueError) as exc:
                    # Down or restarting: keep what it had counted.
                    self.failed_reads += 1
                    log.debug("metrics of worker %d unreadable: %s", index, exc)
                    last = self._live.pop(index, None)
                    if last is not None:
                        self._gone[(index, last[0])] = _cumulative(last[1])
                    continue
                last = self._live.get(index)
                if last is not None and last[0] != pid:
                    self._gone[(index, last[0])] = _cumulative(last[1])
                # Read again after a failed read: it was only slow, not gone.
                self._gone.pop((index, pid), None)
                self._live[index] = (pid, snap)
            parts = [s for _, s in self._live.values()]
            parts += self._gone.values()
        parts.append(parse(generate_latest(self.own).decode()))
        return merge(parts)

    def collect(self) -> Iterator[Metric]:
        for name, fam in sorted(self.snapshot().items()):
            m = Metric(name, fam.doc, fam.type)
            # In the order first read (buckets stay in ascending le within a series).
            for (sample, labels), v in fam.values.items():
                m.add_sample(sample, dict(labels), v)
            yield m


def serve_aggregated(sockets: Sequence[str], own: CollectorRegistry, host: str,
                     port: int) -> tuple[BaseServer, WorkerAggregator]:
    """The supervisor's endpoint over all workers."""
    agg = WorkerAggregator(sockets, own)
    registry = CollectorRegistry()
    registry.register(agg)
    return serve_http(registry, host, port), agg


class SupervisorMetrics:
    """The supervisor's endpoint: the workers' metrics plus the restarts only the
    supervisor sees (every worker would count an engine's death once each)."""

    def __init__(self, sockets: Sequence[str], host: str, port: int) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider

        self.registry = CollectorRegistry()
        self._provider = MeterProvider(metric_readers=[PrometheusMetricReader(
            registry=self.registry, disable_target_info=True, scope_info_enabled=False)])
        meter = self._provider.get_meter("seamcut.server.supervisor")
        self._engine_restarts = meter.create_counter(
            "seamcut.engine.restarts", unit="{process}",
            description="engine processes restarted after they died, by engine id")
        self._worker_restarts = meter.create_counter(
            "seamcut.worker.restarts", unit="{process}",
            description="transport worker processes restarted after they died")
        self.http, self.aggregator = serve_aggregated(sockets, self.registry, host, port)

    def restarted(self, kind: str, index: int) -> None:
        if kind == "engine":
            self._engine_restarts.add(1, {"engine_id": f"engine-{index}"})
        else:
            self._worker_restarts.add(1)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self._provider.shutdown()
