"""Which path runs S2 (Silero) for a batch of a given size: the CPU or the device.

Silero on a GPU is ten dependent frame steps per 320 ms block, each a handful of
small kernels, so a small batch costs launches, not arithmetic, and ONNX Runtime on
the host's cores is faster there; a large batch is the GPU's. Where they cross
depends on the card, the host and the driver, so it is measured at start-up on the
engine's own device (:func:`measure`, well under a second), not guessed, and
``engine.vad_cpu_streams`` overrides it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from seamcut.server.models.vad import SileroVad, VadState

log = logging.getLogger(__name__)
SIZES = (1, 2, 4, 8, 16, 32, 64)
FRAMES = 10  # one 320 ms block


@dataclass(frozen=True, slots=True)
class Timing:
    streams: int
    cpu_ms: float
    device_ms: float


def _best_ms(fn: Any, reps: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def measure(cpu: SileroVad, device_vad: Any, sync: Any, sizes: tuple[int, ...] = SIZES,
            reps: int = 3) -> list[Timing]:
    """One block per stream through each path, best of ``reps``; ``sync()`` waits for
    the device (start-up only: the hot path never does)."""
    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        frames = [(rng.standard_normal((FRAMES, 512)) * 0.1).astype(np.float32)
                  for _ in range(n)]
        starts = [VadState.initial()] * n
        marks = [[FRAMES]] * n

        def on_device(frames: list[np.ndarray] = frames, starts: list[VadState] = starts,
                      marks: list[list[int]] = marks) -> None:
            device_vad.run_marked(frames, starts, marks)
            sync()

        out.append(Timing(n, _best_ms(lambda f=frames, s=starts, m=marks:
                                      cpu.run_batched(f, s, m), reps),
                          _best_ms(on_device, reps)))
    return out


def cpu_streams(timings: list[Timing]) -> int:
    """The largest batch below which the CPU was faster at every measured size (0 =
    the device always)."""
    limit = 0
    for t in timings:
        if t.cpu_ms >= t.device_ms:
            break
        limit = t.streams
    return limit
