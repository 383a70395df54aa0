""":func:`~seamcut.server.dsp.features.band_energy_db` in torch, for the GPU's S3.

The same frames, window, band and floor as the numpy version, so both give the same
energies up to float32 rounding (the numpy FFT runs in float64): within 1e-3 dB
above the floor on speech (``tests/test_dsp_unit.py``).
"""

from __future__ import annotations

from typing import Any

from seamcut.server.dsp.features import ENERGY_FLOOR_DB, HOP, WIN


def band_energy_db_torch(x: Any, n_hops: int, *, rate_hz: int, low_hz: float,
                         high_hz: float) -> Any:
    """``x``: a float32 tensor [B, >= HOP * n_hops + HOP] (shorter is zero-padded);
    returns [B, n_hops] on ``x``'s device. Queues work only: no host synchronisation."""
    import torch

    need = HOP * n_hops + HOP
    if x.shape[-1] < need:
        x = torch.nn.functional.pad(x, (0, need - x.shape[-1]))
    window = torch.hann_window(WIN, periodic=True, dtype=torch.float32, device=x.device)
    frames = x[..., : HOP * (n_hops - 1) + WIN].unfold(-1, WIN, HOP) * window
    spec = torch.fft.rfft(frames, dim=-1)
    k = torch.arange(WIN // 2 + 1, device=x.device, dtype=torch.float32) * (rate_hz / WIN)
    band = (k >= low_hz) & (k <= high_hz)
    power = (spec.abs() ** 2 * band).sum(dim=-1) / float((window.double() ** 2).sum())
    db = 10.0 * torch.log10(torch.clamp(power, min=1e-12))
    return torch.clamp(db, min=ENERGY_FLOOR_DB)

