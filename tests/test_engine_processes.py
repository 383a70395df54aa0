"""Engine processes: streaming == offline across the process boundary, replay after an
engine is SIGKILLed, and stage failures that fail only the requests concerned."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seamcut.server.config import AppConfig, Encoding
from seamcut.server.engine.client import InprocEngine

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.corpus import default_corpus
from tests.engine_proc import EngineProc, engine_server
from tests.helpers import (
    ServerThread,
    audio_msgs,
    config_msg,
    cut_samples,
    encode,
    run_stream,
    serving,
    slice_bytes,
    wait_released,
)
from tests.test_song import EXCERPT, SONG, song_msgs
from tests.test_streaming_property import AUDIO, RATE, offline_cuts

pytestmark = pytest.mark.integration
PCM = encode(AUDIO, Encoding.PCM_S16LE)
CLIPS = default_corpus()
SHORT = next(c for c in CLIPS if c.sample_rate_hz == 16000 and c.channels == 1)


@pytest.fixture(scope="module")
def proc_server() -> Iterator[tuple[ServerThread, EngineProc]]:
    with engine_server() as pair:
        yield pair


@pytest.fixture(scope="module")
def inline_reference(app_cfg: AppConfig, engine: InprocEngine) -> list[int]:
    """The file cut by ``--offline`` (the in-process engine), 5 s messages."""
    return offline_cuts(app_cfg, engine, PCM, 2, [5 * RATE], RATE, 1, Encoding.PCM_S16LE)


sizes = st.lists(st.one_of(st.integers(1, 16), st.integers(17, 4000),
                           st.integers(4001, 3 * RATE)), min_size=1, max_size=10,
                 ).filter(lambda s: sum(s) / len(s) >= 300)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(split=sizes)
def test_process_engine_over_grpc_equals_inline_offline(
    split: list[int], proc_server: tuple[ServerThread, EngineProc], inline_reference: list[int]
) -> None:
    srv, _ = proc_server
    msgs = [config_msg(rate=RATE), *audio_msgs(slice_bytes(PCM, 2, split))]
    assert cut_samples(run_stream(srv.target, msgs)) == inline_reference


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(split=st.lists(st.one_of(st.integers(1, 64), st.integers(65, 30_000),
                                st.integers(30_001, 100_000)), min_size=1, max_size=8)
       .filter(lambda s: sum(s) / len(s) >= 2000))
def test_song_over_a_process_engine_equals_inline(
    split: list[int], proc_server: tuple[ServerThread, EngineProc], server: ServerThread
) -> None:
    srv, _ = proc_server
    inline = cut_samples(run_stream(server.target, song_msgs(SONG, [SONG.sample_rate_hz],
                                                             EXCERPT)))
    got = cut_samples(run_stream(srv.target, song_msgs(SONG, split, EXCERPT)))
    assert got == inline and len(inline) >= 2


def paced(msgs: list[pb.ClientMessage], gap_s: float) -> Iterator[pb.ClientMessage]:
    for m in msgs:
        yield m
        time.sleep(gap_s)


def test_engine_sigkill_mid_stream_replays_every_stream_exactly(
    inline_reference: list[int], server: ServerThread
) -> None:
    speech = [config_msg(rate=RATE), *audio_msgs(slice_bytes(PCM, 2, [RATE // 10]))]
    song = song_msgs(SONG, [SONG.sample_rate_hz // 5], EXCERPT)
    song_solo = cut_samples(run_stream(server.target, song))
    with engine_server() as (srv, engine):
        outs: dict[int, list[pb.ServerMessage]] = {}

        def go(i: int) -> None:
            msgs = song if i == 0 else speech
            with grpc.insecure_channel(srv.target) as ch:
                outs[i] = list(pb_grpc.SeamcutStub(ch).StreamCuts(
                    paced(msgs, 0.025 if i else 0.05), timeout=120))

        threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.5)  # every stream is mid-way, with requests at the engine
        killed_at = time.monotonic()
        engine.kill()
        engine.start()  # the supervisor's part: a new engine on the same endpoint
        restarted_s = time.monotonic() - killed_at
        for t in threads:
            t.join(120)
        client = srv.running.engine
        assert client.restarts == 1  # type: ignore[attr-defined]
        for i, out in outs.items():
            assert cut_samples(out) == (song_solo if i == 0 else inline_reference), i
            notices = [m.notice.code for m in out if m.WhichOneof("msg") == "notice"]
            assert notices == ["engine_restart", "engine_resumed"], (i, notices)
        counts, _ = wait_released(srv)
        assert counts.idle, counts
        assert client.in_flight == 0 and not client.links[0].pending  # type: ignore[attr-defined]
        print(f"\nengine restarted in {restarted_s:.2f} s; 6 streams replayed exactly")


def stream_clip(target: str, audio: bytes, chunk: int = 3200) -> list[pb.ServerMessage]:
    chunks = [audio[i:i + chunk] for i in range(0, len(audio), chunk)]
    return run_stream(target, [config_msg(), *audio_msgs(chunks)])


def health(target: str) -> int:
    with grpc.insecure_channel(target) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                    timeout=10)
    return int(resp.status)


@pytest.mark.parametrize("stage", ["s2", "s3"])
def test_a_stage_error_fails_only_the_stream_concerned(stage: str) -> None:
    """Block 40 (12.8 s) exists only in the long stream: its request raises in the
    stage; the short streams, batched with it, keep their exact cuts."""
    short = encode(SHORT.audio, Encoding.PCM_S16LE)
    long = PCM * 2  # ~45 s
    with serving() as ref:
        solo = cut_samples(stream_clip(ref.target, short))
    with serving(engine={"test_fault": f"{stage}@40"}) as srv:
        results: dict[str, object] = {}

        def go(name: str, audio: bytes) -> None:
            try:
                results[name] = cut_samples(stream_clip(srv.target, audio, 32000))
            except grpc.RpcError as exc:
                results[name] = exc

        threads = [threading.Thread(target=go, args=("long", long))] + [
            threading.Thread(target=go, args=(f"short{i}", short)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        err = results["long"]
        assert isinstance(err, grpc.RpcError)
        assert err.code() is grpc.StatusCode.INTERNAL
        assert "injected fault in" in str(err.details()) and "session" in str(err.details())
        for i in range(4):
            assert results[f"short{i}"] == solo
        assert srv.running.engine.pipeline.errors >= 1  # type: ignore[attr-defined]
        assert health(srv.target) == health_pb2.HealthCheckResponse.SERVING
        assert cut_samples(stream_clip(srv.target, short)) == solo  # it goes on serving


def test_a_dead_stage_is_reported_and_health_goes_not_serving() -> None:
    with serving(engine={"test_fault": "s2@40!"}) as srv:
        with pytest.raises(grpc.RpcError) as info:
            stream_clip(srv.target, PCM * 2, 32000)
        assert info.value.code() is grpc.StatusCode.INTERNAL
        assert "injected fault" in str(info.value.details())
        assert health(srv.target) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as info:  # new streams learn why at once
            stream_clip(srv.target, PCM)
        assert "died" in str(info.value.details())


def test_traces_and_summary_name_the_engine_and_the_ipc_time(
    proc_server: tuple[ServerThread, EngineProc]
) -> None:
    srv, engine = proc_server
    assert engine.proc is not None
    out = run_stream(srv.target, [config_msg(rate=RATE),
                                  *audio_msgs(slice_bytes(PCM, 2, [RATE // 10]))])
    traces = [m.trace for m in out if m.WhichOneof("msg") == "trace"]
    summary = next(m.summary for m in out if m.WhichOneof("msg") == "summary")
    with grpc.insecure_channel(srv.target) as ch:
        caps = pb_grpc.SeamcutStub(ch).GetCapabilities(pb.GetCapabilitiesRequest())
    assert (summary.engine_id, summary.engine_pid) == ("engine-0", engine.proc.pid)
    assert summary.instance_id == caps.instance_id and summary.device == "cpu"
    assert [(e.id, e.pid, e.serving) for e in caps.engines] == [
        ("engine-0", engine.proc.pid, True)]
    # Every block crossed the process boundary twice; none ran a GPU pipeline.
    assert traces and all(t.ipc_ms > 0 and not t.gpu_pipeline_used for t in traces)
    assert all(t.total_ms >= t.vad_ms for t in traces)
