"""Admission control, idle and session limits, and the stalled reader.

Real grpc.aio servers on 127.0.0.1 with small limits; clients are the SDK's
AsyncClient (which reports the server's status even when a write was in flight) or
raw grpc.aio calls where the test must misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import numpy as np
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from seamcut.bench.localserver import LocalServer
from seamcut.client import AsyncClient, SeamcutStreamError, StreamOptions
from seamcut.client.stream import CutEvent, TraceEvent
from seamcut.server.config import Encoding, load_config

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.corpus import default_corpus
from tests.helpers import ServerThread, config_msg, encode, serving, wait_released

pytestmark = pytest.mark.integration
CODE = grpc.StatusCode
CLIP = default_corpus()[0]  # 16 kHz mono speech, 12 s, 4 pauses
RATE = 16000
CHUNK = 1600  # 100 ms per message
OPTS = StreamOptions(sample_rate_hz=RATE, channels=1)


@contextmanager
def serve_process(**server: Any) -> Iterator[str]:
    """`seamcut serve` in its own process (so the test client does not share its GIL),
    configured through SEAMCUT_SERVER_* variables; yields its target."""
    srv = LocalServer(("--log-level", "WARNING"), env={
        f"SEAMCUT_SERVER_{k.upper()}": str(v) for k, v in server.items()})
    try:
        yield srv.target
    finally:
        assert srv.stop() == 0


def clip_chunks() -> list[bytes]:
    data = encode(CLIP.audio, Encoding.PCM_S16LE)
    return [data[i:i + 2 * CHUNK] for i in range(0, len(data), 2 * CHUNK)]


@pytest.fixture(scope="module")
def solo_cuts(server: ServerThread) -> list[int]:
    """The clip's cuts from one stream alone on the shared server."""
    async def run() -> list[int]:
        async with AsyncClient(server.target) as c:
            return (await paced_stream(c, speed=0))[0]
    cuts = asyncio.run(run())
    assert len(cuts) >= 3
    return cuts


async def paced_stream(client: AsyncClient, *, speed: float) -> tuple[list[int], list[float]]:
    """Stream the clip at ``speed`` x real time (0 = unpaced); (cuts, block latencies ms).

    A block's latency runs from sending the last chunk it needs to receiving its trace.
    """
    chunks = clip_chunks()
    async with client.stream(OPTS) as s:
        await s.wait_ready()

        async def send() -> None:
            t0 = time.monotonic()
            for i, c in enumerate(chunks):
                if speed:
                    await asyncio.sleep(max(0.0, t0 + i * CHUNK / RATE / speed - time.monotonic()))
                await s.send(c)
            await s.close_send()

        sender = asyncio.create_task(send())
        cuts, latencies = [], []
        async for ev in s:
            if isinstance(ev, CutEvent):
                cuts.append(ev.sample)
            elif isinstance(ev, TraceEvent):
                latencies.append((time.time_ns() - ev.client_send_time_ns) / 1e6)
        await sender
    return cuts, latencies


async def rejected_after(channel: grpc.aio.Channel,
                         delay_s: float = 0.0) -> tuple[float, SeamcutStreamError]:
    """After ``delay_s``, open a stream that should be refused; (seconds from opening
    it until the status, the error). The config waits until the status came: with a
    write in flight grpc.aio may report INTERNAL instead of the server's status
    (grpc/grpc#36066; the SDK recovers the real one, after a short wait)."""
    await asyncio.sleep(delay_s)
    answered = asyncio.Event()

    async def requests() -> Any:
        await answered.wait()
        yield config_msg()

    t0 = time.monotonic()
    call = pb_grpc.SeamcutStub(channel).StreamCuts(requests())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    took = time.monotonic() - t0
    answered.set()
    return took, SeamcutStreamError.from_rpc_error(info.value)


async def health_ms(target: str) -> float:
    async with grpc.aio.insecure_channel(target) as ch:
        t0 = time.monotonic()
        reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        return (time.monotonic() - t0) * 1000


async def overload(target: str, limit: int, factor: int, speed: float) -> dict[str, Any]:
    """``limit`` paced streams fill the server, then ``(factor - 1) * limit`` more arrive
    while they run. Returns what happened to each group."""
    async with AsyncClient(target) as client, grpc.aio.insecure_channel(target) as ch:
        admitted = [asyncio.create_task(paced_stream(client, speed=speed))
                    for _ in range(limit)]
        await asyncio.sleep(0.3)  # every admitted stream has its slot (Ready came)
        # The extra clients arrive spread over half a second, while the admitted run
        # (1.5 s at 8x): spread over a whole second, a late one on a loaded machine
        # found a slot freed by a finished stream and waited there for the idle limit
        # (a CI run of 2026-12-06).
        extra = (factor - 1) * limit
        rejected = await asyncio.gather(*(rejected_after(ch, delay_s=0.5 * i / max(extra, 1))
                                          for i in range(extra)))
        health = [await health_ms(target) for _ in range(3)]
        results = await asyncio.gather(*admitted)
    lat = np.concatenate([r[1] for r in results]) if results else np.zeros(1)
    return {
        "cuts": [r[0] for r in results],
        "reject_s": [t for t, _ in rejected],
        "errors": [e for _, e in rejected],
        "health_ms": health,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def check_overload(target: str, solo: list[int], limit: int, speed: float) -> None:
    for factor in (1, 2, 10):
        r = asyncio.run(overload(target, limit, factor, speed))
        assert all(c == solo for c in r["cuts"]), "an admitted stream's cuts changed"
        assert len(r["errors"]) == (factor - 1) * limit
        for err in r["errors"]:
            assert err.code == CODE.RESOURCE_EXHAUSTED, err
            assert err.retry_after_ms == 1000 and "capacity" in err.details
        worst = max(r["reject_s"], default=0.0)
        # Refused at once, not after waiting for a slot: an admitted stream lasts 1.5 s
        # at 8x. The figures (4-15 ms) are the bench's in docs/RELIABILITY.md; a tighter
        # bound here only measures the shared CI VM's scheduling.
        assert worst < 0.5, f"rejection took {worst * 1000:.0f} ms"
        assert max(r["health_ms"]) < 1000
        print(f"\noverload {factor}x of {limit} streams at {speed or 'max'}x real time: "
              f"{len(r['errors'])} rejected, slowest rejection {worst * 1000:.1f} ms, "
              f"admitted block latency p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms, "
              f"health {max(r['health_ms']):.1f} ms")


def test_admission_at_1x_2x_10x_capacity(solo_cuts: list[int]) -> None:
    with serve_process(max_streams=8) as target:
        check_overload(target, solo_cuts, limit=8, speed=8.0)


@pytest.mark.slow
def test_admission_at_1x_2x_10x_capacity_real_time(solo_cuts: list[int]) -> None:
    with serve_process(max_streams=32) as target:
        check_overload(target, solo_cuts, limit=32, speed=1.0)


# ---------------------------------------------------------------- idle and session limits


async def raw_stream(target: str, gaps_s: list[float]) -> tuple[grpc.StatusCode, str, float]:
    """Config, then one empty audio chunk after each gap; then wait for the end.
    Returns the status, its details and when it came (seconds from the start)."""
    async def requests() -> Any:
        yield config_msg()
        for seq, gap in enumerate(gaps_s):
            await asyncio.sleep(gap)
            yield pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=b"\0\0" * 160))
        await asyncio.sleep(3600)  # never half-close

    async with grpc.aio.insecure_channel(target) as ch:
        t0 = time.monotonic()
        call = pb_grpc.SeamcutStub(ch).StreamCuts(requests())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        return info.value.code(), info.value.details() or "", time.monotonic() - t0


def test_idle_timeout_and_max_session_length() -> None:
    with serving(idle_timeout_s=0.5, max_session_s=1.5) as srv:
        async def run() -> list[tuple[grpc.StatusCode, str, float]]:
            return await asyncio.gather(
                raw_stream(srv.target, []),  # config, then silence
                raw_stream(srv.target, [0.2, 0.2, 0.3]),  # then silence
                raw_stream(srv.target, [0.2] * 20),  # busy past max_session_s
            )
        idle, late_idle, long = asyncio.run(run())
        assert idle[0] == CODE.DEADLINE_EXCEEDED and "idle_timeout_s = 0.5 s" in idle[1]
        assert 0.45 < idle[2] < 1.2
        assert late_idle[0] == CODE.DEADLINE_EXCEEDED and 1.1 < late_idle[2] < 1.8
        assert long[0] == CODE.OUT_OF_RANGE and "max_session_s = 1.5 s" in long[1]
        assert 1.45 < long[2] < 2.2
        c = srv.running.servicer.counters
        assert (c.idle_timeouts, c.session_limits) == (2, 1)
        assert wait_released(srv)[0].idle


def test_idle_timeout_before_the_config() -> None:
    with serving(idle_timeout_s=0.3) as srv, grpc.insecure_channel(srv.target) as ch:
        gate = __import__("threading").Event()

        def requests() -> Iterator[pb.ClientMessage]:
            gate.wait(10)  # send nothing at all until the server gave up
            return
            yield

        with pytest.raises(grpc.RpcError) as info:
            list(pb_grpc.SeamcutStub(ch).StreamCuts(requests(), timeout=10))
        gate.set()
        assert info.value.code() == CODE.DEADLINE_EXCEEDED
        assert "idle_timeout_s" in (info.value.details() or "")
        assert wait_released(srv)[0].idle


# ---------------------------------------------------------------- a client that stops reading


def test_stalled_reader_costs_bounded_memory_and_is_ended() -> None:
    """The client sends as fast as it can and never reads. Its flow-control window
    (1 KiB here, no BDP growth) fills, the server's write blocks, the outbox fills to
    its bound, the reader stops reading (so the client's sends block too), and after
    stall_timeout_s the watchdog ends the stream: DEADLINE_EXCEEDED once the client
    reads again, every resource released."""
    queue_bound = 64
    with serving(stall_timeout_s=2, writer_queue_events=queue_bound) as srv:
        proc = psutil.Process()
        rss0 = proc.memory_info().rss
        peak_outbox = 0
        samples: list[int] = []

        async def run() -> tuple[grpc.StatusCode, str, int, float]:
            nonlocal peak_outbox
            opts = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]
            async with grpc.aio.insecure_channel(srv.target, options=opts) as ch:
                async def requests() -> Any:
                    yield config_msg()
                    seq = 0
                    while True:
                        yield pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=b"\0\0" * 3200))
                        seq += 1

                t0 = time.monotonic()
                call = pb_grpc.SeamcutStub(ch).StreamCuts(requests())
                assert (await call.read()).WhichOneof("msg") == "ready"
                while time.monotonic() - t0 < 8 and not srv.running.resources().idle:
                    for s in list(srv.running.servicer.sessions):
                        peak_outbox = max(peak_outbox, s.events.qsize())
                    samples.append(proc.memory_info().rss)
                    await asyncio.sleep(0.05)
                ended = time.monotonic() - t0
                n = 0
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    while await call.read() is not grpc.aio.EOF:  # buffered, then status
                        n += 1
                return info.value.code(), info.value.details() or "", n, ended

        code, details, buffered, ended = asyncio.run(run())
        assert code == CODE.DEADLINE_EXCEEDED and "stopped reading" in details
        assert 2.0 <= ended < 4.0, ended
        assert srv.running.servicer.counters.stalls == 1
        # The outbox stops at its bound plus what the blocks in flight still deliver:
        # a ChunkTrace and a Progress each (cuts are rare in this noise).
        inflight = srv.running.servicer.cfg.engine.max_inflight_per_stream
        assert 0 < peak_outbox <= queue_bound + 2 * inflight + 4, peak_outbox
        assert (max(samples) - rss0) < 30 << 20
        assert buffered > 0
        print(f"\nstalled reader: ended after {ended:.2f} s, outbox peak {peak_outbox}, "
              f"RSS +{(max(samples) - rss0) / 2**20:.1f} MiB, {buffered} messages buffered")
        assert wait_released(srv)[0].idle


@pytest.mark.unit
@pytest.mark.parametrize("key,value", [("idle_timeout_s", 0), ("stall_timeout_s", -1),
                                       ("max_session_s", -5), ("idle_timeout_s", "nan")])
def test_limit_settings_are_validated(key: str, value: object) -> None:
    from seamcut.server.errors import ConfigError

    with pytest.raises(ConfigError, match=f"server.{key}"):
        load_config(env={}, overrides={"server": {key: value}})
