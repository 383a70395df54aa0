"""Silero wrappers: the batched per-frame model and the sequence model agree exactly."""

from __future__ import annotations

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
