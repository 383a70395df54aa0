"""The built-in vocal separator: no downloaded weights, so SONG mode works out of the box.

A mask estimator on the STFT of the stereo mix, aimed at what a pause detector needs
(is the voice present, and where is it quietest), not at release-quality stems:

* centre: lead vocals are mixed to the centre (equal level and phase in L and R);
  the panning similarity 2|L·R*| / (|L|² + |R|²), smoothed over 5 frames, is ~1 for
  centred sources and falls for anything panned or decorrelated (stereo reverbs,
  wide pads, panned guitars, stereo piano samples);
* harmonic: voice is harmonic with slowly moving partials; median filtering across
  time (harmonic) vs. across frequency (percussive) suppresses drums and clicks;
* band: 150 Hz – 7 kHz keeps bass and cymbals out.

The vocal estimate is mid · centre^4 · harmonic · band. Good at: centred voice over
stereo accompaniment, drums, bass. Bad at: mono mixes (the centre cue is gone: every
source is "centre"), centred harmonic instruments (a centred organ or piano passes
through), unison doubles. A real MDX-Net model is much better; see docs/SONG.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_FFT = 2048
HOP = 512
MEDIAN = 17  # frames / bins for the harmonic-percussive medians
SMOOTH = 5  # frames of smoothing for the panning similarity


class BuiltinSeparator:
    name = "builtin"
    rate_hz = 44_100
    window_samples = 65_536  # 1.49 s
    default_hop_samples = 49_152  # 25 % overlap
    max_batch = 16

    def __init__(self, device: str = "cpu") -> None:
        import torch

        self._torch = torch
        self.device = device
        self._tdev = torch.device(device)
        self._window = torch.hann_window(N_FFT, device=self._tdev)
        freqs = torch.fft.rfftfreq(N_FFT, 1.0 / self.rate_hz, device=self._tdev)
        lo = torch.clamp((freqs - 100.0) / 100.0, 0, 1)
        hi = torch.clamp((8_000.0 - freqs) / 2_000.0, 0, 1)
        self._band = (lo * hi)[:, None]  # [bins, 1]

    def _median(self, x: Any, dim: int) -> Any:
        torch = self._torch
        pad = [0, 0, 0, 0]
        pad[2 * (x.dim() - 1 - dim)] = pad[2 * (x.dim() - 1 - dim) + 1] = MEDIAN // 2
        xp = torch.nn.functional.pad(x, tuple(pad), mode="reflect")
        return xp.unfold(dim, MEDIAN, 1).median(dim=-1).values

    def vocal(self, x: Any) -> Any:
        """The mono vocal estimate [B, n] of a device tensor of windows [B, 2, n], on
        the tensor's device: queues work only, no host synchronisation (S1's lane)."""
        torch = self._torch
        b, _, n = x.shape
        z = torch.stft(x.reshape(b * 2, n), N_FFT, HOP, window=self._window, center=True,
                       return_complex=True).reshape(b, 2, N_FFT // 2 + 1, -1)
        left, right = z[:, 0], z[:, 1]
        mid = 0.5 * (left + right)
        k = torch.ones(1, 1, 1, SMOOTH, device=self._tdev) / SMOOTH

        def smooth(v: Any) -> Any:
            return torch.nn.functional.conv2d(v[:, None], k, padding=(0, SMOOTH // 2))[:, 0]

        cross = smooth((left * right.conj()).abs())
        power = smooth(left.abs() ** 2 + right.abs() ** 2)
        centre = (2 * cross / (power + 1e-12)).clamp(0, 1) ** 4
        mag = mid.abs()
        harm = self._median(mag, 2) ** 2
        perc = self._median(mag, 1) ** 2
        harmonic = harm / (harm + perc + 1e-12)
        mask = centre * harmonic * self._band
        return torch.istft(mid * mask, N_FFT, HOP, window=self._window, center=True, length=n)

    def separate(self, windows: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self._tdev)
        vocal = self.vocal(x)
        return np.repeat(vocal[:, None, :].cpu().numpy(), 2, axis=1).astype(np.float32)
