"""``python -m seamcut.bench.gpu_pipeline``: S2 + S3 (SPEECH analysis) three ways on
one device, the same synthetic blocks each time.

* ``serial``: one stream's block at a time, each stage waited for before the next
  (the host reads every result at once): how the project seamcut grew out of ran it;
* ``pipelined``: the engine's device pipeline (``engine/device_analyse.py``) with one
  stream per batch: copies and stages of consecutive batches overlap on the lanes;
* ``batched``: the same pipeline with ``--streams`` streams per batch.

Reports audio seconds analysed per second, the real-time streams that rate would
carry, copy time (H2D + D2H from the lanes' events) against the wall time of the
run (the share of copy time hidden under compute), and peak device memory (CUDA).
``--lanes fake`` runs it on the CPU with the test device (a smoke test: its numbers
mean nothing). Reported in docs/PERFORMANCE.md only from a real GPU run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import numpy as np

BLOCK = 5120  # 320 ms at 16 kHz
HOP = 160


def _requests(n_streams: int, blocks: int, rng: np.random.Generator) -> list[Any]:
    from seamcut.server.engine.protocol import Kind, Request, initial_vad_state

    out = []
    for s in range(n_streams):
        audio = (rng.standard_normal(HOP + BLOCK * blocks) * 0.1).astype(np.float32)
        out.append(Request(kind=Kind.ANALYSE, stream=f"s{s}", id=s + 1, index=0, audio=audio,
                           lengths=(BLOCK,) * blocks, vad_state=initial_vad_state()))
    return out


def _serial(core: Any, reqs: list[Any], rounds: int) -> float:
    """Each stream's request alone: VAD, wait, features, wait (``.cpu()`` reads)."""
    t0 = time.perf_counter()
    for _ in range(rounds):
        for r in reqs:
            dev = core.device_analyse
            frames = [r.audio[HOP:].reshape(-1, 512)]
            from seamcut.server.models.vad import VadState

            dev.vad.run_marked(frames, [VadState.initial()], [[frames[0].shape[0]]])
            import torch
            from seamcut.server.dsp.features_torch import band_energy_db_torch

            x = torch.from_numpy(r.audio[None]).to(dev.device)
            band_energy_db_torch(x, BLOCK // HOP, rate_hz=16000, low_hz=100,
                                 high_hz=4000).cpu()
    return time.perf_counter() - t0


def _pipelined(core: Any, reqs: list[Any], rounds: int, per_batch: int) -> tuple[float, float]:
    """Batches of ``per_batch`` streams through the device pipeline; (wall s, copy ms)."""
    dev = core.device_analyse
    copy_ms = [0.0]
    pending = [0]

    def done(results: list[Any]) -> None:
        copy_ms[0] += max(r.h2d_ms + r.d2h_ms for r in results)
        pending[0] -= 1

    t0 = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(reqs), per_batch):
            pending[0] += 1
            while not dev.submit(reqs[i:i + per_batch], done):
                dev.flow.wait_room(0.05)
    while pending[0]:
        dev.flow.wait_room(0.05)
    return time.perf_counter() - t0, copy_ms[0]


def run(device: str, lanes: str, streams: int, blocks: int, rounds: int) -> dict[str, Any]:
    from seamcut.server.config import load_config
    from seamcut.server.engine.core import EngineCore

    cfg = load_config(env={}, overrides={"engine": {"device": device, "lanes": lanes}})
    core = EngineCore(cfg, separators=False)
    if core.device_analyse is None:
        raise SystemExit(f"no device pipeline on {device!r} ({core.device.fallback_reason})")
    reqs = _requests(streams, blocks, np.random.default_rng(0))
    audio_s = streams * blocks * BLOCK / 16000 * rounds
    _pipelined(core, reqs, 1, streams)  # warm-up (allocator, kernels)
    torch = __import__("torch")
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rows: dict[str, dict[str, Any]] = {}
    speed: dict[str, float] = {}
    for name in ("serial", "pipelined", "batched"):
        copy = 0.0
        if name == "serial":
            wall = _serial(core, reqs, rounds)
        else:
            wall, copy = _pipelined(core, reqs, rounds, 1 if name == "pipelined" else streams)
        speed[name] = audio_s / wall
        rows[name] = {
            "audio_s_per_s": round(audio_s / wall, 1),
            "realtime_streams": int(audio_s / wall),
            "wall_s": round(wall, 3),
            "copy_ms": round(copy, 1),
            "peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        }
        if cuda:
            torch.cuda.reset_peak_memory_stats()
    core.device_analyse.flow.close()
    return {"device": device, "lanes": lanes, "card": torch.cuda.get_device_name(0) if cuda
            else platform.processor() or platform.machine(), "streams": streams,
            "blocks_per_request": blocks, "rounds": rounds, "date": time.strftime("%Y-%m-%d"),
            "rows": rows,
            "batched_vs_serial": round(speed["batched"] / speed["serial"], 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seamcut.bench.gpu_pipeline",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--lanes", default="auto", choices=["auto", "fake"])
    p.add_argument("--streams", type=int, default=256)
    p.add_argument("--blocks", type=int, default=1, help="blocks per request")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--json", metavar="PATH")
    a = p.parse_args(argv)
    out = run(a.device, a.lanes, a.streams, a.blocks, a.rounds)
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
