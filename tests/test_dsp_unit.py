"""Pure DSP pieces: decoding, resampling, features, snapping, re-blocking."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seamcut.server.config import AudioFormat, Encoding
from seamcut.server.dsp.features import band_energy_db
from seamcut.server.dsp.pcm import decode, downmix
from seamcut.server.dsp.reblock import Reblocker
from seamcut.server.dsp.refine import snap_to_zero_crossing
from seamcut.server.dsp.resample import StreamResampler
from seamcut.server.errors import InvalidAudio

pytestmark = pytest.mark.unit
RNG = np.random.default_rng(7)
SIGNAL = (RNG.standard_normal(48_000) * 0.1).astype(np.float32)


def split_at(x: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    edges = sorted({min(max(c, 0), len(x)) for c in cuts})
    return np.split(x, edges)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 48_000), max_size=30), rate=st.sampled_from(
    [8000, 22050, 44100, 48000]))
def test_resampler_is_slicing_invariant(cuts: list[int], rate: int) -> None:
    whole = StreamResampler(rate, 16000)
    ref = np.concatenate([whole.process(SIGNAL), whole.process(SIGNAL[:0], last=True)])
    parts = StreamResampler(rate, 16000)
    got = np.concatenate([parts.process(p) for p in split_at(SIGNAL, cuts)]
                         + [parts.process(SIGNAL[:0], last=True)])
    np.testing.assert_array_equal(got, ref)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 48_000), max_size=30),
       rate=st.sampled_from([16000, 44100]))
def test_reblocker_grid_does_not_depend_on_slicing(cuts: list[int], rate: int) -> None:
    def blocks(parts: list[np.ndarray]) -> list[tuple[int, int, bytes, int, bytes, bool]]:
        rb = Reblocker(rate, 5120)
        out = [b for p in parts for b in rb.push(p)] + rb.finish()
        return [(b.start16, b.length16, b.samples16.tobytes(), b.client_start,
                 b.client.tobytes(), b.is_last) for b in out]

    ref = blocks([SIGNAL])
    assert blocks(split_at(SIGNAL, cuts)) == ref
    assert sum(len(b[4]) for b in ref) // 4 == SIGNAL.shape[0]  # every client frame once


def test_decode_int16_and_float_agree() -> None:
    ints = (RNG.integers(-32768, 32767, 200)).astype("<i2")
    a = decode(ints.tobytes(), AudioFormat(encoding=Encoding.PCM_S16LE, sample_rate_hz=16000,
                                           channels=2))
    b = decode((ints.astype(np.float32) / 32768).astype("<f4").tobytes(),
               AudioFormat(encoding=Encoding.F32LE, sample_rate_hz=16000, channels=2))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (100, 2)
    np.testing.assert_array_equal(downmix(a), a.mean(axis=1, dtype=np.float32))


def test_decode_rejects_partial_frames_and_nan() -> None:
    fmt = AudioFormat(encoding=Encoding.F32LE, sample_rate_hz=16000, channels=2)
    with pytest.raises(InvalidAudio, match="whole number of frames"):
        decode(b"\0" * 12, fmt)
    with pytest.raises(InvalidAudio, match="NaN or Inf sample at frame 1"):
        decode(np.array([0, 0, 0, np.nan], "<f4").tobytes(), fmt)


def test_decode_does_not_alias_the_input() -> None:
    buf = bytearray(np.zeros(4, "<f4").tobytes())
    out = decode(bytes(buf), AudioFormat(encoding=Encoding.F32LE, sample_rate_hz=8000,
                                         channels=1))
    assert out.flags.writeable  # a copy: np.frombuffer views would be read-only


def test_band_energy_ignores_dc_and_tracks_level() -> None:
    t = np.arange(16_160) / 16000
    tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    quiet = band_energy_db(tone * 0.1, 100, rate_hz=16000, low_hz=100, high_hz=4000)
    loud = band_energy_db(tone, 100, rate_hz=16000, low_hz=100, high_hz=4000)
    np.testing.assert_allclose(loud - quiet, 20.0, atol=0.01)
    dc = band_energy_db(tone + 0.5, 100, rate_hz=16000, low_hz=100, high_hz=4000)
    np.testing.assert_allclose(dc, loud, atol=0.5)
    assert band_energy_db(np.zeros(400, np.float32), 2, rate_hz=16000, low_hz=100,
                          high_hz=4000).max() == -120.0


def test_band_energy_is_blockwise_equal_to_whole() -> None:
    x = SIGNAL[:16_000 + 160]
    whole = band_energy_db(x, 100, rate_hz=16000, low_hz=100, high_hz=4000)
    parts = [band_energy_db(x[i * 1600 : i * 1600 + 1760], 10, rate_hz=16000, low_hz=100,
                            high_hz=4000) for i in range(10)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_snap_finds_nearest_crossing() -> None:
    x = np.array([1, 1, 1, -1, -1, -1, -1, 1, 1], np.float32)
    assert snap_to_zero_crossing(x, 100, 105, 3) == 103
    assert snap_to_zero_crossing(x, 100, 106, 3) == 107
    assert snap_to_zero_crossing(np.ones(9, np.float32), 0, 4, 3) == 4  # none in range
    assert snap_to_zero_crossing(np.zeros(9, np.float32), 0, 4, 3) == 4


def test_torch_band_energy_matches_numpy() -> None:
    """S3 on the GPU computes the same energies as on the CPU (float32 rounding)."""
    import torch
    from seamcut.server.dsp.features_torch import band_energy_db_torch

    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 5280)) * np.array([[0.3], [1e-4], [0.0]])).astype(np.float32)
    x[0, 2000:2500] += 0.4  # a DC step: out of band, must not count
    ref = band_energy_db(x, 32, rate_hz=16000, low_hz=100, high_hz=4000)
    got = band_energy_db_torch(torch.from_numpy(x), 32, rate_hz=16000, low_hz=100,
                               high_hz=4000).numpy()
    assert got.shape == ref.shape == (3, 32)
    assert np.abs(got - ref).max() <= 1e-3
    short = band_energy_db_torch(torch.from_numpy(x[:, :1000]), 32, rate_hz=16000,
                                 low_hz=100, high_hz=4000).numpy()
    assert np.abs(short - band_energy_db(x[:, :1000], 32, rate_hz=16000, low_hz=100,
                                         high_hz=4000)).max() <= 1e-3
