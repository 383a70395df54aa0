"""Memory stays flat under churn (slow: `make soak`).

Workers keep ~70 % of the server's stream capacity busy for a long time with a mix of
real-time streams that finish, streams the client cancels, streams that fail (seq gap,
NaN), and client processes killed with SIGKILL. The server runs in its own process
(a real grpc.aio server, as `seamcut serve` builds it); its RSS is sampled after
glibc's malloc_trim (see :func:`_malloc_trim`), and after a warm-up it may not grow by
more than 5 %. A control run injects a leak into its server process (every released
session kept in a module-level list: a forgotten reference) and must fail the same
check, so the check is known to catch a leak.

Durations: SOAK_S (default 600) and SOAK_CONTROL_S (default 180).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import grpc
import numpy as np
import psutil
import pytest
from seamcut.client import AsyncClient, SeamcutStreamError, StreamOptions
from seamcut.client.stream import CutEvent, SummaryEvent
from seamcut.server.config import Encoding, load_config
from seamcut.server.transport import servicer as servicer_module

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.corpus import default_corpus
from tests.helpers import ServerThread, config_msg, encode

pytestmark = [pytest.mark.slow, pytest.mark.integration]
CAPACITY = 64  # server.max_streams of the soak server
WORKERS = round(CAPACITY * 0.7)
MAX_GROWTH = 0.05
SOAK_S = float(os.environ.get("SOAK_S", "600"))
CONTROL_S = float(os.environ.get("SOAK_CONTROL_S", "180"))
PCM = encode(default_corpus()[0].audio, Encoding.PCM_S16LE)  # 12 s, 16 kHz mono
CHUNK = 3200  # 100 ms
KILLED_CLIENT = """
import sys, time, grpc
from seamcut.v1 import seamcut_pb2 as pb, seamcut_pb2_grpc as pb_grpc
def requests():
    yield pb.ClientMessage(config=pb.StreamConfig(format=pb.AudioFormat(
        encoding=pb.PCM_S16LE, sample_rate_hz=16000, channels=1)))
    for seq in range(10**6):
        yield pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=bytes(3200)))
        time.sleep(0.1)
with grpc.insecure_channel(sys.argv[1]) as ch:
    for _ in pb_grpc.SeamcutStub(ch).StreamCuts(requests()):
        pass
"""


@dataclass
class SoakReport:
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, RSS bytes)
    outcomes: Counter[str] = field(default_factory=Counter)
    warmup_s: float = 0.0

    def growth(self) -> tuple[float, int, int]:
        """(relative growth, baseline RSS, final RSS): medians of the first and last five
        samples after the warm-up."""
        after = [rss for t, rss in self.samples if t >= self.warmup_s]
        assert len(after) >= 10, f"too few samples after warm-up: {len(after)}"
        base, final = statistics.median(after[:5]), statistics.median(after[-5:])
        return final / base - 1, int(base), int(final)


async def finishing(client: AsyncClient, rng: np.random.Generator) -> str:
    start = int(rng.integers(0, len(PCM) // 2)) // 2 * 2
    data = PCM[start:start + int(rng.integers(2, 6)) * 32000]
    async with client.stream(StreamOptions(sample_rate_hz=16000)) as s:
        for i in range(0, len(data), CHUNK):
            await s.send(data[i:i + CHUNK])
            await asyncio.sleep(0.1)
        await s.close_send()
        events = [ev async for ev in s]
    assert isinstance(events[-1], SummaryEvent) and any(isinstance(e, CutEvent) for e in events)
    return "finished"


async def cancelled(client: AsyncClient, rng: np.random.Generator) -> str:
    async with client.stream(StreamOptions(sample_rate_hz=16000)) as s:
        t_end = time.monotonic() + float(rng.uniform(0.1, 3.0))
        pos = 0
        while time.monotonic() < t_end:
            await s.send(PCM[pos:pos + CHUNK])
            pos = (pos + CHUNK) % (len(PCM) - CHUNK)
            await asyncio.sleep(0.1)
    return "cancelled"  # leaving the block cancels the call


async def failing(ch: grpc.aio.Channel, rng: np.random.Generator) -> str:
    bad = (pb.ClientMessage(audio=pb.AudioChunk(seq=5, data=b"")) if rng.random() < 0.5
           else pb.ClientMessage(audio=pb.AudioChunk(
               seq=1, data=np.array([np.nan], "<f4").tobytes())))

    async def requests() -> Any:
        yield config_msg(encoding=pb.F32LE)
        yield pb.ClientMessage(audio=pb.AudioChunk(seq=0, data=bytes(2 * CHUNK)))
        await asyncio.sleep(0.2)
        yield bad

    call = pb_grpc.SeamcutStub(ch).StreamCuts(requests())
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as exc:
        return f"failed {exc.code().name}"
    return "failed OK?"


async def killed(target: str, rng: np.random.Generator) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_CLIENT, target,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(float(rng.uniform(1.0, 3.0)))
    proc.kill()
    await proc.wait()
    return "killed"


async def churn(target: str, duration_s: float, rss: Callable[[], int],
                report: SoakReport) -> None:
    """WORKERS loops of random stream lives for ``duration_s``; RSS sampled 100 times
    (at most every 5 s)."""
    sample_s = min(5.0, max(0.5, duration_s / 100))
    t0 = time.monotonic()
    end = t0 + duration_s

    async def worker(k: int, client: AsyncClient, ch: grpc.aio.Channel) -> None:
        rng = np.random.default_rng(k)
        await asyncio.sleep(k * 0.05)
        while time.monotonic() < end:
            r = rng.random()
            try:
                if r < 0.6:
                    what = await finishing(client, rng)
                elif r < 0.88:
                    what = await cancelled(client, rng)
                elif r < 0.98:
                    what = await failing(ch, rng)
                else:
                    what = await killed(target, rng)
            except SeamcutStreamError as exc:
                what = f"error {exc.code.name}"
            report.outcomes[what] += 1

    async def sampler() -> None:
        while time.monotonic() < end:
            report.samples.append((time.monotonic() - t0, rss()))
            await asyncio.sleep(sample_s)

    async with AsyncClient(target) as client, grpc.aio.insecure_channel(target) as ch:
        await asyncio.gather(sampler(), *(worker(k, client, ch) for k in range(WORKERS)))


def soak(target: str, duration_s: float, rss: Callable[[], int]) -> SoakReport:
    report = SoakReport(warmup_s=min(120.0, duration_s * 0.3))
    asyncio.run(churn(target, duration_s, rss, report))
    growth, base, final = report.growth()
    print(f"\nsoak {duration_s:.0f} s, {WORKERS} workers on {CAPACITY} slots: "
          f"{dict(report.outcomes)}; RSS {base / 2**20:.1f} -> {final / 2**20:.1f} MiB "
          f"({growth * 100:+.2f} %) after {report.warmup_s:.0f} s warm-up; "
          f"max {max(r for _, r in report.samples) / 2**20:.1f} MiB")
    return report


# ---------------------------------------------------------------- the server process


def _server_main(conn: Connection, leak: bool) -> None:
    """Child process: a real grpc.aio server (optionally leaking every released session)
    that answers "rss" with its heap-trimmed and untrimmed RSS, and stops on "stop"."""
    if leak:
        release = servicer_module.SeamcutServicer._release

        def leaking_release(self: Any, st: Any) -> None:
            if not st.released and st.session is not None:
                LEAKED.append(st.session)
            release(self, st)

        servicer_module.SeamcutServicer._release = leaking_release  # type: ignore[method-assign]
    srv = ServerThread(load_config(env={}, overrides={"server": {
        "host": "127.0.0.1", "port": 0, "max_streams": CAPACITY}}))
    me = psutil.Process()
    trim = _malloc_trim()
    conn.send(srv.target)
    while conn.recv() != "stop":
        raw = me.memory_info().rss
        gc.collect()
        trim()
        conn.send((me.memory_info().rss, raw, len(LEAKED)))
    srv.stop()
    conn.send("stopped")


def _malloc_trim() -> Callable[[], object]:
    """glibc's malloc_trim(0): hand freed heap pages back to the OS. It cannot release
    memory that is still allocated, so a leak stays visible while allocator retention
    (freed memory glibc keeps, which grows and shrinks with churn) does not count."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return lambda: 0


@contextmanager
def server_process(*, leak: bool) -> Iterator[tuple[str, Callable[[], int], psutil.Process,
                                                    list[int]]]:
    """(target, trimmed-RSS sampler, the process, untrimmed RSS samples)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_server_main, args=(child, leak), daemon=True)
    proc.start()
    raw: list[int] = []
    leaked = [0]

    def rss() -> int:
        parent.send("rss")
        trimmed, untrimmed, leaked[0] = parent.recv()
        raw.append(untrimmed)
        return int(trimmed)

    try:
        assert parent.poll(120), "the server process did not start"
        yield parent.recv(), rss, psutil.Process(proc.pid), raw
    finally:
        parent.send("stop")
        assert parent.poll(60) and parent.recv() == "stopped"
        proc.join(30)
        if leak:
            print(f"control: {leaked[0]} sessions leaked")


def run_soak(duration_s: float, *, leak: bool) -> tuple[SoakReport, float]:
    with server_process(leak=leak) as (target, rss, proc, raw):
        proc.cpu_percent()
        report = soak(target, duration_s, rss)
        cores = proc.cpu_percent() / 100
    after = [r for (t, _), r in zip(report.samples, raw, strict=True) if t >= report.warmup_s]
    first, last = statistics.median(after[:5]) / 2**20, statistics.median(after[-5:]) / 2**20
    print(f"server CPU {cores:.2f} cores; untrimmed RSS after warm-up {first:.1f} -> "
          f"{last:.1f} MiB (max {max(raw) / 2**20:.1f})")
    assert not [k for k in report.outcomes if "INTERNAL" in k or "UNKNOWN" in k], report.outcomes
    assert report.outcomes["finished"] > 0 and report.outcomes["killed"] > 0
    return report, report.growth()[0]


LEAKED: list[Any] = []  # the control's leak (in its server process): released sessions


@pytest.mark.timeout(SOAK_S + 300)
def test_soak_memory_stays_flat() -> None:
    _, growth = run_soak(SOAK_S, leak=False)
    assert growth <= MAX_GROWTH, f"RSS grew {growth * 100:.2f} % after warm-up"


@pytest.mark.timeout(CONTROL_S + 300)
def test_soak_check_catches_a_leaking_server() -> None:
    _, growth = run_soak(CONTROL_S, leak=True)
    assert growth > MAX_GROWTH, f"the leaking control grew only {growth * 100:.2f} %"
