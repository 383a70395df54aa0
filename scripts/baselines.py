"""Baseline slicers for the SONG comparison (docs/QUALITY.md).

* Silero VAD on the mix: the silero-vad package's own get_speech_timestamps on the
  downmixed mix at 16 kHz, one cut in the middle of every gap between speech segments.
* RMS silence slicer: the method of the slicers singing-voice dataset tools ship
  (frame RMS in dB against a threshold, minimum silence length, cut at the quietest
  frame of each silence), with their usual defaults (-40 dB, 300 ms, 20 ms hop).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
import soxr

from tests.song_corpus import SongClip


@functools.cache
def _silero() -> Any:
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=True)


def silero_mix_cuts(clip: SongClip, threshold: float = 0.5,
                    min_silence_ms: int = 300) -> list[int]:
    import torch
    from silero_vad import get_speech_timestamps

    mono = soxr.resample(clip.mix.mean(axis=1), clip.sample_rate_hz, 16000).astype(np.float32)
    ts = get_speech_timestamps(torch.from_numpy(mono), _silero(), sampling_rate=16000,
                               threshold=threshold, min_silence_duration_ms=min_silence_ms)
    ratio = clip.sample_rate_hz / 16000
    return [int((a["end"] + b["start"]) / 2 * ratio) for a, b in itertools.pairwise(ts)]


def rms_slicer_cuts(clip: SongClip, threshold_db: float = -40.0, min_silence_ms: int = 300,
                    hop_ms: int = 20) -> list[int]:
    x = clip.mix.mean(axis=1)
    hop = clip.sample_rate_hz * hop_ms // 1000
    n = x.shape[0] // hop
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-20)
    db = 20 * np.log10(rms)
    quiet = db < threshold_db
    cuts, i = [], 0
    while i < n:
        if quiet[i]:
            j = i
            while j < n and quiet[j]:
                j += 1
            if (j - i) * hop_ms >= min_silence_ms and i > 0 and j < n:
                cuts.append((i + int(np.argmin(db[i:j]))) * hop + hop // 2)
            i = j
        else:
            i += 1
    return cuts
