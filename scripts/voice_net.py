"""A small learned voice detector for SONG mode with the built-in separator: the
fusion study's network (docs/QUALITY.md, "Fusion study"; not used by the server).

The built-in separator leaks centred accompaniment (an organ chord, a guitar note) into
its vocal estimate; Silero hears the leak as voice and splits a pause in two
(docs/QUALITY.md, "Hard conditions"). This network looks at what the detector's three
per-hop signals cannot: the log-mel spectra of the mix and of the vocal estimate over
the last 320 ms, with both Silero probabilities, and says per 10 ms hop whether a dry
voice sounds. The study's variants use it as the vocal estimate's own claim or cap that
claim by it; the mix's vote and the level caps stay as they are.

Trained by :func:`train` on songs the project generates (voices, languages,
instruments and seeds that no quality corpus uses; ``tests/song_validation.py``),
84 k weights (~320 KB). Inference is NumPy only, so a server could run it with the
detector; it is not shipped because it adds cuts in words on held-out songs (the
study's table).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from seamcut.server.dsp import voice

HOP = 160  # the analysis hop (seamcut.server.config.HOP_SAMPLES)
RATE = 16_000
WIN = 512  # each hop's 32 ms window ends at the hop's end
MELS = 40
CONTEXT, STRIDE = 16, 2  # 16 frames, every other hop: the last 320 ms
REACH = CONTEXT * STRIDE  # hops of log-mel history a hop's input needs
LAGS = (3, 9)  # hops back of the probabilities besides the hop's own
FLOATS = np.float32


_BANK = voice.mel_bank(MELS, WIN, RATE, lo=80.0)
_HANN = np.hanning(WIN)


def log_mel(x: np.ndarray, hops: int) -> np.ndarray:
    """[hops, MELS]: hop i's window is ``x[i*HOP : i*HOP + WIN]``; ``x`` starts with
    ``WIN - HOP`` samples before hop 0, so each window ends at its hop's end. Short
    input reads zeros past its end."""
    need = (WIN - HOP) + hops * HOP
    if x.shape[0] < need:
        x = np.concatenate([x, np.zeros(need - x.shape[0], x.dtype)])
    idx = np.arange(hops)[:, None] * HOP + np.arange(WIN)[None, :]
    power = np.abs(np.fft.rfft(x[idx].astype(np.float64) * _HANN, axis=1)) ** 2
    return np.log10(power @ _BANK.T + 1e-10)


@dataclass(frozen=True, slots=True)
class Weights:
    mu: np.ndarray
    sd: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (W [in, out], b [out]) per layer


def inputs(spec: np.ndarray, probs: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Network inputs [hops, ...] from the log-mel history ``spec`` [REACH + hops, 2 *
    MELS] (mix, then estimate) and the probabilities [max(LAGS) + hops] of each source,
    both with their history first."""
    hops = spec.shape[0] - REACH
    idx = np.arange(hops)[:, None] + REACH - np.arange(0, REACH, STRIDE)[None, :]
    stack = spec[idx]  # [hops, CONTEXT, 2 * MELS], newest frame first
    stack = stack - stack[:, :, :MELS].mean(axis=2).max(axis=1)[:, None, None]  # gain-free
    back = max(LAGS)
    cols = [probs[back:], mix[back:]]
    for lag in LAGS:
        cols += [probs[back - lag : back - lag + hops], mix[back - lag : back - lag + hops]]
    return np.concatenate([stack.reshape(hops, -1), np.stack(cols, axis=1)],
                          axis=1).astype(FLOATS)


def forward(w: Weights, x: np.ndarray) -> np.ndarray:
    """Voice probability per row of ``x``."""
    h = (x - w.mu) / w.sd
    for i, (weight, bias) in enumerate(w.layers):
        h = h @ weight + bias
        if i < len(w.layers) - 1:
            h = np.maximum(h, 0)
    return np.asarray(1 / (1 + np.exp(-h[:, 0].astype(np.float64))), dtype=FLOATS)


def offline(estimate: np.ndarray, mix: np.ndarray, probs: np.ndarray,
            probs_mix: np.ndarray) -> np.ndarray:
    """Network inputs [hops, ...] for a whole stream (causal: each hop's row reads only
    the audio up to its end and the probabilities up to it)."""
    hops = probs.shape[0]
    pad = np.zeros(WIN - HOP, FLOATS)
    spec = np.concatenate([log_mel(np.concatenate([pad, mix]), hops),
                           log_mel(np.concatenate([pad, estimate]), hops)], axis=1)
    back = max(LAGS)
    return inputs(np.concatenate([np.repeat(spec[:1], REACH, axis=0), spec]),
                  np.concatenate([np.full(back, probs[0]), probs]),
                  np.concatenate([np.full(back, probs_mix[0]), probs_mix]))


# ---------------------------------------------------------------- training
# The training songs: tests.song_validation.generated_specs(*TRAIN, WIDE_CHORDS).
TRAIN = ("train", 160, 7, 5000)  # prefix, count, generator seed, first clip seed
HIDDEN = (64, 32)
EPOCHS = 8
SEED = 0


def features(rec: Any) -> np.ndarray:
    return offline(rec.estimate, rec.mix, rec.cat("probs"), rec.cat("probs_mix"))


def train(recs: list[Any]) -> Weights:
    """An MLP on every hop of ``recs`` (binary cross-entropy, Adam, dropout 0.2)."""
    import torch

    from scripts.fusion_study import labels

    torch.manual_seed(SEED)
    x = np.concatenate([features(r) for r in recs])
    y = np.concatenate([labels(r, r.cat("probs").shape[0]) for r in recs]).astype(np.float32)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-5
    xt, yt = torch.from_numpy((x - mu) / sd), torch.from_numpy(y)
    sizes = (x.shape[1], *HIDDEN, 1)
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
            if i == 0:
                layers.append(torch.nn.Dropout(0.2))
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    for _ in range(EPOCHS):
        order = torch.randperm(xt.shape[0])
        for i in range(0, order.shape[0], 512):
            b = order[i : i + 512]
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(net(xt[b])[:, 0], yt[b]).backward()
            opt.step()
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    return Weights(
        mu=mu.astype(np.float32), sd=sd.astype(np.float32),
        layers=tuple((m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
                     for m in linear))
