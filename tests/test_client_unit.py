"""The client SDK and ``seamcut split`` without a server: wire encoding, lossless
segment writing, StreamOptions <-> protobuf, event conversion, CLI parsing and output.

The last section drives AsyncClient and Client against a scripted fake servicer on
127.0.0.1 (marked integration): ordering, seq and timestamps, flush routing, statuses
with trailing metadata, and back-pressure, none of which a real server shows on demand.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Generator, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from seamcut.client import (
    AsyncClient,
    AudioError,
    Client,
    CutEvent,
    FlushedEvent,
    NoticeEvent,
    ProgressEvent,
    ReadyEvent,
    SeamcutStreamError,
    StageStats,
    StreamClosedError,
    StreamOptions,
    SummaryEvent,
    TraceEvent,
    VadSegmentEvent,
    decode,
    encode,
    event_from_proto,
    explain,
    probe,
    write_segments,
)
from seamcut.client import split as split_cli
from seamcut.client.audio import read_for_wire, segment_bounds, to_wire
from seamcut.client.errors import (
    ConnectionFailed,
    InvalidConfig,
    ServerBusy,
    ServerDraining,
    TlsError,
    rpc_error,
)
from seamcut.client.stream import status_now
from seamcut.client.table import (
    LATENCY_HELP,
    build_report,
    format_row,
    format_time,
    report_json,
    summary_line,
)
from seamcut.client.targets import with_default_port

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc

T = TypeVar("T")
POLICY = ("min_segment_ms", "max_segment_ms", "min_gap_ms", "min_pause_ms", "pause_search_ms",
          "vad_threshold")
EVENTS = ("vad_segments", "chunk_traces", "progress")


def frames_strategy(dtype: str, channels: int, max_frames: int = 2000) -> Any:
    elements = (st.integers(-32768, 32767) if dtype == "int16"
                else st.floats(-1.5, 1.5, width=32, allow_nan=False))
    return hnp.arrays(dtype, st.tuples(st.integers(0, max_frames), st.just(channels)),
                      elements=elements)


# ---------------------------------------------------------------- wire encoding


@pytest.mark.unit
@settings(max_examples=50, deadline=None)
@given(data=st.data(), channels=st.sampled_from([1, 2]))
def test_int16_round_trips_exactly_in_both_encodings(data: st.DataObject, channels: int) -> None:
    x = data.draw(frames_strategy("int16", channels))
    pcm = encode(x, "pcm_s16le")
    assert len(pcm) == x.size * 2
    np.testing.assert_array_equal(decode(pcm, "pcm_s16le", channels), x)
    f32 = decode(encode(x, "f32le"), "f32le", channels)
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(f32 * 32768, x.astype(np.float32))  # /32768 is exact


@pytest.mark.unit
@settings(max_examples=50, deadline=None)
@given(data=st.data(), channels=st.sampled_from([1, 2]))
def test_float_round_trips(data: st.DataObject, channels: int) -> None:
    x = data.draw(frames_strategy("float32", channels))
    np.testing.assert_array_equal(decode(encode(x, "f32le"), "f32le", channels), x)
    ints = decode(encode(x, "pcm_s16le"), "pcm_s16le", channels)
    expect = np.clip(np.rint(x.astype(np.float64) * 32768), -32768, 32767)
    np.testing.assert_array_equal(ints, expect.astype(np.int16))


@pytest.mark.unit
def test_encode_interleaves_and_clips() -> None:
    stereo = np.array([[0.0, 1.0], [-1.0, 2.0], [0.5, -3.0]], dtype=np.float32)
    ints = np.frombuffer(encode(stereo, "pcm_s16le"), "<i2")
    assert ints.tolist() == [0, 32767, -32768, 32767, 16384, -32768]
    mono = np.array([1, -2, 3], dtype=np.int16)
    expect = b"\x01\x00\xfe\xff\x03\x00"
    assert encode(mono, "pcm_s16le") == encode(mono[:, None], "pcm_s16le") == expect


@pytest.mark.unit
@pytest.mark.parametrize("bad", [np.array([np.nan], np.float32), np.array([1], np.int32),
                                 np.zeros((2, 2, 2), np.float32)])
def test_encode_rejects_ambiguous_or_broken_audio(bad: np.ndarray) -> None:
    with pytest.raises(AudioError):
        encode(bad, "pcm_s16le")


@pytest.mark.unit
def test_to_wire_checks_frames_against_the_stream() -> None:
    stereo = np.zeros((3, 2), np.float32)
    assert to_wire(stereo, "f32le", 2) == bytes(24)
    assert to_wire(bytearray(8), "pcm_s16le", 2) == bytes(8)
    for audio, channels in ((stereo, 1), (np.zeros(4, np.float32), 2), (bytes(6), 2)):
        with pytest.raises(AudioError):
            to_wire(audio, "pcm_s16le", channels)


# ---------------------------------------------------------------- segments


@pytest.mark.unit
@settings(max_examples=100, deadline=None)
@given(frames=st.integers(0, 5000), cuts=st.lists(st.integers(0, 5000), max_size=12))
def test_segment_bounds_tile_the_audio(frames: int, cuts: list[int]) -> None:
    cuts = [c for c in cuts if c <= frames]
    bounds = segment_bounds(cuts, frames)
    assert [b for _, b in bounds[:-1]] == sorted({c for c in cuts if 0 < c < frames})
    if frames:
        assert bounds[0][0] == 0 and bounds[-1][1] == frames
        assert all(a < b for a, b in bounds)
        assert all(b == a2 for (_, b), (a2, _) in itertools.pairwise(bounds))
    else:
        assert bounds == []


@pytest.mark.unit
def test_segment_bounds_rejects_cuts_outside_and_honours_start_sample() -> None:
    with pytest.raises(AudioError, match="outside"):
        segment_bounds([11], 10)
    assert segment_bounds([1005, 1010], 10, start_sample=1000) == [(0, 5), (5, 10)]


@pytest.mark.unit
@settings(max_examples=30, deadline=None)
@given(data=st.data(), channels=st.sampled_from([1, 2]),
       kind=st.sampled_from([("int16", "WAV", "PCM_16"), ("int16", "FLAC", "PCM_16"),
                             ("float32", "WAV", "FLOAT")]))
def test_write_segments_concatenate_to_the_input_exactly(
    data: st.DataObject, channels: int, kind: tuple[str, str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    dtype, fmt, subtype = kind
    x = data.draw(frames_strategy(dtype, channels, max_frames=3000).filter(lambda a: len(a) > 0))
    cuts = data.draw(st.lists(st.integers(0, len(x)), max_size=10))
    cuts = [*cuts, len(x)]  # the END cut, as the server sends it
    tmp = tmp_path_factory.mktemp("seg")
    src = tmp / f"in.{fmt.lower()}"
    sf.write(str(src), x, 16000, format=fmt, subtype=subtype)
    for source, out in ((src, tmp / "from_file"), (x, tmp / "from_array")):
        paths = write_segments(source, cuts, out, sample_rate_hz=16000, format=fmt)
        assert [p.name for p in paths] == [
            f"{i:04d}.{fmt.lower()}" for i in range(len(segment_bounds(cuts, len(x))))
        ]
        assert all(probe(p).subtype == subtype for p in paths)
        pieces = [sf.read(str(p), dtype=dtype, always_2d=True)[0] for p in paths]
        np.testing.assert_array_equal(np.concatenate(pieces), x)


@pytest.mark.unit
def test_24_bit_pcm_splits_losslessly(tmp_path: Path) -> None:
    x = (np.arange(-500, 500, dtype=np.int32) * 8191 << 8).reshape(-1, 2)  # 24-bit values
    src = tmp_path / "in.wav"
    sf.write(str(src), x, 48000, subtype="PCM_24")
    assert probe(src).wire_encoding == "f32le"
    sent, _ = read_for_wire(src)  # what split sends: float32, exact for 24 bits
    assert sent.dtype == np.float32
    np.testing.assert_array_equal(sent.astype(np.float64) * 2.0**31, x)
    paths = write_segments(src, [100, 250, 500], tmp_path / "out")
    got = np.concatenate([sf.read(str(p), dtype="int32")[0] for p in paths])
    np.testing.assert_array_equal(got, x)


# ---------------------------------------------------------------- options and events


@pytest.mark.unit
def test_stream_options_leave_unset_fields_unset() -> None:
    msg = StreamOptions(sample_rate_hz=44100, channels=2).to_proto()
    assert (msg.format.encoding, msg.format.sample_rate_hz, msg.format.channels) == (
        pb.PCM_S16LE, 44100, 2)
    assert msg.mode == pb.MODE_UNSPECIFIED
    assert not any(msg.policy.HasField(f) for f in POLICY)
    assert not any(msg.events.HasField(f) for f in EVENTS)
    assert not msg.HasField("separation")


@pytest.mark.unit
def test_stream_options_set_fields_round_trip_including_zero() -> None:
    opts = StreamOptions(
        sample_rate_hz=8000, encoding="f32le", mode="song", min_segment_ms=0, max_segment_ms=0,
        min_gap_ms=500, min_pause_ms=250, pause_search_ms=900, vad_threshold=0.25,
        vad_segments=True, chunk_traces=False, progress=False, request_id="r1",
        start_sample=123,
    )
    msg = opts.to_proto()
    assert all(msg.policy.HasField(f) for f in POLICY)  # 0 is a value, not "unset"
    assert msg.events.chunk_traces is False and msg.events.HasField("chunk_traces")
    assert (msg.format.encoding, msg.mode) == (pb.F32LE, pb.SONG)
    assert StreamOptions.from_proto(msg) == opts


@pytest.mark.unit
@pytest.mark.parametrize("kwargs", [{"encoding": "s16"}, {"mode": "music"}, {"channels": 0}])
def test_stream_options_reject_values_the_client_cannot_encode(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        StreamOptions(sample_rate_hz=16000, **kwargs)


@pytest.mark.unit
def test_events_convert_from_protobuf() -> None:
    config = StreamOptions(sample_rate_hz=16000, min_pause_ms=300, progress=True)
    progress = pb.Progress(samples_received=10, samples_processed=8, samples_final=5, last_seq=2)
    cases: list[tuple[pb.ServerMessage, object]] = [
        (pb.ServerMessage(ready=pb.Ready(session_id="s", config=config.to_proto(),
                                         lookahead_ms=1048, lookahead_samples=16768,
                                         block_ms=320, device="cpu", server_version="9")),
         ReadyEvent(session_id="s", lookahead_ms=1048, lookahead_samples=16768, block_ms=320,
                    device="cpu", server_version="9", config=config)),
        (pb.ServerMessage(cut=pb.CutPoint(sample=31680, seconds=1.98, kind=pb.FORCED, score=0.5,
                                          pause_start_sample=30000, pause_end_sample=33000,
                                          index=3)),
         CutEvent(sample=31680, seconds=1.98, kind="forced", score=0.5,
                  pause_start_sample=30000, pause_end_sample=33000, index=3)),
        (pb.ServerMessage(vad_segment=pb.VadSegment(start_sample=1, end_sample=9,
                                                    mean_probability=0.75)),
         VadSegmentEvent(start_sample=1, end_sample=9, mean_probability=0.75)),
        (pb.ServerMessage(progress=progress),
         ProgressEvent(samples_received=10, samples_processed=8, samples_final=5, last_seq=2)),
        (pb.ServerMessage(flushed=pb.Flushed(flush_id=7, progress=progress)),
         FlushedEvent(flush_id=7, progress=ProgressEvent(samples_received=10,
                      samples_processed=8, samples_final=5, last_seq=2))),
        (pb.ServerMessage(notice=pb.Notice(code="draining", message="bye")),
         NoticeEvent(code="draining", message="bye")),
        (pb.ServerMessage(summary=pb.Summary(
            end_reason=pb.COMPLETED, samples_received=10, samples_processed=10, chunks=2,
            blocks=1, cuts=1, vad_segments=0, wall_seconds=0.5,
            stages=[pb.StageStats(stage="vad", p50_ms=1.5, p95_ms=2.5, count=4)])),
         SummaryEvent(end_reason="completed", samples_received=10, samples_processed=10,
                      chunks=2, blocks=1, cuts=1, vad_segments=0, wall_seconds=0.5,
                      stages=(StageStats(stage="vad", p50_ms=1.5, p95_ms=2.5, count=4),))),
    ]
    for msg, expected in cases:
        assert event_from_proto(msg) == expected
    assert event_from_proto(pb.ServerMessage()) is None  # unknown / newer message


@pytest.mark.unit
def test_trace_event_keeps_every_field() -> None:
    t = pb.ChunkTrace(block_index=4, start_sample=10, end_sample=20, first_seq=1, last_seq=2,
                      client_send_time_ns=5, server_receive_time_ns=6, queue_wait_ms=0.5,
                      h2d_ms=0.25, separation_ms=1.0, vad_ms=2.0, features_ms=3.0, d2h_ms=0.125,
                      batch_size=8, separation_batch_size=2, device="cuda:0",
                      gpu_pipeline_used=True, total_ms=7.0)
    ev = event_from_proto(pb.ServerMessage(trace=t))
    assert isinstance(ev, TraceEvent)
    assert {f: getattr(ev, f) for f in TraceEvent.__slots__} == {
        f: getattr(t, f) for f in TraceEvent.__slots__}


class _FakeRpcError(grpc.RpcError):  # type: ignore[misc]
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.RESOURCE_EXHAUSTED

    def details(self) -> str:
        return "at capacity"

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("retry-after-ms", "1500"), ("x", "y"))


@pytest.mark.unit
def test_rpc_errors_keep_code_details_and_hints() -> None:
    err = SeamcutStreamError.from_rpc_error(_FakeRpcError())
    assert isinstance(err, SeamcutStreamError)
    assert (err.code, err.details, err.retry_after_ms, err.last_accepted_seq) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "at capacity", 1500, None)
    assert err.trailing_metadata == {"retry-after-ms": "1500", "x": "y"}
    assert "RESOURCE_EXHAUSTED" in str(err)


class _Pending:
    def __await__(self) -> Generator[None, None, None]:
        yield None  # suspends, like a status that has not arrived


class _Call:
    def __init__(self, code: grpc.StatusCode | None) -> None:
        self._code = code

    async def code(self) -> grpc.StatusCode | None:
        if self._code is None:
            await _Pending()
        return self._code

    async def details(self) -> str:
        return "seq gap"

    async def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("last-accepted-seq", "41"),)


@pytest.mark.unit
def test_status_now_reads_a_finished_call_synchronously() -> None:
    err = status_now(_Call(grpc.StatusCode.ABORTED))
    assert err is not None
    assert (err.code, err.details, err.last_accepted_seq) == (grpc.StatusCode.ABORTED,
                                                              "seq gap", 41)
    assert status_now(_Call(grpc.StatusCode.OK)) is None
    assert status_now(_Call(None)) is None  # still running: nothing read, nothing leaked


# ---------------------------------------------------------------- the split command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    split_cli.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.unit
def test_split_keeps_the_whole_file_for_a_resume() -> None:
    """A SONG stream with separation resumes only from its first sample: split, which
    holds the file anyway, keeps all of it for a resume (at least the SDK's default)."""
    def info(seconds: int) -> split_cli.AudioInfo:
        return split_cli.AudioInfo(path=Path("s.wav"), format="WAV", subtype="PCM_16",
                                   sample_rate_hz=44_100, channels=2, frames=seconds * 44_100)

    args = parse("s.wav", "--server", "127.0.0.1:1,127.0.0.1:2")
    long = split_cli.client_for(["127.0.0.1:1", "127.0.0.1:2"], info(300), args)
    short = split_cli.client_for(["127.0.0.1:1", "127.0.0.1:2"], info(20), args)
    assert long.resume and long.max_replay_s >= 300
    assert short.max_replay_s == split_cli.MAX_REPLAY_S


@pytest.mark.unit
def test_cli_defaults_and_flags() -> None:
    args = parse("a.wav")
    assert (args.file, args.server, args.chunk_ms, args.realtime, args.mode, args.json_out,
            args.segments_dir, args.offline, args.quiet) == (
        "a.wav", "localhost:50051", None, False, None, None, None, False, False)
    assert split_cli.chunk_ms_of(args) == 1000  # a whole file: fewer, larger messages
    assert split_cli.chunk_ms_of(parse("a.wav", "--realtime")) == 100
    assert split_cli.chunk_ms_of(parse("a.wav", "--realtime", "--chunk-ms", "20")) == 20
    args = parse("a.flac", "--server", "h:1", "--chunk-ms", "37", "--realtime", "--mode",
                 "song", "--min-segment", "1.5", "--max-segment", "0", "--min-gap", "0.25",
                 "--min-pause", "0.3", "--json", "o.json", "--segments", "d", "--offline",
                 "--quiet")
    info = split_cli.AudioInfo(path=Path("a.flac"), format="FLAC", subtype="PCM_16",
                               sample_rate_hz=22050, channels=2, frames=100)
    opts = split_cli.options_from_args(args, info)
    assert opts == StreamOptions(
        sample_rate_hz=22050, channels=2, encoding="pcm_s16le", mode="song",
        min_segment_ms=1500, max_segment_ms=0, min_gap_ms=250, min_pause_ms=300,
        chunk_traces=False, request_id=split_cli.REQUEST_ID,
    )
    float_info = split_cli.AudioInfo(path=Path("b.wav"), format="WAV", subtype="FLOAT",
                                     sample_rate_hz=48000, channels=1, frames=0)
    assert split_cli.options_from_args(parse("b.wav"), float_info).encoding == "f32le"


@pytest.mark.unit
@pytest.mark.parametrize("argv", [["a.wav", "--chunk-ms", "0"], ["a.wav", "--chunk-ms", "x"],
                                  ["a.wav", "--min-pause", "-1"], ["a.wav", "--mode", "jazz"],
                                  ["a.wav", "--max-segment", "nan"], []])
def test_cli_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.unit
def test_cli_missing_or_unreadable_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert split_cli.run(parse(str(tmp_path / "missing.wav"))) == 2
    assert "missing.wav: no such file" in capsys.readouterr().err
    (tmp_path / "text.wav").write_text("not audio")
    assert split_cli.run(parse(str(tmp_path / "text.wav"))) == 2
    assert "text.wav: not an audio file" in capsys.readouterr().err
    assert split_cli.run(parse(str(tmp_path))) == 2
    assert "is a directory" in capsys.readouterr().err
    wav = tmp_path / "short.wav"
    sf.write(str(wav), np.zeros(16000, np.int16), 16000, subtype="PCM_16")
    wav.write_bytes(wav.read_bytes()[:16000])
    assert split_cli.run(parse(str(wav))) == 2
    assert "short.wav: truncated" in capsys.readouterr().err


def fake_events() -> list[Any]:
    ready = ReadyEvent(session_id="abc", lookahead_ms=1048, lookahead_samples=16768,
                       block_ms=320, device="cpu",
                       config=StreamOptions(sample_rate_hz=16000, mode="speech"))
    cuts = [CutEvent(sample=s, seconds=s / 16000, kind=k, score=sc, pause_start_sample=s - 10,
                     pause_end_sample=s + 10, index=i)
            for i, (s, k, sc) in enumerate([(31680, "pause", 0.4), (500_000, "forced", 0.1),
                                            (3_725_123, "end", 1.0)])]
    return [ready, ProgressEvent(samples_received=1, samples_processed=1, samples_final=1,
                                 last_seq=0), *cuts]


@pytest.mark.unit
@pytest.mark.parametrize("realtime", [False, True])
def test_json_report_shape(realtime: bool) -> None:
    report = build_report(fake_events(), file="x.flac", sample_rate_hz=16000, channels=1,
                          frames=3_725_123, wall_seconds=2.0, realtime=realtime,
                          latencies_ms={0: 12.5, 2: 3.25} if realtime else None)
    doc = json.loads(json.dumps(report_json(report)))
    assert doc == {
        "file": "x.flac", "sample_rate": 16000, "channels": 1, "frames": 3_725_123,
        "mode": "speech", "session_id": "abc", "lookahead_ms": 1048,
        "cuts": [
            {"sample": 31680, "seconds": 1.98, "kind": "pause", "score": 0.4}
            | ({"final_vs_bound_ms": 12.5} if realtime else {}),
            {"sample": 500_000, "seconds": 31.25, "kind": "forced", "score": 0.1}
            | ({"final_vs_bound_ms": None} if realtime else {}),
            {"sample": 3_725_123, "seconds": 3_725_123 / 16000, "kind": "end", "score": 1.0}
            | ({"final_vs_bound_ms": 3.25} if realtime else {}),
        ],
    } | ({"notes": {"final_vs_bound_ms": " ".join(LATENCY_HELP.split())}} if realtime else {})
    assert summary_line(report) == (
        "3 cuts (1 pause, 1 forced, 1 end) in 232.820 s of audio; wall 2.000 s; "
        "116.4 audio-s/s")
    row = format_row(report.cuts[2], realtime=realtime)
    assert row.split()[:5] == ["2", "00:03:52.820", "3725123", "end", "1.000"]
    assert row.endswith("3 ms") == realtime


@pytest.mark.unit
@pytest.mark.parametrize(("seconds", "text"), [(0, "00:00:00.000"), (1.9996, "00:00:02.000"),
                                               (3725.5, "01:02:05.500")])
def test_format_time(seconds: float, text: str) -> None:
    assert format_time(seconds) == text


@pytest.mark.unit
def test_send_log_reports_when_the_audio_up_to_a_sample_went_out() -> None:
    log = split_cli.SendLog(split_cli.chunk_ends(250, 100), 100)
    assert log.ends == [100, 200, 250]
    log.t0 = 1000.0
    log.record(1001.5)
    assert log.sent_at(0) == log.sent_at(100) == 1001.5  # chunk 0 holds samples 0..99
    assert log.sent_at(101) == 1002.0  # not sent yet: when it is due (t0 + 200 / 100)
    assert log.sent_at(10**9) == 1002.5  # past the end: the last chunk


@pytest.mark.unit
def test_file_chunks_stay_under_the_message_limit() -> None:
    from seamcut.client.sending import MAX_CHUNK_BYTES, chunk_frames_for

    assert chunk_frames_for(16000, 1000, 2) == 16000  # 1 s of 16 kHz mono s16: 32 KB
    big = chunk_frames_for(192000, 1000, 8 * 4)  # 1 s would be 6 MB
    assert big * 32 <= MAX_CHUNK_BYTES < (big + 1) * 32
    assert chunk_frames_for(8000, 1) == 8 and chunk_frames_for(8000, 0) == 1


@pytest.mark.unit
def test_stream_error_messages() -> None:
    refused = rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all "
                        "addresses; Connection refused", answered=False)
    assert isinstance(refused, ConnectionFailed) and explain.exit_code(refused) == 4
    text = explain.error_line(refused, target="localhost:50051")
    assert text.startswith("error: cannot connect to localhost:50051 — is `seamcut serve` "
                           "running there?")
    tls = rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last "
                    "error: UNKNOWN: ipv4:127.0.0.1:5: Ssl handshake failed: "
                    "CERTIFICATE_VERIFY_FAILED", answered=False)
    assert isinstance(tls, TlsError)
    assert explain.error_line(tls, target="h:5").startswith("error: TLS handshake with h:5")
    drained = rpc_error(grpc.StatusCode.UNAVAILABLE, "server is draining; reconnect to "
                        "another replica", answered=False)
    assert isinstance(drained, ServerDraining) and explain.exit_code(drained) == 1
    busy = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "at capacity",
                     {"retry-after-ms": "1000", "session-id": "s1"})
    assert isinstance(busy, ServerBusy) and busy.session_id == "s1"
    assert explain.error_line(busy, target="t") == (
        "error: at capacity (RESOURCE_EXHAUSTED); retry after 1000 ms")
    bad = rpc_error(grpc.StatusCode.INVALID_ARGUMENT,
                    "policy.max_segment_ms: must be in [1700, 3600000], got 1000")
    assert isinstance(bad, InvalidConfig) and bad.field == "policy.max_segment_ms"
    assert explain.error_line(bad, target="t") == (
        "error: --max-segment: must be in [1.7, 3600] seconds, got 1")
    other = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "policy.vad_threshold: must be in "
                      "[0.05, 0.95], got 0.02")
    assert explain.error_line(other, target="t").endswith("got 0.02 (INVALID_ARGUMENT)")


@pytest.mark.unit
@pytest.mark.parametrize(("given", "target"), [
    ("127.0.0.1", "127.0.0.1:50051"), ("localhost:7", "localhost:7"), ("::1", "[::1]:50051"),
    ("[::1]", "[::1]:50051"), ("[::1]:9", "[::1]:9"), ("dns:///h.example:5", "dns:///h.example:5"),
    ("unix:/tmp/s.sock", "unix:/tmp/s.sock"), ("h.example", "h.example:50051"),
])
def test_a_missing_port_means_50051(given: str, target: str) -> None:
    assert with_default_port(given) == target


# ---------------------------------------------------------------- SDK over a fake server


class FakeServicer(pb_grpc.SeamcutServicer):  # type: ignore[misc]
    """Scripted by StreamConfig.request_id: "" echo, "fail" RESOURCE_EXHAUSTED after Ready,
    "hold" stop reading until ``release`` is set, "hold-fail" then fail with ABORTED."""

    def __init__(self) -> None:
        self.received: list[pb.ClientMessage] = []
        self.release: asyncio.Event | None = None

    async def GetCapabilities(self, request: Any, context: Any) -> pb.Capabilities:
        return pb.Capabilities(server_version="fake", block_ms=320)

    async def StreamCuts(
        self, request_iterator: AsyncIterator[pb.ClientMessage], context: Any
    ) -> AsyncIterator[pb.ServerMessage]:
        first = await request_iterator.__anext__()
        self.received = [first]
        yield pb.ServerMessage(ready=pb.Ready(session_id="fake", config=first.config,
                                              lookahead_samples=100))
        script = first.config.request_id
        if script == "fail":
            context.set_trailing_metadata((("retry-after-ms", "250"),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy")
        if script.startswith("hold"):
            self.release = asyncio.Event()
            await self.release.wait()
        if script == "hold-fail":
            context.set_trailing_metadata((("last-accepted-seq", "3"),))
            await context.abort(grpc.StatusCode.ABORTED, "seq gap")
        frames = 0
        async for msg in request_iterator:
            self.received.append(msg)
            if msg.HasField("audio"):
                frames += len(msg.audio.data) // (2 * first.config.format.channels)
            elif msg.control.HasField("flush"):
                yield pb.ServerMessage(flushed=pb.Flushed(
                    flush_id=msg.control.flush.flush_id,
                    progress=pb.Progress(samples_received=frames)))
        yield pb.ServerMessage(cut=pb.CutPoint(sample=frames, kind=pb.END, score=1.0))
        yield pb.ServerMessage(summary=pb.Summary(end_reason=pb.COMPLETED, cuts=1))


class FakeServer:
    """The fake servicer on 127.0.0.1:<free port>, its event loop on a thread."""

    def __init__(self) -> None:
        self.servicer = FakeServicer()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.port = self.call(self._start())
        self.target = f"127.0.0.1:{self.port}"

    async def _start(self) -> int:
        self.server = grpc.aio.server()
        pb_grpc.add_SeamcutServicer_to_server(self.servicer, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return int(port)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=30)

    def stop(self) -> None:
        self.call(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    srv = FakeServer()
    yield srv
    srv.stop()


@pytest.mark.integration
def test_async_stream_sends_in_order_and_routes_flushes(fake: FakeServer) -> None:
    stereo = np.array([[0.5, -0.5]] * 10, dtype=np.float32)

    async def go() -> list[Any]:
        async with AsyncClient(fake.target) as client:
            assert (await client.get_capabilities()).server_version == "fake"
            async with client.stream(StreamOptions(sample_rate_hz=16000, channels=2)) as s:
                ready = await s.wait_ready()
                assert ready.session_id == "fake" and s.ready == ready
                await s.send(stereo)
                await s.send(b"\x01\x00\x02\x00")
                flushed = await s.flush()
                assert flushed.flush_id == 1 and flushed.progress.samples_received == 11
                await s.close_send()
                events = [ev async for ev in s]
                with pytest.raises(StreamClosedError):
                    await s.send(b"")
                return events

    t0 = time.time_ns()
    events = asyncio.run(go())
    assert [type(e) for e in events] == [ReadyEvent, FlushedEvent, CutEvent, SummaryEvent]
    assert events[2].sample == 11
    sent = fake.servicer.received
    assert sent[0].config == StreamOptions(sample_rate_hz=16000, channels=2).to_proto()
    assert [m.audio.seq for m in sent[1:3]] == [0, 1]
    assert sent[1].audio.data == encode(stereo, "pcm_s16le")
    assert all(t0 <= m.audio.client_send_time_ns <= time.time_ns() for m in sent[1:3])
    assert sent[3].control.flush.flush_id == 1


@pytest.mark.integration
def test_failed_stream_raises_status_with_trailing_metadata(fake: FakeServer) -> None:
    async def go() -> None:
        async with AsyncClient(fake.target) as client, client.stream(
            StreamOptions(sample_rate_hz=16000, request_id="fail")
        ) as s:
            seen = []
            with pytest.raises(SeamcutStreamError) as info:
                async for ev in s:
                    seen.append(ev)
            assert [type(e) for e in seen] == [ReadyEvent]
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (info.value.details, info.value.retry_after_ms) == ("busy", 250)
            with pytest.raises(SeamcutStreamError):
                await s.send(b"\x00\x00")
            with pytest.raises(SeamcutStreamError):
                await s.next_event()  # stays failed

    asyncio.run(go())


@pytest.mark.integration
def test_send_waits_under_back_pressure_without_blocking_reads(fake: FakeServer) -> None:
    chunk = bytes(128_000)  # 4 s: one AudioChunk per send
    total = 500  # 64 MB: far more than any transport buffering

    async def go() -> None:
        async with AsyncClient(fake.target) as client, client.stream(
            StreamOptions(sample_rate_hz=16000, request_id="hold")
        ) as s:
            done = 0

            async def sender() -> None:
                nonlocal done
                for _ in range(total):
                    await s.send(chunk)
                    done += 1
                await s.close_send()

            task = asyncio.create_task(sender())
            assert isinstance(await s.next_event(), ReadyEvent)  # reading works meanwhile
            await asyncio.sleep(1.0)
            assert done < total  # held back, not buffered without bound
            release = fake.servicer.release
            assert release is not None
            fake.loop.call_soon_threadsafe(release.set)
            await asyncio.wait_for(task, 60)
            kinds = [type(ev) async for ev in s]
            assert kinds == [CutEvent, SummaryEvent]

    asyncio.run(go())
    assert len(fake.servicer.received) == total + 1


@pytest.mark.integration
def test_blocked_send_fails_when_the_stream_ends(fake: FakeServer) -> None:
    async def go() -> None:
        async with AsyncClient(fake.target) as client, client.stream(
            StreamOptions(sample_rate_hz=16000, request_id="hold-fail")
        ) as s:
            await s.wait_ready()

            async def sender() -> None:
                while True:
                    await s.send(bytes(128_000))

            task = asyncio.create_task(sender())
            await asyncio.sleep(0.5)
            assert not task.done()  # blocked by back-pressure
            release = fake.servicer.release
            assert release is not None
            fake.loop.call_soon_threadsafe(release.set)
            with pytest.raises(SeamcutStreamError) as info:
                await asyncio.wait_for(task, 30)
            assert info.value.code == grpc.StatusCode.ABORTED
            assert info.value.last_accepted_seq == 3
            with pytest.raises(SeamcutStreamError):
                await s.flush()

    asyncio.run(go())


@pytest.mark.integration
def test_sync_client_matches_async(fake: FakeServer) -> None:
    with Client(fake.target) as client:
        assert client.get_capabilities().server_version == "fake"
        with client.stream(StreamOptions(sample_rate_hz=16000)) as s:
            assert s.wait_ready(10).session_id == "fake"
            s.send(np.zeros(5, dtype=np.int16))
            assert s.flush(10).progress.samples_received == 5
            s.close_send()
            assert [type(e) for e in s.events()] == [
                ReadyEvent, FlushedEvent, CutEvent, SummaryEvent]
        with client.stream(StreamOptions(sample_rate_hz=16000, request_id="fail")) as s:
            with pytest.raises(SeamcutStreamError) as info:
                list(s)
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        with client.stream(StreamOptions(sample_rate_hz=16000, channels=2)) as s, \
                pytest.raises(AudioError, match="channel"):
            s.send(np.zeros(4, dtype=np.float32))
    with pytest.raises(RuntimeError, match="closed"):
        client.get_capabilities()
