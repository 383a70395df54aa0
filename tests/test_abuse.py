"""One hostile client must not deny service to the others or grow the server.

Raw HTTP/2 (the `h2` package, ``bench/h2attack.py``) for what grpcio's client cannot
do: resetting streams as fast as it opens them, opening more streams than the server
allows. Every attack is bounded to a few seconds; the servers are real processes
(`seamcut serve`) where CPU or memory is measured, in-process otherwise.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from seamcut.bench import abuse, h2attack
from seamcut.bench.localserver import LocalServer

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.helpers import config_msg, serving, wait_released

pytestmark = pytest.mark.integration
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
# The live stream's 2x-of-unloaded target is measured by the bench (`python -m
# seamcut.bench.abuse`, docs/RELIABILITY.md), not here: on a shared 2-core CI VM one
# scheduling hiccup is a 4 s run's p99 (11.6 ms against 2 x 5 ms failed one CI run
# while the same test passed 3 of 3 alone). This bound catches starvation: before the
# limits, the reset calls queued ahead of good ones for seconds.
STARVED_MS = 50.0


def _host_port(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host, int(port)


def test_rapid_reset_leaves_other_clients_served() -> None:
    """One connection sends HEADERS + RST_STREAM pairs as fast as a core can for 4 s
    while a live stream times its acknowledgements and a good client opens a stream
    every 0.25 s. Before the limits: 8 of 20 good streams were served (the rest
    CANCELLED before any handler saw them) and RSS grew 55 MiB for good."""
    r = abuse.run_attack("rapid-reset", 4.0, {})
    print(f"\nrapid reset: {r.attacker['pairs']} pairs on {r.attacker['connections']} "
          f"connection(s); good {r.good_ok}/{r.good_total}; live p99 "
          f"{r.unloaded_p99_ms:.1f} -> {r.loaded_p99_ms:.1f} ms; server CPU "
          f"{r.server.cpu_s:.1f} s; RSS {r.server.rss_before_mib:.0f} -> "
          f"{r.server.rss_after_mib:.0f} MiB")
    assert r.attacker["pairs"] > 10_000  # the attack really ran
    assert r.good_ok == r.good_total, r.good_codes
    assert r.live_status == "OK"
    assert r.loaded_p99_ms <= STARVED_MS
    assert r.server.rss_after_mib <= 1.1 * r.server.rss_before_mib


def _refusals(conn: h2attack.Connection, sids: list[int]) -> list[tuple[str, dict[str, str]]]:
    out = []
    for sid in sids:
        st = conn.status_of(sid)
        if st is not None:
            assert st[0] == RESOURCE_EXHAUSTED, st
            out.append((st[1], st[2]))
    return out


def _open(conn: h2attack.Connection, n: int,
          extra: tuple[tuple[str, str], ...] = ()) -> list[int]:
    sids = [conn.open(extra=extra) for _ in range(n)]
    conn.flush()
    conn.pump_for(0.5)
    return sids


def test_hoarding_is_refused_per_connection_and_per_address() -> None:
    with serving(max_streams=64, max_streams_per_connection=4, max_streams_per_peer=6,
                 http2_max_concurrent_streams=16) as srv:
        host, port = _host_port(srv.target)
        first = h2attack.Connection(host, port)
        second = h2attack.Connection(host, port)
        other = h2attack.Connection(host, port, source="127.0.0.2")
        try:
            sids = _open(first, 6)
            assert first.max_concurrent_streams == 16  # the HTTP/2 limit, announced
            refused = _refusals(first, sids)
            assert len(refused) == 2  # 4 per connection
            for message, trailers in refused:
                assert "max_streams_per_connection = 4" in message
                assert trailers["retry-after-ms"] == "1000"
            sids = _open(second, 4)
            refused = _refusals(second, sids)
            assert len(refused) == 2  # 6 per address: 4 + 2
            assert all("max_streams_per_peer = 6" in m for m, _ in refused)
            # Another address is served while this one is at its share.
            assert _refusals(other, _open(other, 3)) == []
            assert srv.running.servicer.counters.sessions_open == 9
        finally:
            for c in (first, second, other):
                c.close()
        assert wait_released(srv)[0].idle


def test_hoarding_is_refused_per_token() -> None:
    with serving(max_streams_per_token=3, max_streams_per_peer=0,
                 security={"tokens": "alpha-token,beta-token"}) as srv:
        host, port = _host_port(srv.target)
        conn = h2attack.Connection(host, port)
        try:
            alpha = (("authorization", "Bearer alpha-token"),)
            refused = _refusals(conn, _open(conn, 5, alpha))
            assert len(refused) == 2
            assert all("max_streams_per_token = 3" in m for m, _ in refused)
            assert _refusals(conn, _open(conn, 2, (("authorization", "Bearer beta-token"),))) \
                == []
        finally:
            conn.close()
        assert wait_released(srv)[0].idle


def test_per_address_limit_holds_across_workers() -> None:
    """Connections land on either of two workers (SO_REUSEPORT); the limit is the
    server's, not each worker's."""
    srv = LocalServer(("--log-level", "WARNING"), listeners=2, env={
        "SEAMCUT_SERVER_WORKERS": "2", "SEAMCUT_SERVER_MAX_STREAMS_PER_PEER": "4"})
    conns = []
    try:
        host, port = _host_port(srv.target)
        refused = 0
        for _ in range(12):
            c = h2attack.Connection(host, port)
            conns.append(c)
            refused += len(_refusals(c, _open(c, 1)))
        assert refused == 8
        other = h2attack.Connection(host, port, source="127.0.0.2")
        conns.append(other)
        assert _refusals(other, _open(other, 2)) == []
    finally:
        for c in conns:
            c.close()
        assert srv.stop() == 0


# ---------------------------------------------------------------- idle, strings, numbers


async def _noop_stream(target: str, *, flush: bool) -> tuple[grpc.StatusCode, str, float]:
    """Config and one real chunk, then a no-op every 0.1 s (an empty chunk, or a flush
    with nothing new) for ever: the idle limit must still end it."""
    async def requests() -> Any:
        yield config_msg()
        yield pb.ClientMessage(audio=pb.AudioChunk(seq=0, data=b"\1\0" * 1600))
        seq = 1
        while True:
            await asyncio.sleep(0.1)
            if flush:
                yield pb.ClientMessage(control=pb.Control(flush=pb.Flush(flush_id=seq)))
            else:
                yield pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=b""))
                seq += 1

    async with grpc.aio.insecure_channel(target) as ch:
        t0 = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in pb_grpc.SeamcutStub(ch).StreamCuts(requests()):
                pass
        return info.value.code(), info.value.details() or "", time.monotonic() - t0


def test_no_op_messages_do_not_keep_a_stream_alive() -> None:
    with serving(idle_timeout_s=0.6) as srv:
        async def run() -> list[tuple[grpc.StatusCode, str, float]]:
            return await asyncio.gather(_noop_stream(srv.target, flush=False),
                                        _noop_stream(srv.target, flush=True))
        for code, details, took in asyncio.run(run()):
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "do not count" in details
            assert 0.55 < took < 1.5, took
        assert wait_released(srv)[0].idle


def _first_reply(target: str, cfg: pb.StreamConfig) -> tuple[str, str]:
    """("ready", "") or (status name, details) for a stream with this config."""
    with grpc.insecure_channel(target) as ch:
        call = pb_grpc.SeamcutStub(ch).StreamCuts(iter([pb.ClientMessage(config=cfg)]),
                                                  timeout=10)
        try:
            for msg in call:
                return msg.WhichOneof("msg"), ""
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or ""
    return "OK", ""


def _fmt(rate: int = 16000, channels: int = 1, enc: int = pb.PCM_S16LE) -> pb.AudioFormat:
    return pb.AudioFormat(encoding=enc, sample_rate_hz=rate, channels=channels)


def test_client_strings_are_bounded_in_statuses_and_logs(server: Any,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    big = "x" * 900_000
    cases = [
        pb.StreamConfig(format=_fmt(), mode=pb.SONG,
                        separation=pb.SeparationOptions(backend=big)),
        pb.StreamConfig(format=_fmt(), mode=pb.SONG,
                        separation=pb.SeparationOptions(backend="y" * 65)),
        pb.StreamConfig(format=_fmt(), mode=pb.SONG,
                        separation=pb.SeparationOptions(backend="z" * 64)),  # not loaded
        pb.StreamConfig(format=_fmt(), request_id="r" * 129),
        pb.StreamConfig(format=_fmt(channels=2), mode=pb.SONG, separation=pb.SeparationOptions(
            vocal_stem_channels=[7] * 5000)),
    ]
    with caplog.at_level("INFO"):
        for cfg in cases:
            code, details = _first_reply(server.target, cfg)
            assert code == "INVALID_ARGUMENT", (code, details[:200])
            assert len(details) < 250, details
            assert "x" * 100 not in details
    assert all(len(r.getMessage()) < 400 for r in caplog.records)


def test_refusal_logging_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    with serving() as srv, caplog.at_level("INFO"):
        for _ in range(60):
            assert _first_reply(srv.target, pb.StreamConfig())[0] == "INVALID_ARGUMENT"
        lines = [r for r in caplog.records if "ended: INVALID_ARGUMENT" in r.getMessage()]
        assert len(lines) == 20
        srv.running.servicer.refusals.flush()
        assert any("40 more refused or failed streams" in r.getMessage()
                   for r in caplog.records)
        assert srv.running.servicer.refusals.total["INVALID_ARGUMENT"] == 60


MAXU32 = 2**32 - 1
# (what, a config builder, values that must be accepted, values that must be refused)
FIELD_LIMITS: list[tuple[str, Any, list[Any], list[Any]]] = [
    ("format.sample_rate_hz", lambda v: pb.StreamConfig(format=_fmt(rate=v)),
     [8000, 192000], [0, 7999, 192001, MAXU32]),
    ("format.channels", lambda v: pb.StreamConfig(format=_fmt(channels=v)),
     [1, 8], [0, 9, MAXU32]),
    ("format.encoding", lambda v: pb.StreamConfig(format=_fmt(enc=v)),
     [pb.PCM_S16LE, pb.F32LE], [0, 3, 2**31 - 1]),
    ("mode", lambda v: pb.StreamConfig(format=_fmt(), mode=v), [0, pb.SPEECH], [7, -1]),
    ("start_sample", lambda v: pb.StreamConfig(format=_fmt(), start_sample=v),
     [0, 2**48], [-1, 2**48 + 1, 2**63 - 1, -(2**63)]),
    ("request_id", lambda v: pb.StreamConfig(format=_fmt(), request_id=v),
     ["", "r" * 128, "é" * 64], ["r" * 129, "é" * 65]),
    ("policy.min_segment_ms", lambda v: pb.StreamConfig(
        format=_fmt(), policy=pb.CutPolicy(min_segment_ms=v, max_segment_ms=0)),
     [0, 600_000], [600_001, MAXU32]),
    ("policy.max_segment_ms", lambda v: pb.StreamConfig(
        format=_fmt(), policy=pb.CutPolicy(max_segment_ms=v)),
     [0, 1700, 3_600_000], [1, 1699, 3_600_001, MAXU32]),
    ("policy.min_gap_ms", lambda v: pb.StreamConfig(format=_fmt(), policy=pb.CutPolicy(
        min_gap_ms=v)), [0, 10_000], [10_001, MAXU32]),
    ("policy.min_pause_ms", lambda v: pb.StreamConfig(format=_fmt(), policy=pb.CutPolicy(
        min_pause_ms=v, pause_search_ms=5000)), [100, 5000], [99, 5001, MAXU32]),
    ("policy.pause_search_ms", lambda v: pb.StreamConfig(format=_fmt(), policy=pb.CutPolicy(
        pause_search_ms=v, max_segment_ms=0)), [300, 10_000], [299, 10_001, MAXU32]),
    ("policy.vad_threshold", lambda v: pb.StreamConfig(format=_fmt(), policy=pb.CutPolicy(
        vad_threshold=v)), [0.05, 0.95],
     [0.0, 0.04, 0.96, 1.0, float("nan"), float("inf"), -float("inf")]),
    ("events.progress_interval_ms", lambda v: pb.StreamConfig(
        format=_fmt(), events=pb.EventOptions(progress_interval_ms=v)),
     [0, 1000], [1001, MAXU32]),
    ("separation.window_hop_ms", lambda v: pb.StreamConfig(
        format=_fmt(channels=2), mode=pb.SONG, separation=pb.SeparationOptions(
            vocal_stem_channels=[0], window_hop_ms=v)),
     [0, 60_000], [60_001, MAXU32]),
    ("separation.vocal_stem_channels", lambda v: pb.StreamConfig(
        format=_fmt(channels=2), mode=pb.SONG, separation=pb.SeparationOptions(
            vocal_stem_channels=v)),
     [[0], [1]], [[2], [0, 1], [0, 0], [MAXU32]]),
]


@pytest.mark.parametrize("what,build,good,bad", FIELD_LIMITS, ids=[f[0] for f in FIELD_LIMITS])
def test_every_config_field_at_and_past_its_limits(server: Any, what: str, build: Any,
                                                   good: list[Any], bad: list[Any]) -> None:
    for v in good:
        assert _first_reply(server.target, build(v)) == ("ready", ""), (what, v)
    for v in bad:
        code, details = _first_reply(server.target, build(v))
        assert code == "INVALID_ARGUMENT", (what, v, code, details)
        assert len(details) < 250 and what.rsplit(".", maxsplit=1)[-1] in details, details


def test_the_largest_start_sample_streams_without_error(server: Any) -> None:
    cfg = pb.StreamConfig(format=_fmt(), start_sample=2**48)
    audio = (np.sin(np.arange(48000) * 0.05) * 8000).astype("<i2").tobytes()
    msgs = [pb.ClientMessage(config=cfg), pb.ClientMessage(audio=pb.AudioChunk(seq=0,
                                                                               data=audio))]
    with grpc.insecure_channel(server.target) as ch:
        replies = list(pb_grpc.SeamcutStub(ch).StreamCuts(iter(msgs), timeout=30))
    cuts = [m.cut.sample for m in replies if m.WhichOneof("msg") == "cut"]
    assert cuts and all(c >= 2**48 for c in cuts)
    assert replies[-1].WhichOneof("msg") == "summary"


# ---------------------------------------------------------------- health watches, memory


def test_health_watch_streams_are_capped() -> None:
    with serving(max_health_watches=3) as srv:
        async def run() -> None:
            async with grpc.aio.insecure_channel(srv.target) as ch:
                stub = health_pb2_grpc.HealthStub(ch)
                held = [stub.Watch(health_pb2.HealthCheckRequest()) for _ in range(3)]
                for call in held:
                    assert (await call.read()).status == health_pb2.HealthCheckResponse.SERVING
                extra = stub.Watch(health_pb2.HealthCheckRequest())
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await extra.read()
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "max_health_watches = 3" in (info.value.details() or "")
                assert dict(info.value.trailing_metadata() or ())["retry-after-ms"] == "1000"
                held[0].cancel()
                await asyncio.sleep(0.2)
                again = stub.Watch(health_pb2.HealthCheckRequest())
                assert (await again.read()).status == health_pb2.HealthCheckResponse.SERVING
                for call in (*held, again):
                    call.cancel()
        asyncio.run(run())


def test_buffered_audio_is_budgeted_by_bytes_not_streams() -> None:
    """A 192 kHz 8-channel f32 stream is 1.97 MB per 320 ms block: with 4 MiB per
    stream it gets 2 blocks in flight, where 16 kHz mono gets the configured 64; the
    server refuses a stream once the reservations would pass max_buffered_mib."""
    with serving(stream_buffer_mib=4, max_buffered_mib=5) as srv:
        hi = pb.StreamConfig(format=_fmt(rate=192000, channels=8, enc=pb.F32LE))
        lo = pb.StreamConfig(format=_fmt())

        async def run() -> None:
            async with grpc.aio.insecure_channel(srv.target) as ch:
                stub = pb_grpc.SeamcutStub(ch)
                gate = asyncio.Event()

                async def hold(cfg: pb.StreamConfig) -> Any:
                    yield pb.ClientMessage(config=cfg)
                    await gate.wait()

                first = stub.StreamCuts(hold(hi))
                assert (await first.read()).WhichOneof("msg") == "ready"
                (session,) = srv.running.servicer.sessions
                assert session.max_inflight == 2
                second = stub.StreamCuts(hold(hi))
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await second.read()
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "max_buffered_mib = 5" in (info.value.details() or "")
                small = stub.StreamCuts(hold(lo))
                assert (await small.read()).WhichOneof("msg") == "ready"
                assert max(s.max_inflight for s in srv.running.servicer.sessions) == 64
                gate.set()
                for call in (first, small):
                    while await call.read() is not grpc.aio.EOF:
                        pass
        asyncio.run(run())
        assert wait_released(srv)[0].idle
