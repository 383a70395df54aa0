"""``--idle``: server memory per open stream that sends nothing but its config.

Needs the server's pid (``--server-pid``, or ``--server spawn``). Steps: read the
server's RSS (median of 5 samples, 0.1 s apart) → open ``--streams`` streams, each
sending only its StreamConfig, and wait for every Ready → wait 2 s → read the RSS again
→ cancel the streams → wait 2 s → read it a third time. Per idle stream =
(open − before) / streams. The last reading shows how much is given back.

Imports the SDK, psutil (via ``sysmon``) and the bench's ``load`` and ``source``.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from typing import Any

from seamcut.bench.config import BenchConfig
from seamcut.bench.load import make_client
from seamcut.bench.source import LoopedAudio
from seamcut.bench.sysmon import ProcessGroup
from seamcut.client import SeamcutRpcError, StreamOptions

SETTLE_S = 2.0
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class IdleResult:
    """Server RSS (MiB) before, with ``streams`` idle streams open, and after closing."""

    streams: int
    opened: int
    rss_before_mib: float
    rss_open_mib: float
    rss_after_close_mib: float
    errors_by_code: dict[str, int]
    lookahead_ms: int | None = None

    @property
    def kib_per_stream(self) -> float:
        return (self.rss_open_mib - self.rss_before_mib) * 1024 / max(self.opened, 1)

    def to_json(self) -> dict[str, Any]:
        return {"streams": self.streams, "opened": self.opened,
                "server_rss_before_mib": round(self.rss_before_mib, 2),
                "server_rss_open_mib": round(self.rss_open_mib, 2),
                "server_rss_after_close_mib": round(self.rss_after_close_mib, 2),
                "server_rss_per_idle_stream_kib": round(self.kib_per_stream, 1),
                "errors_by_code": self.errors_by_code}


async def _rss(group: ProcessGroup) -> float:
    values = []
    for _ in range(5):
        v = group.rss_mib()
        if v is None:
            raise RuntimeError("the server process is gone")
        values.append(v)
        await asyncio.sleep(0.1)
    return statistics.median(values)


async def measure_idle(cfg: BenchConfig, sources: list[LoopedAudio],
                       server: ProcessGroup) -> IdleResult:
    """Open ``cfg.streams`` config-only streams and compare the server's RSS."""
    before = await _rss(server)
    per = cfg.transport.streams_per_connection
    clients = [make_client(cfg.transport) for _ in range(-(-cfg.streams // per))]
    release = asyncio.Event()
    ready = 0
    errors: dict[str, int] = {}
    all_ready = asyncio.Event()
    lookahead = [0]

    async def hold(i: int) -> None:
        nonlocal ready
        src = sources[i % len(sources)]
        opts = StreamOptions(sample_rate_hz=src.sample_rate_hz, channels=src.channels,
                             encoding=src.encoding, mode=cfg.mode,
                             request_id=f"seamcut-bench-idle-{i}")
        try:
            async with clients[i // per].stream(opts) as s:
                r = await s.wait_ready()
                lookahead[0] = max(lookahead[0], r.lookahead_ms)
                ready += 1
                if ready == cfg.streams:
                    all_ready.set()
                await release.wait()
        except SeamcutRpcError as exc:
            errors[exc.code.name] = errors.get(exc.code.name, 0) + 1
            if ready + sum(errors.values()) == cfg.streams:
                all_ready.set()

    tasks = [asyncio.create_task(hold(i)) for i in range(cfg.streams)]
    try:
        try:
            await asyncio.wait_for(all_ready.wait(), READY_TIMEOUT_S)
        except TimeoutError:
            errors["READY_TIMEOUT"] = cfg.streams - ready - sum(errors.values())
        await asyncio.sleep(SETTLE_S)
        opened = ready
        during = await _rss(server)
    finally:
        release.set()
        await asyncio.wait(tasks)
        for c in clients:
            await c.close()
    await asyncio.sleep(SETTLE_S)
    after = await _rss(server)
    return IdleResult(streams=cfg.streams, opened=opened, rss_before_mib=before,
                      rss_open_mib=during, rss_after_close_mib=after, errors_by_code=errors,
                      lookahead_ms=lookahead[0] or None)
