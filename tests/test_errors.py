"""Every bad input maps to the right status with an actionable message; nothing leaks."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from seamcut.server.config import Encoding

from seamcut.v1 import seamcut_pb2 as pb
from tests.corpus import default_corpus
from tests.helpers import ServerThread, audio_msgs, config_msg, cut_samples, encode, run_stream

pytestmark = pytest.mark.integration
CODE = grpc.StatusCode


def expect_error(target: str, msgs: list[pb.ClientMessage]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        run_stream(target, msgs)
    return info.value


def audio(seq: int, data: bytes) -> pb.ClientMessage:
    return pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=data))


@pytest.mark.parametrize(
    "rate,channels,encoding,needle",
    [
        (0, 1, pb.PCM_S16LE, "sample_rate_hz"),
        (7999, 1, pb.PCM_S16LE, "8000 ..= 192000"),
        (192001, 1, pb.PCM_S16LE, "sample_rate_hz"),
        (2**31 - 1, 1, pb.PCM_S16LE, "sample_rate_hz"),
        (16000, 0, pb.PCM_S16LE, "channels"),
        (16000, 9, pb.PCM_S16LE, "1 ..= 8"),
        (16000, 1, pb.ENCODING_UNSPECIFIED, "encoding"),
        (16000, 1, 7, "encoding"),
    ],
)
def test_bad_format_is_invalid_argument(
    server: ServerThread, rate: int, channels: int, encoding: int, needle: str
) -> None:
    err = expect_error(server.target, [config_msg(rate=rate, channels=channels,
                                                  encoding=encoding)])
    assert err.code() == CODE.INVALID_ARGUMENT
    assert needle in err.details()


@pytest.mark.parametrize(
    "policy,needle",
    [
        ({"min_pause_ms": 50}, "policy.min_pause_ms"),
        ({"pause_search_ms": 200}, "policy.pause_search_ms"),
        ({"max_segment_ms": 1200}, "policy.max_segment_ms"),
        ({"vad_threshold": 1}, "policy.vad_threshold"),
    ],
)
def test_bad_policy_is_invalid_argument(server: ServerThread, policy: dict[str, int],
                                        needle: str) -> None:
    err = expect_error(server.target, [config_msg(**policy)])
    assert err.code() == CODE.INVALID_ARGUMENT and needle in err.details()


def test_missing_format_and_song_options(server: ServerThread) -> None:
    err = expect_error(server.target, [pb.ClientMessage(config=pb.StreamConfig())])
    assert err.code() == CODE.INVALID_ARGUMENT and "config.format" in err.details()


@pytest.mark.parametrize(
    "msgs,code,needle",
    [
        ([audio(0, b"\0\0")], CODE.FAILED_PRECONDITION, "first message must be StreamConfig"),
        ([pb.ClientMessage()], CODE.FAILED_PRECONDITION, "first message"),
        ([], CODE.FAILED_PRECONDITION, "ended before StreamConfig"),
        ([config_msg(), config_msg()], CODE.FAILED_PRECONDITION, "only once"),
        ([config_msg(), audio(1, b"\0\0")], CODE.ABORTED, "expected 0"),
        ([config_msg(), audio(0, b""), audio(2, b"")], CODE.ABORTED, "gap; expected 1"),
        ([config_msg(), audio(0, b""), audio(0, b"")], CODE.ABORTED, "duplicate"),
        ([config_msg(), audio(0, b"\0\0\0")], CODE.INVALID_ARGUMENT, "whole number of frames"),
        ([config_msg(channels=2), audio(0, b"\0\0\0\0\0\0")], CODE.INVALID_ARGUMENT,
         "4 bytes per frame"),
        ([config_msg(), audio(0, b"\0\0" * 160_001)], CODE.INVALID_ARGUMENT, "10000 ms limit"),
    ],
)
def test_protocol_violations(server: ServerThread, msgs: list[pb.ClientMessage], code: CODE,
                             needle: str) -> None:
    err = expect_error(server.target, msgs)
    assert err.code() == code, err.details()
    assert needle in err.details()


def test_sequence_error_names_last_accepted(server: ServerThread) -> None:
    err = expect_error(server.target, [config_msg(), audio(0, b""), audio(1, b""),
                                       audio(5, b"")])
    meta = dict(err.trailing_metadata() or ())
    assert meta["last-accepted-seq"] == "1" and "last accepted: 1" in err.details()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 100.0])
def test_non_finite_or_huge_float_is_invalid(server: ServerThread, value: float) -> None:
    x = np.zeros(1600, np.float32)
    x[777] = value
    err = expect_error(server.target, [config_msg(encoding=pb.F32LE), audio(0, x.tobytes())])
    assert err.code() == CODE.INVALID_ARGUMENT
    assert "frame 777" in err.details() or "exceeds" in err.details()


def test_int16_declared_as_float_is_caught(server: ServerThread) -> None:
    speech = default_corpus()[0]
    data = encode(speech.audio[:16000], Encoding.PCM_S16LE)
    err = expect_error(server.target, [config_msg(encoding=pb.F32LE), audio(0, data)])
    assert err.code() == CODE.INVALID_ARGUMENT


def test_oversized_message_is_refused_by_transport(server: ServerThread) -> None:
    err = expect_error(server.target, [config_msg(), audio(0, b"\0\0" * (600_000))])
    assert err.code() == CODE.RESOURCE_EXHAUSTED


def test_zero_length_chunks_are_no_ops(server: ServerThread) -> None:
    clip = default_corpus()[0]
    data = encode(clip.audio, Encoding.PCM_S16LE)
    plain = run_stream(server.target, [config_msg(), *audio_msgs([data[i:i + 32000] for i in
                                                                 range(0, len(data), 32000)])])
    chunks = []
    for i in range(0, len(data), 32000):
        chunks += [b"", data[i:i + 32000], b""]
    padded = run_stream(server.target, [config_msg(), *audio_msgs(chunks)])
    assert cut_samples(padded) == cut_samples(plain) and len(cut_samples(plain)) > 2


def test_long_silence_then_speech_still_cuts(server: ServerThread) -> None:
    """10 minutes of digital silence must not wedge the detector."""
    clip = default_corpus()[0]  # 16 kHz mono
    speech = encode(clip.audio, Encoding.PCM_S16LE)
    silence = b"\0\0" * (16000 * 600)
    t0 = time.perf_counter()
    msgs = [config_msg(max_segment_ms=0)]
    data = silence + speech
    msgs += audio_msgs([data[i:i + 320000] for i in range(0, len(data), 320000)])
    out = run_stream(server.target, msgs, timeout=300)
    cuts = cut_samples(out)
    offset = 16000 * 600
    assert time.perf_counter() - t0 < 120
    expected = [(a + offset, b + offset) for a, b in clip.pauses if b - a >= 8000]
    for a, b in expected:
        assert any(a <= c <= b for c in cuts), ((a, b), cuts)


def test_dc_offset_and_clipping_do_not_break_cuts(server: ServerThread) -> None:
    clip = default_corpus()[0]
    x = np.clip(clip.audio * 4.0 + 0.2, -1, 1).astype(np.float32)  # hard clip + DC
    data = encode(x, Encoding.F32LE)
    out = run_stream(server.target, [config_msg(encoding=pb.F32LE),
                                     *audio_msgs([data[i:i + 512000]
                                                  for i in range(0, len(data), 512000)])])
    cuts = cut_samples(out)
    inner = cuts[:-1]
    assert not [c for c in inner if any(a < c < b for a, b in clip.speech)]
    long = [(a, b) for a, b in clip.pauses if b - a >= 8000]
    assert all(any(a <= c <= b for c in inner) for a, b in long)


def test_errors_leave_no_open_sessions(server: ServerThread) -> None:
    for _ in range(5):
        expect_error(server.target, [config_msg(), audio(3, b"")])
    deadline = time.time() + 5
    while server.running.servicer.counters.sessions_open and time.time() < deadline:
        time.sleep(0.05)
    assert server.running.servicer.counters.sessions_open == 0
    assert server.running.engine.in_flight == 0
