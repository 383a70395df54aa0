"""Streams that end abruptly release everything; SIGTERM drains.

* Client cancels at random points of a stream's life, and client processes killed with
  SIGKILL (or frozen with SIGSTOP, which is what a network cut looks like to the
  server): the resource counters of the in-process server return to zero.
* A real `seamcut serve` subprocess gets SIGTERM with streams open: they get a
  ``draining`` notice, finish or end UNAVAILABLE at the grace period, new streams get
  UNAVAILABLE, and the process exits 0 in time.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from seamcut.bench.localserver import LocalServer
from seamcut.client import AsyncClient, SeamcutStreamError, StreamOptions
from seamcut.client.stream import CutEvent, NoticeEvent, SummaryEvent
from seamcut.server.config import Encoding

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.corpus import default_corpus
from tests.helpers import (
    ServerThread,
    audio_msgs,
    config_msg,
    cut_samples,
    encode,
    run_stream,
    serving,
    wait_released,
)

pytestmark = pytest.mark.integration
CODE = grpc.StatusCode
CLIP = default_corpus()[0]  # 16 kHz mono speech, 12 s
PCM = encode(CLIP.audio, Encoding.PCM_S16LE)
CHUNK_BYTES = 3200  # 100 ms
KEEPALIVE = {"keepalive_time_ms": 500, "keepalive_timeout_ms": 500, "min_ping_interval_ms": 100}


def chunks() -> list[bytes]:
    return [PCM[i:i + CHUNK_BYTES] for i in range(0, len(PCM), CHUNK_BYTES)]


@pytest.fixture(scope="module")
def solo_cuts(server: ServerThread) -> list[int]:
    cuts = cut_samples(run_stream(server.target, [config_msg(), *audio_msgs(chunks())]))
    assert len(cuts) >= 3
    return cuts


# ---------------------------------------------------------------- client cancels


async def cancelled_stream(ch: grpc.aio.Channel, rng: np.random.Generator) -> str:
    """One stream that the client cancels at a random point; returns which point."""
    point = str(rng.choice(["before-config", "after-ready", "mid-audio", "after-flush",
                            "after-half-close", "after-delay"]))
    n_audio = int(rng.integers(1, 60))
    k_read = int(rng.integers(1, 12))
    half_closed = asyncio.Event()

    async def requests() -> Any:
        if point == "before-config":
            await asyncio.sleep(3600)
        yield config_msg()
        for seq, c in enumerate(chunks()[:n_audio]):
            yield pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=c))
            if point == "after-flush" and seq == n_audio // 2:
                yield pb.ClientMessage(control=pb.Control(flush=pb.Flush(flush_id=1)))
        if point != "after-half-close":
            await asyncio.sleep(3600)
        half_closed.set()

    async def until_point() -> None:
        if point == "before-config":
            await asyncio.sleep(float(rng.uniform(0, 0.05)))
        elif point == "after-ready":
            await call.read()
        elif point in ("mid-audio", "after-flush"):
            for _ in range(k_read):
                if await call.read() is grpc.aio.EOF:
                    break
        elif point == "after-half-close":
            await half_closed.wait()
            await asyncio.sleep(float(rng.uniform(0, 0.2)))  # while the tail is processed
        else:
            await asyncio.sleep(float(rng.uniform(0, 0.3)))

    call = pb_grpc.SeamcutStub(ch).StreamCuts(requests())
    try:
        # A short stream may never send k_read messages: cancel after 0.5 s at the latest.
        async with asyncio.timeout(0.5):
            await until_point()
    except (TimeoutError, grpc.aio.AioRpcError):
        pass
    finally:
        call.cancel()
    return point


async def cancel_many(target: str, n: int, concurrency: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    points: list[str] = []
    async with grpc.aio.insecure_channel(target) as ch:
        for start in range(0, n, concurrency):
            batch = min(concurrency, n - start)
            points += await asyncio.gather(*(cancelled_stream(ch, rng) for _ in range(batch)))
    return points


def check_cancels(n: int, solo: list[int]) -> None:
    with serving() as srv:
        points = asyncio.run(cancel_many(srv.target, n, concurrency=20, seed=n))
        counts, took = wait_released(srv, 5.0)
        assert counts.idle, counts
        c = srv.running.servicer.counters
        assert c.sessions_total >= n * 0.9  # nearly all got as far as admission
        e = srv.running.engine
        assert e.submitted == e.answered  # every request got its result (or CANCELLED)
        print(f"\n{n} cancels ({', '.join(sorted(set(points)))}): "
              f"{e.submitted} engine requests, released in {took:.2f} s")
        assert cut_samples(run_stream(srv.target, [config_msg(), *audio_msgs(chunks())])) == solo


def test_cancels_at_random_points_release_everything(solo_cuts: list[int]) -> None:
    check_cancels(200, solo_cuts)


@pytest.mark.slow
def test_a_thousand_cancels_release_everything(solo_cuts: list[int]) -> None:
    check_cancels(1000, solo_cuts)


# ---------------------------------------------------------------- clients that die

# A minimal client: config, then 100 ms of audio every 20 ms for ever; says "ready".
CLIENT = """
import sys, time, grpc
from seamcut.v1 import seamcut_pb2 as pb, seamcut_pb2_grpc as pb_grpc
def requests():
    yield pb.ClientMessage(config=pb.StreamConfig(format=pb.AudioFormat(
        encoding=pb.PCM_S16LE, sample_rate_hz=16000, channels=1)))
    seq = 0
    while True:
        yield pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=bytes(3200)))
        seq += 1
        time.sleep(0.02)
with grpc.insecure_channel(sys.argv[1]) as ch:
    for msg in pb_grpc.SeamcutStub(ch).StreamCuts(requests()):
        if msg.WhichOneof("msg") == "ready":
            print("ready", flush=True)
"""


def check_dead_clients(n_kill: int, n_freeze: int) -> None:
    with serving(**KEEPALIVE) as srv:
        procs = [subprocess.Popen([sys.executable, "-c", CLIENT, srv.target],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                 for _ in range(n_kill + n_freeze)]
        try:
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
            assert srv.running.resources().sessions_open == len(procs)
            time.sleep(0.3)  # mid-stream: audio flowing, blocks in flight
            for p in procs[:n_kill]:
                p.kill()
            for p in procs[n_kill:]:
                p.send_signal(signal.SIGSTOP)  # socket open, nobody answers: a cut cable
            bound = (KEEPALIVE["keepalive_time_ms"] + KEEPALIVE["keepalive_timeout_ms"]) / 1000
            counts, took = wait_released(srv, bound + 3.0)
            assert counts.idle, counts
            print(f"\n{n_kill} killed + {n_freeze} frozen clients: released in {took:.2f} s "
                  f"(keepalive {bound:.1f} s)")
        finally:
            for p in procs:
                p.kill()
                p.wait(10)
                if p.stdout is not None:
                    p.stdout.close()


def test_killed_and_frozen_clients_release_everything() -> None:
    check_dead_clients(n_kill=10, n_freeze=2)


@pytest.mark.slow
def test_fifty_killed_clients_release_everything() -> None:
    check_dead_clients(n_kill=50, n_freeze=5)


# ---------------------------------------------------------------- SIGTERM


async def drained_stream(client: AsyncClient, *, half_close_on_notice: bool,
                         sigterm_sent: asyncio.Event) -> dict[str, Any]:
    """A real-time stream of a long recording; on the drain notice, half-close or not."""
    audio = chunks() * 4  # 48 s: longer than the test
    out: dict[str, Any] = {"notice": None, "cuts": [], "summary": False, "error": None}
    async with client.stream(StreamOptions(sample_rate_hz=16000, channels=1)) as s:
        await s.wait_ready()
        stop_sending = asyncio.Event()

        async def send() -> None:
            t0 = time.monotonic()
            for i, c in enumerate(audio):
                if stop_sending.is_set():
                    break
                await asyncio.sleep(max(0.0, t0 + i * 0.1 - time.monotonic()))
                await s.send(c)
            await s.close_send()

        sender = asyncio.create_task(send())
        try:
            async for ev in s:
                if isinstance(ev, NoticeEvent):
                    out["notice"] = (ev.code, time.monotonic(), sigterm_sent.is_set())
                    if half_close_on_notice:
                        stop_sending.set()
                elif isinstance(ev, CutEvent):
                    out["cuts"].append(ev.sample)
                elif isinstance(ev, SummaryEvent):
                    out["summary"] = True
        except SeamcutStreamError as exc:
            out["error"] = exc
        out["ended"] = time.monotonic()
        sender.cancel()
        await asyncio.wait({sender})
    return out


def test_sigterm_notifies_drains_and_exits_in_time() -> None:
    grace = 3.0
    srv = LocalServer(env={"SEAMCUT_SERVER_GRACE_S": str(grace)})
    proc, target, log = srv.proc, srv.target, srv.log_path
    try:
        async def run() -> tuple[dict[str, Any], dict[str, Any], Any, Any, float]:
            sent = asyncio.Event()
            async with AsyncClient(target) as client:
                keeps = asyncio.create_task(drained_stream(
                    client, half_close_on_notice=False, sigterm_sent=sent))
                finishes = asyncio.create_task(drained_stream(
                    client, half_close_on_notice=True, sigterm_sent=sent))
                await asyncio.sleep(1.5)
                proc.send_signal(signal.SIGTERM)
                t_term = time.monotonic()
                sent.set()
                await asyncio.sleep(0.5)
                async with grpc.aio.insecure_channel(target) as ch:
                    health = await health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(), timeout=5)
                with pytest.raises(SeamcutStreamError) as late:
                    async with client.stream(StreamOptions(sample_rate_hz=16000)) as s:
                        await s.wait_ready()
                return (await keeps, await finishes, health.status, late.value, t_term)

        keeps, finishes, health, late, t_term = asyncio.run(run())
        rc = proc.wait(grace + 5)
        exited = time.monotonic() - t_term
        text = log.read_text()
    finally:
        srv.stop()
    assert rc == 0, text
    assert exited < grace + 5
    assert health == health_pb2.HealthCheckResponse.NOT_SERVING
    assert late.code == CODE.UNAVAILABLE and "draining" in late.details
    for r in (keeps, finishes):
        assert r["notice"] is not None and r["notice"][0] == "draining" and r["notice"][2]
        assert r["notice"][1] - t_term < 1.0
    # The stream that half-closed on the notice got its remaining cuts and Summary.
    assert finishes["error"] is None and finishes["summary"], finishes["error"]
    assert finishes["ended"] - t_term < grace
    # The one that kept sending ended UNAVAILABLE when the grace ran out.
    assert isinstance(keeps["error"], SeamcutStreamError), keeps
    assert keeps["error"].code == CODE.UNAVAILABLE and "grace" in keeps["error"].details
    assert grace - 0.2 < keeps["ended"] - t_term < grace + 1.5
    print(f"\ndrain: notice after {finishes['notice'][1] - t_term:.2f} s, half-closed stream "
          f"done after {finishes['ended'] - t_term:.2f} s, the other UNAVAILABLE after "
          f"{keeps['ended'] - t_term:.2f} s, exit 0 after {exited:.2f} s (grace {grace:g} s)")
