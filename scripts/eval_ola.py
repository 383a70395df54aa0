"""Which way to stitch separator windows: Hann-weighted OLA or MDX's edge trim?

A separator's output near a window edge is the least reliable (its receptive field
runs off the window). A stitching scheme is better the less the result depends on
where the window grid happens to fall, so we separate the same audio twice, with the
grid shifted by half a hop, and compare: relative RMS difference, lower is better.

* hann-ola: windows overlapping by ``overlap``, combined as sum(w*y)/sum(w).
* mdx-trim: windows advanced by size - 2*trim (trim = n_fft/2), each contributing
  only its centre [trim, size - trim), unweighted (the UVR / MDX scheme).

Model: an MDX-shaped ONNX model with random weights (seamcut.bench.mdx_model) at
n_fft 2048, hop 512, dim_t 128 -- random, but with the same edge behaviour as a real
convolutional separator. Audio: the bundled song. Usage:
    .venv/bin/python scripts/eval_ola.py
"""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seamcut.bench.mdx_model import build_mdx_onnx
from seamcut.server.dsp.overlap_add import OverlapAdd
from seamcut.server.dsp.windows import WindowFeeder
from seamcut.server.models.mdx import MdxOnnxSeparator


def hann_ola(sep: MdxOnnxSeparator, x: np.ndarray, overlap: float) -> np.ndarray:
    size = sep.window_samples
    hop = size - int(size * overlap)
    feeder, ola = WindowFeeder(44_100, 44_100, size, hop), OverlapAdd(2, size, hop)
    parts = [ola.add(y) for y in sep.separate(feeder.push(x))]
    windows, total = feeder.finish()
    ola.set_total(total)
    parts += [ola.add(y) for y in sep.separate(windows)]
    parts.append(ola.finish(total))
    return np.concatenate(parts, axis=1)


def mdx_trim(sep: MdxOnnxSeparator, x: np.ndarray) -> np.ndarray:
    size, trim = sep.window_samples, sep.params.n_fft // 2
    gen = size - 2 * trim
    n = x.shape[0]
    pad = np.concatenate([np.zeros((trim, 2), np.float32), x,
                          np.zeros((gen + trim, 2), np.float32)])
    starts = range(0, n, gen)
    windows = np.stack([pad[s : s + size].T for s in starts])
    y = sep.separate(windows)[:, :, trim : size - trim]
    return np.concatenate(list(y), axis=1)[:, :n]


def shift_sensitivity(fn, x: np.ndarray, shift: int) -> float:  # type: ignore[no-untyped-def]
    a = fn(x)
    shifted = np.concatenate([np.zeros((shift, 2), np.float32), x])
    b = fn(shifted)[:, shift:]
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(a**2)))


def main() -> None:
    x, _ = sf.read(str(resources.files("seamcut.samples") / "song_en.flac"),
                   dtype="float32", always_2d=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        build_mdx_onnx(path, n_fft=2048, hop=512, dim_f=512, dim_t=128, width=8, depth=2,
                       levels=4, weight_scale=1.0)
        sep = MdxOnnxSeparator(path, providers=["CPUExecutionProvider"])
        size = sep.window_samples
        print(f"window {size} samples ({size / 44100:.2f} s), trim {sep.params.n_fft // 2}")
        print("| scheme | model calls per second of audio | grid-shift sensitivity |")
        print("|---|---|---|")
        for overlap in (0.25, 0.5):
            hop = size - int(size * overlap)
            s = shift_sensitivity(lambda a, o=overlap: hann_ola(sep, a, o), x, hop // 2)
            print(f"| hann-ola, {int(overlap * 100)} % overlap | {44100 / hop:.2f} | {s:.4f} |")
        gen = size - sep.params.n_fft
        s = shift_sensitivity(lambda a: mdx_trim(sep, a), x, gen // 2)
        print(f"| mdx-trim (n_fft/2 each side) | {44100 / gen:.2f} | {s:.4f} |")


if __name__ == "__main__":
    main()
