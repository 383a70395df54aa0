"""``python -m seamcut.bench.gpu_pipeline``: the engine's device pipeline three ways on
one device, the same synthetic work each time, and the same engine on the CPU.

``--mode speech`` (S2 + S3 of SPEECH analysis, 320 ms blocks) or ``--mode song``
(S1 with an MDX-Net-sized model, ``--model``, built on first use: random weights,
~17 M parameters, 5.94 s windows):

* ``serial``: one stream's work at a time, each stage waited for before the next
  (the host reads every result at once): how the project seamcut grew out of ran it;
* ``pipelined``: the engine's device flights (``engine/device_analyse.py``,
  ``engine/device_separate.py``) with one stream per batch: copies and stages of
  consecutive batches overlap on the lanes;
* ``batched``: the same flights with ``--streams`` streams (SONG: windows) per batch;
* ``cpu``: the engine's CPU path on this host's cores (ONNX Runtime), batched.

SPEECH also measures Silero alone on the CPU and on the device per batch size (the
start-up measurement the engine chooses by, ``engine/vad_choice.py``).

Reports audio seconds per second, the real-time streams that rate carries, copy time
(H2D + D2H) and the share of it hidden under compute on another lane (from the
flights' events, :class:`~seamcut.server.engine.flow.Timeline`), and peak device
memory (torch's allocator; CUDA). ``--lanes fake`` runs it on the CPU with the test
device (a smoke test: its numbers mean nothing). Reported in docs/PERFORMANCE.md only
from a real GPU run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
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
    import torch
    from seamcut.server.dsp.features_torch import band_energy_db_torch
    from seamcut.server.models.vad import VadState

    dev = core.device_analyse
    t0 = time.perf_counter()
    for _ in range(rounds):
        for r in reqs:
            frames = [r.audio[HOP:].reshape(-1, 512)]
            dev.vad.run_marked(frames, [VadState.initial()], [[frames[0].shape[0]]])
            x = torch.from_numpy(r.audio[None]).to(dev.device)
            band_energy_db_torch(x, BLOCK // HOP, rate_hz=16000, low_hz=100,
                                 high_hz=4000).cpu()
    return time.perf_counter() - t0


def _pipelined(stage: Any, batches: list[list[Any]], rounds: int) -> tuple[float, float]:
    """``batches`` through a device stage (DeviceAnalyse or DeviceSeparate), ``rounds``
    times; (wall s, copy ms summed over batches)."""
    copy_ms = [0.0]
    pending = [0]

    def done(results: list[Any]) -> None:
        copy_ms[0] += max(r.h2d_ms + r.d2h_ms for r in results)
        pending[0] -= 1

    t0 = time.perf_counter()
    for _ in range(rounds):
        for batch in batches:
            pending[0] += 1
            while not stage.submit(batch, done):
                stage.flow.wait_room(0.05)
    while pending[0]:
        stage.flow.wait_room(0.05)
    return time.perf_counter() - t0, copy_ms[0]


def _row(audio_s: float, wall: float, torch: Any, cuda: bool, flow: Any = None,
         copy_ms: float = 0.0) -> dict[str, Any]:
    row: dict[str, Any] = {"audio_s_per_s": round(audio_s / wall, 1),
                           "realtime_streams": int(audio_s / wall), "wall_s": round(wall, 3),
                           "copy_ms": round(copy_ms, 1)}
    if flow is not None and flow.timeline is not None:
        total, hidden = flow.timeline.copy_hidden()
        row["copy_hidden_pct"] = round(100 * hidden / total, 1) if total else None
    row["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None
    return row


def _measure(rows: dict[str, Any], name: str, flow: Any, cuda: bool, torch: Any,
             audio_s: float, go: Any) -> None:
    """Run ``go() -> (wall, copy_ms)`` with a fresh timeline and peak counter."""
    from seamcut.server.engine.flow import Timeline

    if flow is not None:
        flow.timeline = Timeline()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    wall, copy = go()
    rows[name] = _row(audio_s, wall, torch, cuda, flow, copy)
    if flow is not None:
        flow.timeline = None


def _meta(device: str, lanes: str, cuda: bool, torch: Any) -> dict[str, Any]:
    return {"device": device, "lanes": lanes,
            "card": torch.cuda.get_device_name(0) if cuda else
            platform.processor() or platform.machine(),
            "host_cpus": os.cpu_count(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}


def run_speech(device: str, lanes: str, streams: int, blocks: int,
               rounds: int) -> dict[str, Any]:
    from seamcut.server.config import load_config
    from seamcut.server.engine.core import EngineCore

    torch = __import__("torch")
    # vad_cpu_streams 0: every batch through the device (the choice is measured below).
    cfg = load_config(env={}, overrides={"engine": {"device": device, "lanes": lanes,
                                                    "vad_cpu_streams": 0}})
    core = EngineCore(cfg, separators=False)
    stage = core.device_analyse
    if stage is None:
        raise SystemExit(f"no device pipeline on {device!r} ({core.device.fallback_reason})")
    reqs = _requests(streams, blocks, np.random.default_rng(0))
    audio_s = streams * blocks * BLOCK / 16000 * rounds
    cuda = device.startswith("cuda")
    _pipelined(stage, [reqs], 1)  # warm-up (allocator, kernels)
    rows: dict[str, Any] = {}
    _measure(rows, "serial", None, cuda, torch, audio_s,
             lambda: (_serial(core, reqs, rounds), 0.0))
    _measure(rows, "pipelined", stage.flow, cuda, torch, audio_s,
             lambda: _pipelined(stage, [[r] for r in reqs], rounds))
    _measure(rows, "batched", stage.flow, cuda, torch, audio_s,
             lambda: _pipelined(stage, [reqs], rounds))
    core.close()
    cpu = EngineCore(load_config(env={}, overrides={"engine": {"device": "cpu",
                                                               "lanes": "off"}}),
                     separators=False)
    cpu_rounds = max(1, rounds // 5)

    def on_cpu() -> tuple[float, float]:
        t0 = time.perf_counter()
        for _ in range(cpu_rounds):
            cpu.analyse_on_cpu(reqs)
        return time.perf_counter() - t0, 0.0

    _measure(rows, "cpu", None, False, torch, audio_s / rounds * cpu_rounds, on_cpu)
    from seamcut.server.engine import vad_choice

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    timings = vad_choice.measure(cpu.vad, stage.vad, sync)
    return {"mode": "speech", **_meta(device, lanes, cuda, torch), "streams": streams,
            "blocks_per_request": blocks, "rounds": rounds, "rows": rows,
            "vad_ms_per_batch": [[t.streams, round(t.cpu_ms, 3), round(t.device_ms, 3)]
                                 for t in timings],
            "vad_cpu_streams": vad_choice.cpu_streams(timings), **_ratios(rows)}


def run_song(device: str, lanes: str, model: Path, batch: int, rounds: int) -> dict[str, Any]:
    from seamcut.bench.song_perf import build_model
    from seamcut.server.config import load_config
    from seamcut.server.engine.core import EngineCore
    from seamcut.server.engine.protocol import Kind, Request

    torch = __import__("torch")
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        build_model(model)
    sep_cfg = {"default_backend": "mdx", "mdx_model_path": str(model), "max_batch": batch}
    cfg = load_config(env={}, overrides={
        "engine": {"device": device, "lanes": lanes,
                   "staging_mib": max(8, 4 * batch + 1)}, "separator": sep_cfg})
    core = EngineCore(cfg)
    stage = core.device_separate
    if stage is None or "mdx" not in stage.separators:
        raise SystemExit(f"no device separation on {device!r} ({core.device.fallback_reason})")
    sep = stage.separators["mdx"]
    n = sep.window_samples
    rng = np.random.default_rng(0)
    windows = (rng.standard_normal((batch, 2, n)) * 0.1).astype(np.float32)
    per_window_s = sep.default_hop_samples / sep.rate_hz  # new audio each window covers
    audio_s = batch * per_window_s * rounds
    cuda = device.startswith("cuda")

    def req(i: int, w: np.ndarray) -> Any:
        return Request(kind=Kind.SEPARATE, stream=f"s{i}", id=i + 1, index=0, audio=w,
                       backend="mdx")

    one = [[req(i, windows[i : i + 1])] for i in range(batch)]
    _pipelined(stage, [[req(0, windows)]], 1)  # warm-up

    def serial() -> tuple[float, float]:
        t0 = time.perf_counter()
        for _ in range(rounds):
            for i in range(batch):
                sep.separate(windows[i : i + 1])  # copy in, model, copy out, waited for
        return time.perf_counter() - t0, 0.0

    rows: dict[str, Any] = {}
    _measure(rows, "serial", None, cuda, torch, audio_s, serial)
    _measure(rows, "pipelined", stage.flow, cuda, torch, audio_s,
             lambda: _pipelined(stage, one, rounds))
    _measure(rows, "batched", stage.flow, cuda, torch, audio_s,
             lambda: _pipelined(stage, [[req(0, windows)]], rounds))
    core.close()
    from seamcut.server.models.mdx import MdxOnnxSeparator

    cpu = MdxOnnxSeparator(model, providers=["CPUExecutionProvider"])
    cpu_windows = max(1, min(batch, 4))

    def on_cpu() -> tuple[float, float]:
        t0 = time.perf_counter()
        for i in range(cpu_windows):
            cpu.separate(windows[i : i + 1])  # one window per call: fastest on the CPU
        return time.perf_counter() - t0, 0.0

    _measure(rows, "cpu", None, False, torch, cpu_windows * per_window_s, on_cpu)
    return {"mode": "song", **_meta(device, lanes, cuda, torch), "model": model.name,
            "runtime": sep.runtime, "window_samples": n, "batch": batch, "rounds": rounds,
            "rows": rows, **_ratios(rows)}


def _ratios(rows: dict[str, Any]) -> dict[str, float]:
    speed = {k: v["audio_s_per_s"] for k, v in rows.items()}
    return {"batched_vs_serial": round(speed["batched"] / speed["serial"], 2),
            "gpu_vs_cpu": round(speed["batched"] / speed["cpu"], 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seamcut.bench.gpu_pipeline",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="speech", choices=["speech", "song"])
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--lanes", default="auto", choices=["auto", "fake"])
    p.add_argument("--streams", type=int, default=256, help="SPEECH: streams per batch")
    p.add_argument("--blocks", type=int, default=1, help="SPEECH: blocks per request")
    p.add_argument("--batch", type=int, default=8, help="SONG: windows per batch")
    p.add_argument("--model", type=Path, default=Path("out/mdx17m.onnx"),
                   help="SONG: the MDX model (built here when missing)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--json", metavar="PATH")
    a = p.parse_args(argv)
    if a.mode == "speech":
        out = run_speech(a.device, a.lanes, a.streams, a.blocks, a.rounds)
    else:
        out = run_song(a.device, a.lanes, a.model, a.batch, a.rounds)
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
