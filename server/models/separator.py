"""The separator interface (stage S1) and how a backend is chosen.

A separator turns fixed-size stereo windows at its own sample rate into the vocal
estimate for the same windows. Windowing, overlap-add and resampling are the
engine's job; a separator holds only weights and sessions, never stream state.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Separator(Protocol):
    """What S1 needs from a backend."""

    name: str
    rate_hz: int  # the rate the backend works at (input is resampled to it)
    window_samples: int  # samples per window (per channel)
    default_hop_samples: int  # hop between windows unless the stream asks otherwise
    device: str
    max_batch: int  # 1 for models exported with a fixed batch of one

    def separate(self, windows: np.ndarray) -> np.ndarray:
        """[B, 2, window_samples] float32 mix -> [B, 2, window_samples] float32 vocal.

        Must be batch-invariant: an item's output must not depend on its batch
        neighbours (streams are batched together; streaming == offline relies on it).
        """
        ...
