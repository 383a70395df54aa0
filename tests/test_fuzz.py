"""A bad stream never hurts another: fuzzed message sequences over real gRPC.

A hypothesis state machine opens streams on a real server and sends them arbitrary
sequences: configs (valid or not), audio of random sizes and formats (partial frames,
NaN/Inf, huge floats, random bytes, chunks over the limits), sequence gaps and
duplicates, flushes, second configs, empty messages, half-closes and cancels. A model
predicts each stream's status (the first violation decides it); a good stream runs
through it all and must give exactly its solo cut points. After every run the server
holds no per-stream resource. A second, pure test fuzzes StreamConfig validation.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from seamcut.server.config import AppConfig, Encoding, load_config
from seamcut.server.errors import ConfigError
from seamcut.server.transport import convert

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.corpus import default_corpus
from tests.helpers import ServerThread, audio_msgs, config_msg, cut_samples, encode, run_stream

pytestmark = pytest.mark.integration
CODE = grpc.StatusCode
MAX_MESSAGE = 1 << 20
MAX_CHUNK_MS = 10_000
GOOD = encode(default_corpus()[0].audio[:16000 * 7], Encoding.PCM_S16LE)  # 7 s, 16 kHz mono
ENCODINGS = {pb.PCM_S16LE: 2, pb.F32LE: 4}


# ---------------------------------------------------------------- one raw stream


class RawStream:
    """A StreamCuts call fed from a queue (sync grpc); a thread collects the answer."""

    def __init__(self, stub: pb_grpc.SeamcutStub) -> None:
        self._q: queue.Queue[pb.ClientMessage | None] = queue.Queue()
        self.call = stub.StreamCuts(iter(self._q.get, None), timeout=60)
        self.msgs: list[pb.ServerMessage] = []
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for m in self.call:
                self.msgs.append(m)
            self.code = CODE.OK
        except grpc.RpcError as exc:
            self.code, self.details = exc.code(), exc.details() or ""

    def send(self, msg: pb.ClientMessage) -> None:
        self._q.put(msg)

    def half_close(self) -> None:
        self._q.put(None)

    def cancel(self) -> None:
        self.call.cancel()
        self._q.put(None)  # frees grpc's request thread if it waits on the queue

    def wait(self, timeout_s: float) -> grpc.StatusCode | None:
        self._thread.join(timeout_s)
        return self.code


@dataclass
class Fuzzed:
    """A fuzzed stream and the model of what the server must answer."""

    raw: RawStream
    frame_bytes: int = 0  # 0 until a valid config was sent
    encoding: int = 0
    rate_hz: int = 0
    started: bool = False
    expected: grpc.StatusCode | None = None  # the first violation's status
    next_seq: int = 0
    half_closed: bool = False
    cancelled: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return not (self.half_closed or self.cancelled)

    def violate(self, code: grpc.StatusCode) -> None:
        if self.expected is None:
            self.expected = code

    def first(self, is_config: bool) -> bool:
        """Account for a message; False if the stream is already decided."""
        if self.expected is not None:
            return False
        if not self.started:
            self.started = True
            if not is_config:
                self.violate(CODE.FAILED_PRECONDITION)
                return False
        return True


# ---------------------------------------------------------------- strategies

valid_formats = st.tuples(st.sampled_from([pb.PCM_S16LE, pb.F32LE]),
                          st.sampled_from([8000, 16000, 44100, 48000]), st.sampled_from([1, 2]))
bad_formats = st.one_of(
    st.tuples(st.just(pb.ENCODING_UNSPECIFIED), st.just(16000), st.just(1)),
    st.tuples(st.just(pb.PCM_S16LE), st.sampled_from([0, 7999, 192001, 2**31 - 1]), st.just(1)),
    st.tuples(st.just(pb.F32LE), st.just(16000), st.sampled_from([0, 9])),
)
payload_kinds = st.sampled_from(["frames", "frames", "frames", "empty", "partial", "nan",
                                 "inf", "huge", "random", "too_long", "oversized"])


def payload(kind: str, fz: Fuzzed, frames: int, seed: int) -> tuple[bytes, grpc.StatusCode | None]:
    """Audio bytes of ``kind`` for ``fz``'s format and the status they must cause."""
    rng = np.random.default_rng(seed)
    fb = max(fz.frame_bytes, 2)
    ch = fb // ENCODINGS.get(fz.encoding, 2)
    if kind == "oversized":  # over the transport's message limit
        return bytes(MAX_MESSAGE + 1), CODE.RESOURCE_EXHAUSTED
    if kind == "too_long":  # over max_chunk_ms, under the message limit where it can be
        n = fz.rate_hz * MAX_CHUNK_MS // 1000 + 1 if fz.rate_hz else 80_001
        size = n * fb
        return bytes(size), (CODE.RESOURCE_EXHAUSTED if size + 16 > MAX_MESSAGE
                             else CODE.INVALID_ARGUMENT)
    if kind == "empty":
        return b"", None
    if kind == "random":
        data = rng.integers(0, 256, frames * fb + int(rng.integers(0, 3)), np.uint8).tobytes()
    else:
        x = (rng.uniform(-0.5, 0.5, (frames, ch)) * np.hanning(frames)[:, None]).astype(np.float32)
        if kind in ("nan", "inf", "huge") and fz.encoding == pb.F32LE and frames:
            x[rng.integers(0, frames), 0] = {"nan": np.nan, "inf": -np.inf, "huge": 100.0}[kind]
        enc = Encoding.F32LE if fz.encoding == pb.F32LE else Encoding.PCM_S16LE
        data = encode(x, enc)
        if kind == "partial":
            data += b"\1" * int(rng.integers(1, fb)) if fb > 1 else b""
    return data, _audio_status(fz, data)


def _audio_status(fz: Fuzzed, data: bytes) -> grpc.StatusCode | None:
    if len(data) % fz.frame_bytes:
        return CODE.INVALID_ARGUMENT
    if fz.encoding == pb.F32LE and data:
        x = np.frombuffer(data, "<f4")
        if not np.isfinite(x).all() or np.abs(x).max() > 64:
            return CODE.INVALID_ARGUMENT
    return None


# ---------------------------------------------------------------- the machine


class StreamFuzz(RuleBasedStateMachine):
    """Fuzzed streams interleaved with one good stream on a shared server."""

    srv: ServerThread  # set by the test
    channel: grpc.Channel
    solo: list[int]

    streams = Bundle("streams")

    @initialize()
    def start_good(self) -> None:
        self.stub = pb_grpc.SeamcutStub(self.channel)
        self.fuzzed: list[Fuzzed] = []
        self.good = RawStream(self.stub)
        self.good.send(config_msg())
        self.good_pos, self.good_seq = 0, 0

    @rule(size=st.integers(1, 40_000))
    def good_audio(self, size: int) -> None:
        if self.good_pos < len(GOOD):
            chunk = GOOD[self.good_pos:self.good_pos + 2 * size]
            self.good.send(pb.ClientMessage(audio=pb.AudioChunk(seq=self.good_seq, data=chunk)))
            self.good_pos += len(chunk)
            self.good_seq += 1

    @rule(target=streams, fmt=st.one_of(valid_formats, valid_formats, valid_formats, bad_formats),
          first=st.sampled_from(["config"] * 7 + ["audio", "flush", "empty"]))
    def open_stream(self, fmt: tuple[int, int, int], first: str) -> Fuzzed:
        fz = Fuzzed(RawStream(self.stub))
        self.fuzzed.append(fz)
        enc, rate, channels = fmt
        fz.log.append(f"open {first} {fmt}")
        if first == "config":
            self._send_config(fz, enc, rate, channels)
        elif first == "audio":
            fz.first(False)
            fz.raw.send(pb.ClientMessage(audio=pb.AudioChunk(seq=0, data=b"\0\0")))
        elif first == "flush":
            fz.first(False)
            fz.raw.send(pb.ClientMessage(control=pb.Control(flush=pb.Flush(flush_id=1))))
        else:
            fz.first(False)
            fz.raw.send(pb.ClientMessage())
        return fz

    def _send_config(self, fz: Fuzzed, enc: int, rate: int, channels: int) -> None:
        if fz.first(True):
            valid = enc in ENCODINGS and 8000 <= rate <= 192_000 and 1 <= channels <= 8
            if fz.frame_bytes:  # a second config
                fz.violate(CODE.FAILED_PRECONDITION)
            elif not valid:
                fz.violate(CODE.INVALID_ARGUMENT)
            else:
                fz.frame_bytes, fz.encoding, fz.rate_hz = ENCODINGS[enc] * channels, enc, rate
        fz.raw.send(config_msg(encoding=enc, rate=rate, channels=channels))

    @rule(fz=streams, kind=payload_kinds, frames=st.integers(0, 5000),
          seed=st.integers(0, 2**32 - 1))
    def audio(self, fz: Fuzzed, kind: str, frames: int, seed: int) -> None:
        if not fz.open:
            return
        fz.log.append(f"audio {kind} {frames}")
        data, status = payload(kind, fz, frames, seed) if fz.frame_bytes else (b"\0\0", None)
        seq = fz.next_seq
        if fz.first(False):
            if status is None:
                fz.next_seq += 1
            else:
                fz.violate(status)
        fz.raw.send(pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=data)))

    @rule(fz=streams, delta=st.sampled_from([-1, 1, 2, 1000]))
    def bad_seq(self, fz: Fuzzed, delta: int) -> None:
        if not fz.open:
            return
        if delta < 0 and fz.next_seq == 0:
            delta = 1  # no seq before 0: a gap instead of a duplicate
        seq = fz.next_seq + delta if delta > 0 else fz.next_seq - 1
        fz.log.append(f"seq {seq} (expected {fz.next_seq})")
        if fz.first(False):
            fz.violate(CODE.ABORTED)
        fz.raw.send(pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=b"")))

    @rule(fz=streams)
    def flush(self, fz: Fuzzed) -> None:
        if fz.open:
            fz.log.append("flush")
            fz.first(False)
            fz.raw.send(pb.ClientMessage(control=pb.Control(flush=pb.Flush(flush_id=7))))

    @rule(fz=streams, empty=st.booleans())
    def misplaced(self, fz: Fuzzed, empty: bool) -> None:
        if not fz.open:
            return
        fz.log.append("empty message" if empty else "second config")
        if empty:
            if fz.first(False):
                fz.violate(CODE.FAILED_PRECONDITION)
            fz.raw.send(pb.ClientMessage())
        else:
            self._send_config(fz, pb.PCM_S16LE, 16000, 1)

    @rule(fz=streams)
    def half_close(self, fz: Fuzzed) -> None:
        if fz.open:
            fz.log.append("half-close")
            if not fz.started:
                fz.violate(CODE.FAILED_PRECONDITION)  # ended before its config
            fz.half_closed = True
            fz.raw.half_close()

    @rule(fz=streams)
    def cancel(self, fz: Fuzzed) -> None:
        if fz.open:
            fz.log.append("cancel")
            fz.cancelled = True
            fz.raw.cancel()

    def teardown(self) -> None:
        if not hasattr(self, "good"):
            return
        for fz in self.fuzzed:
            if fz.open:
                self.half_close(fz)
        rest = GOOD[self.good_pos:]
        if rest:
            self.good.send(pb.ClientMessage(audio=pb.AudioChunk(seq=self.good_seq, data=rest)))
        self.good.half_close()
        assert self.good.wait(60) == CODE.OK, self.good.details
        assert cut_samples(self.good.msgs) == self.solo
        for fz in self.fuzzed:
            code = fz.raw.wait(30)
            want = fz.expected or CODE.OK
            if fz.cancelled:  # the server may have answered before the cancel arrived
                assert code in (CODE.CANCELLED, want), (code, fz.raw.details, fz.log)
            else:
                assert code == want, (code, fz.raw.details, fz.log)
            assert code not in (CODE.UNKNOWN, CODE.INTERNAL)
        deadline = time.monotonic() + 5
        while not self.srv.running.resources().idle and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.srv.running.resources().idle, self.srv.running.resources()


def _cfg() -> AppConfig:
    return load_config(env={}, overrides={"server": {
        "host": "127.0.0.1", "port": 0, "max_message_bytes": MAX_MESSAGE,
        "max_chunk_ms": MAX_CHUNK_MS}})


def run_fuzz(examples: int, steps: int) -> None:
    srv = ServerThread(_cfg())
    try:
        with grpc.insecure_channel(srv.target) as ch:
            solo = cut_samples(run_stream(srv.target, [config_msg(), *audio_msgs([GOOD])]))
            assert len(solo) >= 2
            StreamFuzz.srv, StreamFuzz.channel, StreamFuzz.solo = srv, ch, solo
            run_state_machine_as_test(StreamFuzz, settings=settings(
                max_examples=examples, stateful_step_count=steps, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        srv.stop()


def test_fuzzed_streams_never_hurt_a_good_one() -> None:
    run_fuzz(examples=40, steps=40)


@pytest.mark.slow
def test_fuzzed_streams_never_hurt_a_good_one_long() -> None:
    run_fuzz(examples=1000, steps=50)


# ---------------------------------------------------------------- config validation

_CFG = load_config(env={})


def _opt(strategy: Any) -> Any:
    return st.one_of(st.none(), strategy)


configs = st.builds(
    lambda enc, rate, ch, mode, pol, ev, sep, rid, start: pb.StreamConfig(
        format=pb.AudioFormat(encoding=enc, sample_rate_hz=rate, channels=ch),
        mode=mode, policy=pb.CutPolicy(**{k: v for k, v in pol.items() if v is not None}),
        events=pb.EventOptions(**{k: v for k, v in ev.items() if v is not None}),
        separation=pb.SeparationOptions(backend=sep[0], vocal_stem_channels=sep[1],
                                        window_hop_ms=sep[2]),
        request_id=rid, start_sample=start),
    st.integers(0, 5), st.one_of(st.integers(0, 2**31 - 1), st.sampled_from([8000, 48000])),
    st.integers(0, 12), st.integers(0, 4),
    st.fixed_dictionaries({
        "min_segment_ms": _opt(st.integers(0, 2**31 - 1)),
        "max_segment_ms": _opt(st.integers(0, 4_000_000)),
        "min_gap_ms": _opt(st.integers(0, 20_000)),
        "min_pause_ms": _opt(st.integers(0, 6000)),
        "pause_search_ms": _opt(st.integers(0, 12_000)),
        "vad_threshold": _opt(st.floats(allow_nan=True, allow_infinity=True, width=32)),
        "background_voices": _opt(st.booleans()),
    }),
    st.fixed_dictionaries({"vad_segments": _opt(st.booleans()),
                           "chunk_traces": _opt(st.booleans())}),
    st.tuples(st.sampled_from(["", "none", "builtin", "mdx", "bogus"]),
              st.lists(st.integers(0, 9), max_size=3), st.integers(0, 70_000)),
    st.text(max_size=200), st.integers(0, 2**62),
)


@pytest.mark.unit
@settings(max_examples=400, deadline=None)
@given(msg=configs)
def test_stream_config_validation_is_total(msg: pb.StreamConfig) -> None:
    """Any StreamConfig either gives a spec within the documented ranges or a
    ConfigError that names a config field: never another exception."""
    try:
        spec = convert.spec_from_proto(_CFG, msg)
    except ConfigError as exc:
        assert str(exc).startswith(("config.", "policy.")), str(exc)
        return
    assert 8000 <= spec.format.sample_rate_hz <= 192_000 and 1 <= spec.format.channels <= 8
    assert 0.05 <= spec.policy.vad_threshold <= 0.95

