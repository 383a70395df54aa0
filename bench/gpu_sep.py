"""Separator throughput on CPU vs CUDA (windows per second, audio seconds per second).

Usage: python -m seamcut.bench.gpu_sep [--json OUT]
Built-in separator at batch 1, 8 and 32; prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np


def measure(sep: Any, batch: int, repeats: int, sync: Any) -> dict[str, float]:
    x = (np.random.default_rng(0).standard_normal((batch, 2, sep.window_samples)) * 0.1
         ).astype(np.float32)
    sep.separate(x)  # warm-up (cuFFT plans, allocator)
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        sep.separate(x)
    sync()
    dt = (time.perf_counter() - t0) / repeats
    hop_s = sep.default_hop_samples / sep.rate_hz
    return {"batch": batch, "ms_per_call": 1000 * dt, "windows_per_s": batch / dt,
            "audio_seconds_per_second": batch * hop_s / dt}


def main() -> None:
    import torch
    from seamcut.server.models.builtin import BuiltinSeparator

    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    devices = ["cpu"] + (["cuda:0"] if torch.cuda.is_available() else [])
    for dev in devices:
        sep = BuiltinSeparator(dev)
        sync = torch.cuda.synchronize if dev != "cpu" else (lambda: None)
        for batch in (1, 8, 32):
            reps = 3 if dev == "cpu" else 20
            rows.append({"device": dev, **measure(sep, batch, reps, sync)})
    report = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"), "rows": rows,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
