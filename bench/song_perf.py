"""SONG throughput with an MDX-Net-sized model: the server end to end vs ONNX Runtime alone.

The SONG issue's target: end-to-end SONG throughput through the server reaches at
least 90 % of what ONNX Runtime alone does on the same windows on the same machine.

* **ORT alone**: the exact windows the server cuts (same grid, hop and STFT), prepared
  beforehand; only ``InferenceSession.run`` is timed, one window per call as for a
  single stream. Throughput = audio seconds / time in ``run``.
* **End to end**: ``seamcut serve`` (in this process, its own event loop thread) with
  the model as the MDX backend; one SONG stream floods the same audio over gRPC on
  loopback; throughput = audio seconds / wall time from the first message to Summary.

Usage::

    python -m seamcut.bench.song_perf [--model PATH] [--seconds 60] [--json OUT]

The model (random weights, U-Net-shaped, ~17 M parameters, n_fft 6144, hop 1024,
dim_f 2048, dim_t 256: a 5.94 s window at 44.1 kHz) is built on first use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

MDX = {"n_fft": 6144, "hop": 1024, "dim_f": 2048, "dim_t": 256}


def build_model(path: Path) -> int:
    from seamcut.bench.mdx_model import build_mdx_onnx

    return build_mdx_onnx(path, n_fft=MDX["n_fft"], hop=MDX["hop"], dim_f=MDX["dim_f"],
                          dim_t=MDX["dim_t"], width=36, depth=3, levels=4)


def song_audio(seconds: float) -> tuple[np.ndarray, int]:
    path = resources.files("seamcut.samples") / "song_en.flac"
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    reps = int(np.ceil(seconds * rate / x.shape[0]))
    return np.tile(x, (reps, 1))[: int(seconds * rate)], int(rate)


def ort_alone(model: Path, audio: np.ndarray, rate: int, overlap: float) -> dict[str, float]:
    from seamcut.server.dsp.windows import WindowFeeder
    from seamcut.server.models.mdx import MdxOnnxSeparator

    sep = MdxOnnxSeparator(model, providers=["CPUExecutionProvider"])
    size = sep.window_samples
    hop = size - int(size * overlap)
    feeder = WindowFeeder(rate, sep.rate_hz, size, hop)
    windows = [feeder.push(audio), feeder.finish()[0]]
    stacked = np.concatenate(windows)
    inputs = [sep._spec(__import__("torch").from_numpy(w[None])).contiguous().numpy()
              for w in stacked]
    sep.session.run(None, {sep._input: inputs[0]})  # warm-up
    t0 = time.perf_counter()
    for x in inputs:
        sep.session.run(None, {sep._input: x})
    busy = time.perf_counter() - t0
    seconds = audio.shape[0] / rate
    return {"windows": len(inputs), "run_seconds": busy, "audio_seconds_per_second": seconds / busy,
            "window_ms": 1000 * busy / len(inputs)}


def end_to_end(model: Path, audio: np.ndarray, rate: int) -> dict[str, float]:
    from seamcut.client import AsyncClient, StreamOptions, SummaryEvent
    from seamcut.server.config import load_config
    from seamcut.server.transport.app import start_server

    cfg = load_config(env={}, overrides={
        "server": {"host": "127.0.0.1", "port": 0},
        "separator": {"default_backend": "mdx", "mdx_model_path": str(model)},
    })
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(start_server(cfg), loop).result(600)

    async def stream() -> float:
        opts = StreamOptions(sample_rate_hz=rate, channels=2, encoding="f32le", mode="song",
                             chunk_traces=False)
        async with AsyncClient(f"127.0.0.1:{running.port}") as client, client.stream(opts) as s:
            t0 = time.perf_counter()
            step = rate // 10
            for i in range(0, audio.shape[0], step):
                await s.send(audio[i : i + step])
            await s.close_send()
            async for ev in s:
                if isinstance(ev, SummaryEvent):
                    return time.perf_counter() - t0
        raise RuntimeError("stream ended without a Summary")

    try:
        wall = asyncio.run(stream())
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(0), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
    seconds = audio.shape[0] / rate
    return {"wall_seconds": wall, "audio_seconds_per_second": seconds / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("out/mdx17m.onnx"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.model.parent.mkdir(parents=True, exist_ok=True)
    params = build_model(args.model) if not args.model.exists() else None
    audio, rate = song_audio(args.seconds)
    from seamcut.server.config import SeparatorConfig

    overlap = SeparatorConfig().overlap
    alone = ort_alone(args.model, audio, rate, overlap)
    e2e = end_to_end(args.model, audio, rate)
    report: dict[str, Any] = {
        "command": "python -m seamcut.bench.song_perf " + " ".join(
            f"--{k} {v}" for k, v in vars(args).items() if v is not None),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "model": {"path": str(args.model), "params": params, **MDX, "overlap": overlap},
        "audio_seconds": audio.shape[0] / rate,
        "ort_alone": alone,
        "end_to_end": e2e,
        "ratio": e2e["audio_seconds_per_second"] / alone["audio_seconds_per_second"],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
