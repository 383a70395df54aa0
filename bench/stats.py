"""Order statistics for the bench report: nearest-rank percentiles, one definition.

Pure functions over arrays of floats (no I/O, no clocks). Imports numpy only.

The percentile ``q`` of ``n`` values is the nearest-rank one: the ``ceil(q/100 · n)``-th
smallest value (1-based; the smallest value for ``q = 0``). It is always a value that
was observed, never an interpolation, so a p99 of 100 samples is the 99th smallest and
a single outlier among 100 is the ``max`` only. Empty input gives ``None`` fields
(JSON ``null``): a figure that was not measured is never shown as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def nearest_rank(sorted_values: FloatArray, q: float) -> float:
    """The nearest-rank ``q``-th percentile (``0 <= q <= 100``) of ascending values.

    Raises ValueError for an empty array or ``q`` outside [0, 100].
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    rank = max(1, math.ceil(q / 100.0 * n - 1e-9))  # tolerance: 0.29 * 100 is 28.999...
    return float(sorted_values[min(rank, n) - 1])


@dataclass(frozen=True, kw_only=True, slots=True)
class Distribution:
    """Summary of one measured quantity, in the unit of its field name (usually ms).

    ``count`` values; ``p50``/``p90``/``p99`` are nearest-rank percentiles. Every figure
    is None when ``count`` is 0.
    """

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    min: float | None
    mean: float | None

    def to_json(self) -> dict[str, float | int | None]:
        """The stable JSON object: ``count, p50, p90, p99, max, min, mean`` (rounded to µs
        for ms quantities; other units keep 3 decimals too)."""
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {"count": self.count, "p50": r(self.p50), "p90": r(self.p90),
                "p99": r(self.p99), "max": r(self.max), "min": r(self.min),
                "mean": r(self.mean)}


EMPTY = Distribution(count=0, p50=None, p90=None, p99=None, max=None, min=None, mean=None)


def distribution(values: FloatArray | Iterable[float]) -> Distribution:
    """Percentiles, extremes and mean of ``values`` (NaN values are an error)."""
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values),
                     dtype=np.float64)
    if arr.size == 0:
        return EMPTY
    if np.isnan(arr).any():
        raise ValueError("distribution of values containing NaN")
    s = np.sort(arr)
    return Distribution(
        count=int(s.size), p50=nearest_rank(s, 50), p90=nearest_rank(s, 90),
        p99=nearest_rank(s, 99), max=float(s[-1]), min=float(s[0]), mean=float(s.mean()),
    )
