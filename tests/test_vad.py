"""Silero wrappers: the batched per-frame model and the sequence model agree exactly."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st
from seamcut.server.models.vad import SileroVad, VadState

from tests.corpus import default_corpus

pytestmark = pytest.mark.integration
VAD = SileroVad(providers=["CPUExecutionProvider"])


def speech_frames(i: int) -> np.ndarray:
    clip = default_corpus()[i]
    x = soxr.resample(clip.audio.mean(axis=1), clip.sample_rate_hz, 16000).astype(np.float32)
    n = x.shape[0] // 512
    return x[: n * 512].reshape(n, 512)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), splits=st.lists(st.integers(1, 60), min_size=1,
                                                     max_size=6))
def test_sequence_and_batched_models_agree_exactly(seed: int, splits: list[int]) -> None:
    """The engine picks either path by batch size; results must not depend on it."""
    rng = np.random.default_rng(seed)
    streams = [speech_frames(seed % 4), (rng.standard_normal((90, 512)) * 0.05)
               .astype(np.float32), speech_frames((seed + 1) % 4)[:70]]
    ref_p, ref_s = VAD.run_batched(streams, [VadState.initial()] * 3)
    for i, frames in enumerate(streams):
        state, out, pos, k = VadState.initial(), [], 0, 0
        while pos < frames.shape[0]:  # the sequence path, in block-sized pieces
            n = splits[k % len(splits)]
            p, state = VAD.run_sequence(frames[pos : pos + n], state)
            out.append(p)
            pos, k = pos + n, k + 1
        np.testing.assert_array_equal(np.concatenate(out), ref_p[i])
        np.testing.assert_array_equal(state.lstm, ref_s[i].lstm)
        np.testing.assert_array_equal(state.context, ref_s[i].context)


def test_probabilities_separate_speech_from_noise() -> None:
    probs, _ = VAD.run_sequences([speech_frames(0)], [VadState.initial()])
    assert probs[0].max() > 0.9 and probs[0].min() < 0.1


@functools.cache
def _torch_vad() -> Any:
    from seamcut.server.models.vad_torch import TorchVad

    return TorchVad("cpu")


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000),
       marks_at=st.lists(st.integers(0, 60), max_size=4))
def test_torch_vad_matches_onnx_with_gathered_states(seed: int, marks_at: list[int]) -> None:
    """The GPU path's model (TorchScript, per-stream state gathered into each frame
    step) against ONNX Runtime on the same input: probabilities within 1e-4 and every
    requested state within 1e-4 relative, for streams of different lengths in one
    batch. On the CPU here; tests/test_gpu.py repeats it on CUDA."""
    rng = np.random.default_rng(seed)
    streams = [speech_frames(seed % 4)[:80], (rng.standard_normal((45, 512)) * 0.05)
               .astype(np.float32), speech_frames((seed + 1) % 4)[:3],
               np.zeros((0, 512), np.float32)]
    start = [VadState.initial(), VadState(rng.standard_normal((2, 128)).astype(np.float32)
                                          * 0.1, np.zeros(64, np.float32))] * 2
    marks = [sorted({min(m, len(s)) for m in marks_at} | {len(s)}) for s in streams]
    ref_p, ref_s = VAD.run_batched(streams, start, marks)
    got_p, got_s = _torch_vad().run_marked(streams, start, marks)
    for i in range(len(streams)):
        assert got_p[i].shape == ref_p[i].shape
        assert np.abs(got_p[i] - ref_p[i]).max(initial=0) <= 1e-4
        assert len(got_s[i]) == len(ref_s[i]) == len(marks[i])
        for a, b in zip(got_s[i], ref_s[i], strict=True):
            # The LSTM cell state is unbounded (values ~6 after 80 frames): relative.
            assert np.allclose(a.lstm, b.lstm, rtol=1e-4, atol=1e-4)
            assert np.array_equal(a.context, b.context)
