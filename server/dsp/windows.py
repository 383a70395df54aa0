"""Cutting a stereo stream into the separator's fixed, overlapping windows."""

from __future__ import annotations

import numpy as np
from seamcut.server.dsp.overlap_add import first_window, window_start
from seamcut.server.dsp.resample import StreamResampler


class WindowFeeder:
    """Client-rate stereo in, model-rate windows [2, size] out, on an absolute grid.

    Window k covers model samples [k*hop - (size - hop), k*hop + hop): the first
    windows reach before sample 0 and read zeros there, so every sample gets the same
    number of overlapping windows. The grid depends only on the sample count.
    """

    def __init__(self, client_rate_hz: int, model_rate_hz: int, size: int, hop: int, *,
                 start: int = 0) -> None:
        """``start``: the model sample the first sample pushed is (a resumed stream's
        pre-roll, on the grid of the stream it resumes); the windows over it read zeros
        before it, as the first ones do before sample 0."""
        self.size, self.hop = size, hop
        self.resampler = StreamResampler(client_rate_hz, model_rate_hz, channels=2)
        self.next_window = first_window(start, hop)
        self._origin = window_start(self.next_window, size, hop)  # model index of _buf[:, 0]
        self._buf = np.zeros((2, start - self._origin), np.float32)  # zeros before start
        self.available = start  # model samples received (counted from sample 0)

    def push(self, stereo: np.ndarray) -> np.ndarray:
        """Add client-rate stereo [n, 2]; return the windows now complete [m, 2, size]."""
        if stereo.shape[0]:
            y = self.resampler.process(stereo)
            self._append(y)
        return self._cut(final_total=None)

    def finish(self) -> tuple[np.ndarray, int]:
        """Flush; return the remaining windows (zero-padded) and the total model samples."""
        self._append(self.resampler.process(np.zeros((0, 2), np.float32), last=True))
        total = self.available
        return self._cut(final_total=total), total

    def _append(self, y: np.ndarray) -> None:
        if y.shape[0]:
            self._buf = np.concatenate([self._buf, y.T.astype(np.float32)], axis=1)
            self.available += int(y.shape[0])

    def _cut(self, final_total: int | None) -> np.ndarray:
        out = []
        while True:
            start = window_start(self.next_window, self.size, self.hop)
            if final_total is None:
                if start + self.size > self.available:
                    break
            elif start >= final_total:
                break
            lo = start - self._origin
            w = self._buf[:, lo : lo + self.size]
            if w.shape[1] < self.size:
                w = np.pad(w, ((0, 0), (0, self.size - w.shape[1])))
            out.append(w)
            self.next_window += 1
        drop = window_start(self.next_window, self.size, self.hop) - self._origin
        if drop > 0:
            self._buf = self._buf[:, drop:]
            self._origin += drop
        if not out:
            return np.zeros((0, 2, self.size), np.float32)
        return np.stack(out)
