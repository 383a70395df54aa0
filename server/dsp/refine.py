"""Cut refinement on the original signal."""

from __future__ import annotations

import numpy as np


def snap_to_zero_crossing(x: np.ndarray, offset: int, target: int, radius: int) -> int:
    """Move ``target`` to the nearest zero crossing of ``x`` within ``radius`` samples.

    ``x`` is a mono excerpt whose first sample has absolute index ``offset``. A cut at
    index ``i`` splits between samples i-1 and i; ``i`` is a crossing when ``x[i] == 0``
    or x[i-1] and x[i] have different signs. Returns ``target`` unchanged when there is
    no crossing in range (ties go to the earlier index).
    """
    lo = max(target - radius, offset + 1)
    hi = min(target + radius, offset + x.shape[-1] - 1)
    if hi < lo:
        return target
    seg = x[lo - 1 - offset : hi + 1 - offset]
    cur, prev = seg[1:], seg[:-1]
    crossing = (cur == 0) | ((prev < 0) != (cur < 0))
    hits = np.flatnonzero(crossing) + lo
    if hits.size == 0:
        return target
    return int(hits[np.argmin(np.abs(hits - target))])
