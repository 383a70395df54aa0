"""Windowed overlap-add on a fixed absolute grid (for model windows with overlap).

Window k covers samples [k*hop - lead, k*hop - lead + size) where lead = size - hop,
so sample 0 is already covered by a full set of windows; negative positions read as
zeros. Outputs are combined as sum(w * y_k) / sum(w) with a Hann-shaped weight, which
reconstructs any signal exactly when every y_k equals the input (identity model) and
suppresses each window's edge artefacts, unlike a rectangular average.
"""

from __future__ import annotations

import numpy as np


def ola_weight(size: int) -> np.ndarray:
    """Strictly positive Hann-shaped weights [size] (no zero at the ends)."""
    n = np.arange(size, dtype=np.float64)
    return (np.sin(np.pi * (n + 0.5) / size) ** 2).astype(np.float32)


def window_start(k: int, size: int, hop: int) -> int:
    """Absolute first sample of window k."""
    return k * hop - (size - hop)


def first_window(start: int, hop: int) -> int:
    """The first window over sample ``start`` (>= 0): the first one a stream whose
    audio begins there needs."""
    return start // hop


def windows_ready(available: int, size: int, hop: int) -> int:
    """How many windows can be cut from ``available`` samples (from window 0)."""
    # window k needs samples up to window_start(k) + size = k*hop + hop
    return max(0, available // hop)


class OverlapAdd:
    """Streaming accumulator of weighted window outputs [channels, size] -> final samples."""

    def __init__(self, channels: int, size: int, hop: int, *, start: int = 0) -> None:
        """``start``: the first sample to emit; the first window added is the first
        one over it (:func:`first_window`)."""
        if not 0 < hop <= size:
            raise ValueError(f"hop must be in (0, size], got hop={hop} size={size}")
        self.channels, self.size, self.hop = channels, size, hop
        self.weight = ola_weight(size)
        self._acc = np.zeros((channels, 0), np.float64)
        self._wsum = np.zeros(0, np.float64)
        self.windows = first_window(start, hop)  # the next window's number
        self._origin = window_start(self.windows, size, hop)  # absolute index of _acc[:, 0]
        self.emitted = start  # absolute index of the next sample to emit
        self.total: int | None = None  # stream length once known: nothing past it is emitted

    def set_total(self, total: int) -> None:
        """Declare the stream length (before adding the zero-padded last windows)."""
        self.total = total

    def add(self, y: np.ndarray) -> np.ndarray:
        """Add the next window's output [channels, size]; return newly final samples."""
        start = window_start(self.windows, self.size, self.hop)
        end = start + self.size
        need = end - self._origin
        if need > self._acc.shape[1]:
            grow = need - self._acc.shape[1]
            self._acc = np.concatenate([self._acc, np.zeros((self.channels, grow))], axis=1)
            self._wsum = np.concatenate([self._wsum, np.zeros(grow)])
        lo = start - self._origin
        self._acc[:, lo : lo + self.size] += y.astype(np.float64) * self.weight
        self._wsum[lo : lo + self.size] += self.weight
        self.windows += 1
        # Every later window starts at or after the next window's start.
        return self._emit(window_start(self.windows, self.size, self.hop))

    def finish(self, total: int) -> np.ndarray:
        """Emit everything up to ``total`` samples (callers add the covering windows first)."""
        self.total = total
        return self._emit(total)

    def _emit(self, until: int) -> np.ndarray:
        if self.total is not None:
            until = min(until, self.total)
        until = max(until, self.emitted)
        lo, hi = self.emitted - self._origin, until - self._origin
        out = (self._acc[:, lo:hi] / self._wsum[lo:hi]).astype(np.float32)
        self.emitted = until
        # Keep what the next window still overlaps (it may start before `emitted`
        # when windows overlap by more than half).
        drop = min(self.emitted, window_start(self.windows, self.size, self.hop)) - self._origin
        if drop > 0:
            self._acc = self._acc[:, drop:]
            self._wsum = self._wsum[drop:]
            self._origin += drop
        return out
