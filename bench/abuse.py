"""``python -m seamcut.bench.abuse``: attack a local ``seamcut serve`` as one hostile
client would, while well-behaved clients use it, and report what they saw.

Attacks (each bounded in time; the server is a fresh child process per attack):

* ``rapid-reset``: one connection (reconnecting after a GOAWAY) sends HEADERS +
  RST_STREAM pairs as fast as one core can (``bench/h2attack.py``);
* ``cancel-loop``: ordinary gRPC calls cancelled before their config, 64 at a time;
* ``hoard``: one connection opens streams and never sends a config;
* ``huge-strings``: configs whose ``separation.backend`` is 900 KB;
* ``watch``: health ``Watch`` streams held open;
* ``high-rate``: 8 streams of 192 kHz 8-channel f32 that flood and never read.

Meanwhile a *live* stream sends 100 ms of speech every 100 ms and times each
acknowledgement (a Progress with ``last_seq`` >= the chunk's seq), and a *good*
client opens a short stream every 0.25 s. The tests call the same functions with
smaller numbers. Needs the ``h2`` package (the ``dev`` extra). Never imports
``seamcut.server``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from seamcut.bench import h2attack
from seamcut.bench.localserver import LocalServer
from seamcut.bench.sysmon import ProcessGroup

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc

ATTACKER_NICE = 10
RATE = 16_000
CHUNK = 1_600  # 100 ms


def _speechlike(seconds: float, seed: int = 0) -> bytes:
    """Noise bursts with gaps, int16: enough for VAD work, no corpus needed."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    env = (np.sin(np.arange(n) * 2 * np.pi * 0.7 / RATE) > -0.3).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32) * 0.1 * env
    return bytes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def config_message(**fields: Any) -> pb.ClientMessage:
    cfg = pb.StreamConfig(format=pb.AudioFormat(
        encoding=pb.PCM_S16LE, sample_rate_hz=RATE, channels=1), **fields)
    return pb.ClientMessage(config=cfg)


# ---------------------------------------------------------------- well-behaved clients


async def live_stream(target: str, seconds: float,
                      started: asyncio.Event | None = None) -> tuple[list[float], str]:
    """Real-time 100 ms chunks for ``seconds``: (acknowledgement latencies in ms, the
    stream's status name)."""
    audio = _speechlike(seconds + 1)
    sent: dict[int, float] = {}
    lat: list[float] = []
    n = int(seconds * RATE / CHUNK)

    async def requests() -> AsyncIterator[pb.ClientMessage]:
        yield config_message()
        t0 = time.monotonic()
        for k in range(n):
            await asyncio.sleep(max(0.0, t0 + k * CHUNK / RATE - time.monotonic()))
            sent[k] = time.monotonic()
            yield pb.ClientMessage(audio=pb.AudioChunk(
                seq=k, data=audio[2 * k * CHUNK:2 * (k + 1) * CHUNK]))

    async with grpc.aio.insecure_channel(target) as ch:
        call = pb_grpc.SeamcutStub(ch).StreamCuts(requests())
        acked = -1
        try:
            async for msg in call:
                if msg.WhichOneof("msg") == "ready" and started is not None:
                    started.set()
                if msg.WhichOneof("msg") == "progress":
                    now = time.monotonic()
                    for k in range(acked + 1, msg.progress.last_seq + 1):
                        if k in sent:
                            lat.append((now - sent[k]) * 1000)
                    acked = max(acked, msg.progress.last_seq)
        except grpc.aio.AioRpcError as exc:
            return lat, str(exc.code().name)
        except asyncio.CancelledError:  # grpc.aio's way of reporting CANCELLED
            if await call.code() != grpc.StatusCode.CANCELLED:
                raise
            return lat, "CANCELLED"
        finally:
            if started is not None:
                started.set()
    return lat, "OK"


async def good_stream(target: str, *, metadata: tuple[tuple[str, str], ...] = ()) -> str:
    """Open a stream, send 1 s of audio, half-close, read to the end: the status name."""
    audio = _speechlike(1.0, seed=1)

    async def requests() -> AsyncIterator[pb.ClientMessage]:
        yield config_message()
        yield pb.ClientMessage(audio=pb.AudioChunk(seq=0, data=audio))

    async with grpc.aio.insecure_channel(target) as ch:
        call = pb_grpc.SeamcutStub(ch).StreamCuts(requests(), metadata=metadata, timeout=10)
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
        except asyncio.CancelledError:
            if await call.code() != grpc.StatusCode.CANCELLED:
                raise
            return "CANCELLED"
        return "OK"


async def good_clients(target: str, seconds: float, every_s: float = 0.25) -> list[str]:
    """A new short stream every ``every_s`` for ``seconds``: each one's status."""
    tasks = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        tasks.append(asyncio.create_task(good_stream(target)))
        await asyncio.sleep(every_s)
    return list(await asyncio.gather(*tasks))


# ---------------------------------------------------------------- attacks


def _rapid_reset_proc(host: str, port: int, seconds: float, out: Any) -> None:
    # On one machine the attacker's own CPU is the server's: nice it, so that what is
    # measured is closer to an attacker on another host (whose frames the server must
    # still parse).
    os.nice(ATTACKER_NICE)
    out.put(asdict(h2attack.rapid_reset(host, port, seconds)))


def _cancel_loop_proc(target: str, seconds: float, out: Any) -> None:
    os.nice(ATTACKER_NICE)
    out.put(asyncio.run(cancel_loop(target, seconds)))


async def cancel_loop(target: str, seconds: float, concurrency: int = 64) -> dict[str, Any]:
    """Ordinary gRPC calls, cancelled before their config, as fast as they go."""
    calls = 0

    async def never() -> AsyncIterator[pb.ClientMessage]:
        await asyncio.sleep(3600)
        yield config_message()

    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.SeamcutStub(ch)
        t_end = time.monotonic() + seconds

        async def one() -> None:
            nonlocal calls
            while time.monotonic() < t_end:
                call = stub.StreamCuts(never())
                await asyncio.sleep(0)
                call.cancel()
                calls += 1
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return {"calls": calls}


async def high_rate(target: str, streams: int, seconds: float) -> dict[str, Any]:
    """``streams`` 192 kHz 8-channel f32 streams that send as fast as the server takes
    and never read: what the server holds for them is its budget, not their rate."""
    fmt = pb.AudioFormat(encoding=pb.F32LE, sample_rate_hz=192_000, channels=8)
    chunk = np.zeros((19_200 // 2, 8), dtype="<f4")  # 50 ms: 614 KB per message
    chunk[:, :] = np.random.default_rng(2).standard_normal(chunk.shape) * 0.1
    data = chunk.tobytes()
    sent = [0] * streams

    async def requests(i: int) -> AsyncIterator[pb.ClientMessage]:
        yield pb.ClientMessage(config=pb.StreamConfig(format=fmt))
        seq = 0
        while True:
            yield pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=data))
            sent[i] += len(data)
            seq += 1

    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.SeamcutStub(ch)
        calls = [stub.StreamCuts(requests(i)) for i in range(streams)]
        await asyncio.sleep(seconds)  # never read
        for c in calls:
            c.cancel()
    return {"streams": streams, "mib_sent": round(sum(sent) / (1 << 20), 1)}


def hoard(host: str, port: int, streams: int, hold_s: float,
          extra: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """Open ``streams`` StreamCuts on one connection without a config; hold them."""
    conn = h2attack.Connection(host, port)
    opened = 0
    try:
        for _ in range(streams):
            try:
                conn.open(extra=extra)
            except Exception:  # h2 enforces the server's MAX_CONCURRENT_STREAMS
                break
            opened += 1
        conn.flush()
        t_end = time.monotonic() + hold_s
        while time.monotonic() < t_end and not conn.closed:
            conn.pump(0.1)
        codes: dict[str, int] = {}
        for code in conn.statuses.values():
            name = _status_name(int(code))
            codes[name] = codes.get(name, 0) + 1
        return {"sent": opened, "statuses": codes, "reset_by_server": conn.refused,
                "max_concurrent_streams": conn.max_concurrent_streams,
                "goaway": conn.goaway is not None}
    finally:
        conn.close()


def _status_name(value: int) -> str:
    return str(next(c.name for c in grpc.StatusCode if c.value[0] == value))


@dataclass
class ServerUse:
    cpu_s: float = 0.0
    rss_before_mib: float = 0.0
    rss_peak_mib: float = 0.0
    rss_after_mib: float = 0.0
    log_bytes: int = 0


@dataclass
class AttackReport:
    attack: str
    seconds: float
    unloaded_p50_ms: float = 0.0
    unloaded_p99_ms: float = 0.0
    loaded_p50_ms: float = 0.0
    loaded_p99_ms: float = 0.0
    live_status: str = ""
    good_ok: int = 0
    good_total: int = 0
    good_codes: dict[str, int] = field(default_factory=dict)
    attacker: dict[str, Any] = field(default_factory=dict)
    server: ServerUse = field(default_factory=ServerUse)


async def _under(target: str, seconds: float, attack: Callable[[], Any],
                 report: AttackReport) -> None:
    """Run ``attack`` (blocking, in a thread) while the live stream and good clients run."""
    started = asyncio.Event()
    live = asyncio.create_task(live_stream(target, seconds + 1.0, started))
    await started.wait()
    await asyncio.sleep(0.5)
    loop = asyncio.get_running_loop()
    attacking = loop.run_in_executor(None, attack)
    good = await good_clients(target, seconds)
    report.attacker = await attacking or {}
    lat, report.live_status = await live
    report.loaded_p50_ms = float(np.percentile(lat[5:], 50)) if len(lat) > 5 else float("nan")
    report.loaded_p99_ms = float(np.percentile(lat[5:], 99)) if len(lat) > 5 else float("nan")
    report.good_total = len(good)
    report.good_ok = good.count("OK")
    for code in good:
        report.good_codes[code] = report.good_codes.get(code, 0) + 1


def run_attack(name: str, seconds: float, server_env: dict[str, str],
               server_args: tuple[str, ...] = ()) -> AttackReport:
    report = AttackReport(attack=name, seconds=seconds)
    srv = LocalServer(("--log-level", "INFO", *server_args), env=server_env)
    try:
        group = ProcessGroup([srv.pid], children=True)  # workers and engines too
        host, _, port_s = srv.target.rpartition(":")
        port = int(port_s)
        lat, _ = asyncio.run(live_stream(srv.target, seconds + 1.0))
        report.unloaded_p50_ms = float(np.percentile(lat[5:], 50))
        report.unloaded_p99_ms = float(np.percentile(lat[5:], 99))
        report.server.rss_before_mib = group.rss_mib() or 0.0
        cpu0 = group.cpu_seconds()
        peak = [report.server.rss_before_mib]
        stop = False

        def sample() -> None:
            while not stop:
                peak[0] = max(peak[0], group.rss_mib() or 0.0)
                time.sleep(0.1)

        import threading
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        attack = _attack(name, host, port, seconds)
        asyncio.run(_under(srv.target, seconds, attack, report))
        stop = True
        sampler.join()
        report.server.cpu_s = group.cpu_seconds() - cpu0
        time.sleep(2.0)  # the server lets go of what the attack made it hold
        report.server.rss_peak_mib = peak[0]
        report.server.rss_after_mib = group.rss_mib() or 0.0
        report.server.log_bytes = srv.log_path.stat().st_size
    finally:
        srv.stop()
    return report


def _in_process(target: Callable[..., None], *args: Any, timeout_s: float) -> dict[str, Any]:
    """Run ``target(*args, queue)`` in a fresh process; what it put on the queue."""
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    result = q.get(timeout=timeout_s)
    p.join(10)
    return dict(result)


def _attack(name: str, host: str, port: int, seconds: float) -> Callable[[], Any]:
    if name == "rapid-reset":
        return lambda: _in_process(_rapid_reset_proc, host, port, seconds,
                                   timeout_s=seconds + 30)
    if name == "cancel-loop":
        return lambda: _in_process(_cancel_loop_proc, f"{host}:{port}", seconds,
                                   timeout_s=seconds + 30)
    if name == "hoard":
        return lambda: hoard(host, port, 600, seconds)
    if name == "huge-strings":
        return lambda: asyncio.run(huge_strings(f"{host}:{port}", 200))
    if name == "high-rate":
        return lambda: asyncio.run(high_rate(f"{host}:{port}", 8, seconds))
    if name == "watch":
        return lambda: asyncio.run(health_watches(f"{host}:{port}", 2000, seconds))
    raise SystemExit(f"unknown attack {name!r}")


async def huge_strings(target: str, count: int) -> dict[str, Any]:
    """``count`` configs with a 900 KB backend name: the statuses and message sizes."""
    big = "x" * 900_000
    codes: dict[str, int] = {}
    longest = 0
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.SeamcutStub(ch)

        async def one() -> None:
            nonlocal longest

            async def requests() -> AsyncIterator[pb.ClientMessage]:
                yield config_message(mode=pb.SONG, separation=pb.SeparationOptions(
                    backend=big))
            try:
                async for _ in stub.StreamCuts(requests(), timeout=10):
                    pass
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
                longest = max(longest, len(exc.details() or ""))
        for start in range(0, count, 20):
            await asyncio.gather(*(one() for _ in range(min(20, count - start))))
    return {"statuses": codes, "longest_message": longest}


async def health_watches(target: str, count: int, hold_s: float) -> dict[str, Any]:
    """Open ``count`` health Watch streams on a few connections; how many were held."""
    held = 0
    refused: dict[str, int] = {}
    channels = [grpc.aio.insecure_channel(target, options=(
        ("grpc.use_local_subchannel_pool", 1),)) for _ in range(max(1, count // 100))]
    calls = []
    try:
        for i in range(count):
            stub = health_pb2_grpc.HealthStub(channels[i % len(channels)])
            calls.append(stub.Watch(health_pb2.HealthCheckRequest()))

        async def first(call: Any) -> None:
            nonlocal held
            try:
                await asyncio.wait_for(call.read(), 5)
                held += 1
            except grpc.aio.AioRpcError as exc:
                refused[exc.code().name] = refused.get(exc.code().name, 0) + 1
            except TimeoutError:
                refused["TIMEOUT"] = refused.get("TIMEOUT", 0) + 1
        await asyncio.gather(*(first(c) for c in calls))
        await asyncio.sleep(hold_s)
    finally:
        for c in calls:
            c.cancel()
        for ch in channels:
            await ch.close()
    return {"held": held, "refused": refused}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seamcut.bench.abuse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("attacks", nargs="*",
                   default=["rapid-reset", "cancel-loop", "hoard", "huge-strings", "watch",
                            "high-rate"])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--json", metavar="PATH", help="also write the reports here")
    args = p.parse_args(argv)
    env = {"SEAMCUT_SERVER_WORKERS": str(args.workers)}
    reports = []
    for name in args.attacks:
        r = run_attack(name, args.seconds, env)
        reports.append(asdict(r))
        print(json.dumps(asdict(r)), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "machine": platform.processor()
                       or platform.machine(), "cpus": os.cpu_count(),
                       "python": sys.version.split()[0], "command": " ".join(sys.argv),
                       "reports": reports}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
