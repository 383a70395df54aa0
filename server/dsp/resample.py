"""Stateful streaming resampling whose output does not depend on input slicing."""

from __future__ import annotations

import numpy as np
import soxr


class StreamResampler:
    """float32 resampler (soxr HQ) for [n] mono or [n, channels]; identity for equal rates.

    soxr's ResampleStream is bit-identical under any slicing of its input and
    time-aligned (output sample k is at time k / out_rate), which the streaming ==
    offline property depends on.
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int, channels: int = 1) -> None:
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self._stream = (
            None
            if in_rate_hz == out_rate_hz
            else soxr.ResampleStream(in_rate_hz, out_rate_hz, channels, dtype="float32",
                                     quality="HQ")
        )

    def process(self, x: np.ndarray, *, last: bool = False) -> np.ndarray:
        """Feed samples, get whatever output is ready (all of it when ``last``)."""
        if self._stream is None:
            return np.asarray(x, dtype=np.float32)
        return np.asarray(self._stream.resample_chunk(x, last=last), dtype=np.float32)

    def delay_out_samples(self) -> int:
        """Worst-case output samples held back waiting for more input."""
        return 0 if self._stream is None else int(np.ceil(self._stream.delay())) + 1
