"""Short-time features on the 16 kHz analysis grid."""

from __future__ import annotations

import numpy as np

HOP = 160  # 10 ms at 16 kHz
WIN = 320  # 20 ms window centred on the hop position
ENERGY_FLOOR_DB = -120.0

_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)).astype(np.float32)
_WINDOW_POWER = float(np.sum(_WINDOW.astype(np.float64) ** 2))


def band_energy_db(
    x: np.ndarray, n_hops: int, *, rate_hz: int, low_hz: float, high_hz: float
) -> np.ndarray:
    """Band-limited short-time energy in dB for ``n_hops`` hops.

    ``x`` is [..., HOP * n_hops + HOP] samples: hop ``i`` is centred at sample
    ``HOP * (i + 1)`` of ``x`` (so ``x`` starts with HOP samples of left context) and
    its Hann window spans ``x[HOP * i : HOP * i + WIN]``. Shorter input is zero-padded.
    Limiting the band keeps DC offsets and rumble out of the pause decision.
    Returns float32 [..., n_hops].
    """
    need = HOP * n_hops + HOP
    if x.shape[-1] < need:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, need - x.shape[-1])]
        x = np.pad(x, pad)
    idx = np.arange(n_hops)[:, None] * HOP + np.arange(WIN)[None, :]
    frames = x[..., idx] * _WINDOW
    spec = np.fft.rfft(frames, axis=-1)
    freqs = np.fft.rfftfreq(WIN, d=1.0 / rate_hz)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    power = (np.abs(spec[..., band]) ** 2).sum(axis=-1) / _WINDOW_POWER
    db = 10.0 * np.log10(np.maximum(power, 1e-12))
    return np.asarray(np.maximum(db, ENERGY_FLOOR_DB), dtype=np.float32)
