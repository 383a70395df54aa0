"""Streaming equals offline: cut points do not depend on how the client slices audio."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seamcut.server.config import AppConfig, Encoding
from seamcut.server.engine.client import InprocEngine
from seamcut.server.events import Cut
from seamcut.server.offline import analyze

from seamcut.v1 import seamcut_pb2 as pb
from tests.helpers import (
    ServerThread,
    audio_msgs,
    config_msg,
    cut_samples,
    encode,
    run_stream,
    slice_bytes,
    speech_spec,
)

pytestmark = pytest.mark.integration

SAMPLE = resources.files("seamcut.samples") / "speech_en.flac"
AUDIO, RATE = sf.read(str(SAMPLE), dtype="float32", always_2d=True)
TRUTH = json.loads((resources.files("seamcut.samples") / "speech_en.json").read_text())

# Message sizes in frames: single samples up to several seconds, cycled over the file.
sizes = st.lists(
    st.one_of(st.integers(1, 16), st.integers(17, 4000), st.integers(4001, 3 * RATE)),
    min_size=1, max_size=12,
).filter(lambda s: sum(s) / len(s) >= 200)  # keeps a run under ~1,100 messages


def offline_cuts(cfg: AppConfig, engine: InprocEngine, data: bytes, frame_bytes: int,
                 split: list[int], rate: int, channels: int, encoding: Encoding) -> list[int]:
    spec = speech_spec(cfg, rate, channels, encoding)
    events = analyze(cfg, spec, slice_bytes(data, frame_bytes, split), engine)
    return [e.sample for e in events if isinstance(e, Cut)]


@pytest.fixture(scope="module")
def reference(app_cfg: AppConfig, engine: InprocEngine) -> list[int]:
    data = encode(AUDIO, Encoding.PCM_S16LE)
    return offline_cuts(app_cfg, engine, data, 2, [5 * RATE], RATE, 1, Encoding.PCM_S16LE)


def test_reference_cuts_every_pause(reference: list[int]) -> None:
    for a, b in TRUTH["pauses"]:
        assert any(a <= c <= b for c in reference), (a, b, reference)
    assert reference[-1] == AUDIO.shape[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(split=sizes)
def test_any_slicing_gives_identical_cuts_offline(
    split: list[int], app_cfg: AppConfig, engine: InprocEngine, reference: list[int]
) -> None:
    data = encode(AUDIO, Encoding.PCM_S16LE)
    got = offline_cuts(app_cfg, engine, data, 2, split, RATE, 1, Encoding.PCM_S16LE)
    assert got == reference


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(split=sizes)
def test_any_slicing_over_grpc_equals_offline(
    split: list[int], server: ServerThread, reference: list[int]
) -> None:
    data = encode(AUDIO, Encoding.PCM_S16LE)
    msgs = [config_msg(rate=RATE), *audio_msgs(slice_bytes(data, 2, split))]
    assert cut_samples(run_stream(server.target, msgs)) == reference


@pytest.mark.parametrize("rate,channels", [(8000, 1), (44100, 2), (48000, 1), (96000, 2)])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(split=sizes)
def test_slicing_invariance_at_other_rates_and_channels(
    rate: int, channels: int, split: list[int], app_cfg: AppConfig, engine: InprocEngine
) -> None:
    import soxr

    audio = soxr.resample(AUDIO[: 8 * RATE], RATE, rate).astype(np.float32)
    audio = np.repeat(audio, channels, axis=1) * np.linspace(1.0, 0.8, channels)[None, :]
    data = encode(audio.astype(np.float32), Encoding.F32LE)
    fb = 4 * channels
    whole = offline_cuts(app_cfg, engine, data, fb, [5 * rate], rate, channels,
                         Encoding.F32LE)
    scaled = [max(1, s * rate // RATE) for s in split]
    got = offline_cuts(app_cfg, engine, data, fb, scaled, rate, channels, Encoding.F32LE)
    assert got == whole
    assert len(whole) >= 3  # the 8 s excerpt has pauses to cut


def test_int16_and_float_encodings_give_identical_cuts(
    app_cfg: AppConfig, engine: InprocEngine, reference: list[int]
) -> None:
    q = np.round(AUDIO * 32768) / 32768  # the exact floats the int16 file decodes to
    data = encode(q.astype(np.float32), Encoding.F32LE)
    got = offline_cuts(app_cfg, engine, data, 4, [1234], RATE, 1, Encoding.F32LE)
    assert got == reference


def test_one_sample_messages(server: ServerThread, reference: list[int]) -> None:
    """The extreme slicing: the first 0.3 s one frame per message, then 5 s messages."""
    data = encode(AUDIO, Encoding.PCM_S16LE)
    head = int(0.3 * RATE)
    chunks = [data[2 * i : 2 * i + 2] for i in range(head)]
    chunks += slice_bytes(data[2 * head :], 2, [5 * RATE])
    msgs = [config_msg(rate=RATE), *audio_msgs(chunks)]
    assert cut_samples(run_stream(server.target, msgs)) == reference


def test_flush_does_not_change_cuts(server: ServerThread, reference: list[int]) -> None:
    data = encode(AUDIO, Encoding.PCM_S16LE)
    chunks = slice_bytes(data, 2, [3000])
    msgs: list[pb.ClientMessage] = [config_msg(rate=RATE)]
    for i, m in enumerate(audio_msgs(chunks)):
        msgs.append(m)
        if i % 7 == 3:
            msgs.append(pb.ClientMessage(control=pb.Control(flush=pb.Flush(flush_id=i))))
    out = run_stream(server.target, msgs)
    flushed = [m.flushed for m in out if m.WhichOneof("msg") == "flushed"]
    assert [f.flush_id for f in flushed] == [i for i in range(len(chunks)) if i % 7 == 3]
    assert cut_samples(out) == reference
