"""The fusion study (docs/QUALITY.md, "Fusion study"): can SONG mode's remaining misses
be fixed from the cues the detector already has, or from a pitch cue on the vocal
estimate? Each variant's cuts in words and pauses cut, summed per corpus.

The engine runs once per clip; its detector inputs (Silero on the vocal estimate and
on the mix, the estimate's band energy) and the estimate itself (the 16 kHz audio S3
sees) are recorded, and each variant is a pure rewrite of those inputs replayed
through the real detector (``detect_step``), as scripts/ablation_hard.py does.
Variants (every rewrite uses only the hop and hops before it, as a streaming detector
would have to):

* weak claim: where the vocal estimate says speech but Silero on the mix is below
  ``Tm``, the hop counts as silence (never as a cut position) if its silence run holds
  a true silence of at least ``S`` hops; the separator's leaks in pauses are such hops;
* steady pitch: hops where the estimate carries a confident pitch that moved less than
  ``cents`` over the last ``n`` hops (a held instrument note; speech glides) lose
  their speech claim, on the vocal estimate alone or on both sources;
* learned fusion: a logistic regression over 28 causal per-hop features (both
  probabilities, their lags and running means, the estimate's level against its
  running, minimum and maximum levels), trained on the even half of the held-out
  validation songs (tests/song_validation.py), judged on the odd half and on the
  quality corpora, which it never saw;
* learned voice detector: a small network (log-mel spectra of the mix and of the
  estimate over the last 320 ms, both Silero probabilities; 84 k weights) trained on
  160 more generated songs (``tests.song_validation.generated_specs``, other seeds)
  to say where the dry voice sounds; its output replaces the vocal estimate's claim
  (the mix vote and the caps stay), at the separated hysteresis or at 0.3 below the
  threshold.

Usage (from the repo root; ~8 min, most of it the engine):
    .venv/bin/python scripts/fusion_study.py
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seamcut.server.config import HOP_SAMPLES, Mode, load_config
from seamcut.server.dsp import detector
from seamcut.server.engine import core
from seamcut.server.engine.client import InprocEngine
from seamcut.server.events import CutKind
from seamcut.server.session import chain

from scripts.eval_hard import POLICY, Clip, clips, score, seamcut_cuts, song_clip


@dataclasses.dataclass
class Recorded:
    clip: Clip
    inputs: list[tuple[detector.DetectorParams, detector.BlockInput]]
    estimate: np.ndarray  # the vocal estimate at 16 kHz, as S3 saw it
    mix: np.ndarray  # the mono mix at 16 kHz, as S2 saw it

    def cat(self, name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for _, b in self.inputs]).astype(np.float64)


def default_groups() -> dict[str, tuple[dict[str, str], list[Clip]]]:
    from tests.song_corpus import default_song_corpus
    from tests.song_validation import held_out_songs

    return {"hard": (POLICY, [c for c in clips() if c.mode is Mode.SONG]),
            "songs": ({}, [song_clip(c) for c in default_song_corpus()]),
            "validation": (POLICY, [song_clip(c) for c in held_out_songs("validation")])}


@dataclasses.dataclass
class Spy:
    """What the engine and the detector saw since the last :meth:`clear`."""

    inputs: list[tuple[detector.DetectorParams, detector.BlockInput]] = dataclasses.field(
        default_factory=list)
    estimate: list[np.ndarray] = dataclasses.field(default_factory=list)  # S3's, per request
    mix: list[np.ndarray] = dataclasses.field(default_factory=list)  # S2's, per request

    def clear(self) -> None:
        self.inputs.clear()
        self.estimate.clear()
        self.mix.clear()


@contextlib.contextmanager
def spying() -> Iterator[Spy]:
    """Record every detector step (``chain.detect_step``) and the 16 kHz audio of every
    S3 request (``EngineCore.features``) while the block runs, in process."""
    spy = Spy()
    real_step, real_features = chain.detect_step, core.EngineCore.features

    def spy_step(state: Any, params: Any, block: Any) -> Any:
        spy.inputs.append((params, block))
        return real_step(state, params, block)

    def spy_features(self: Any, req: Any, res: Any) -> Any:
        spy.estimate.append(np.array(req.audio[HOP_SAMPLES:]))
        spy.mix.append(np.array(req.mix))
        return real_features(self, req, res)

    chain.detect_step = spy_step  # type: ignore[assignment]
    core.EngineCore.features = spy_features  # type: ignore[method-assign]
    try:
        yield spy
    finally:
        chain.detect_step = real_step  # type: ignore[assignment]
        core.EngineCore.features = real_features  # type: ignore[method-assign]


def record(groups: dict[str, tuple[dict[str, str], list[Clip]]]
           ) -> dict[str, dict[str, Recorded]]:
    """Each group's clips through the in-process engine (its env), recorded."""
    out: dict[str, dict[str, Recorded]] = {}
    with spying() as spy:
        for group, (env, todo) in groups.items():
            cfg = load_config(env=env)
            engine = InprocEngine(cfg)
            for clip in todo:
                spy.clear()
                seamcut_cuts(cfg, engine, clip, False)
                out.setdefault(group, {})[clip.name] = Recorded(
                    clip, list(spy.inputs), np.concatenate(spy.estimate),
                    np.concatenate(spy.mix))
            asyncio.run(engine.close())
    return out


def detector_cuts(params: detector.DetectorParams,
                  blocks: Iterable[detector.BlockInput]) -> list[int]:
    """The cuts (but the END cut) of the detector fold over ``blocks`` under ``params``."""
    state, cuts = detector.DetectorState(), []
    for block in blocks:
        state, events = detector.detect_step(state, params, block)
        if block.is_last:
            state, tail = detector.detect_finish(
                state, params, block.client_start + int(block.client.shape[0]))
            events += tail
        cuts += [e.sample for e in events
                 if isinstance(e, detector.CutDecision) and e.kind is not CutKind.END]
    return cuts


# ---------------------------------------------------------------- replay
Rewrite = Callable[[Recorded], tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]]


def replay(rec: Recorded, rewrite: Rewrite | None, neg_below: float | None = None) -> list[int]:
    """The detector's cuts on the recorded inputs, rewritten per hop by ``rewrite``:
    (vocal probability, energy, mix probability or None, caps off); ``neg_below``:
    speech ends this far below the threshold instead."""
    params = rec.inputs[0][0]
    if neg_below is not None:
        params = dataclasses.replace(params, neg_threshold=params.threshold - neg_below)
    if rewrite is not None:
        probs, energy, mix, no_caps = rewrite(rec)
        if no_caps:
            params = dataclasses.replace(params, valley_db=0.0, silent_db=0.0)
    blocks, pos = [], 0
    for _, recorded in rec.inputs:
        n = int(recorded.probs.shape[0])
        blocks.append(recorded if rewrite is None else dataclasses.replace(
            recorded, probs=probs[pos:pos + n].astype(np.float32),
            energy_db=energy[pos:pos + n].astype(np.float32),
            probs_mix=None if mix is None else mix[pos:pos + n].astype(np.float32)))
        pos += n
    return detector_cuts(params, blocks)


def effective(rec: Recorded) -> np.ndarray:
    """The detector's own per-hop probability (caps and mix vote applied)."""
    params = rec.inputs[0][0]
    state, out = detector.DetectorState(), []
    for _, block in rec.inputs:
        run = detector._Run(state, params)
        out.append(run.effective_probs(block))
        state, _ = detector.detect_step(state, params, block)
    return np.concatenate(out).astype(np.float64)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def weak_claim(tm: float, s: int) -> Rewrite:
    def rewrite(rec: Recorded) -> tuple[np.ndarray, np.ndarray, None, bool]:
        eff, mix, energy = effective(rec), rec.cat("probs_mix"), rec.cat("energy_db")
        silent = eff < rec.inputs[0][0].neg_threshold
        weak = ~silent & (mix < tm)
        take = np.zeros(eff.shape, bool)
        for a, b in _runs(silent | weak):
            if max([y - x for x, y in _runs(silent[a:b])] or [0]) >= s:
                take[a:b] |= weak[a:b]
        return np.where(take, 0.0, eff), np.where(take, 100.0, energy), None, True
    return rewrite


def pitch(x: np.ndarray, win: int = 640, fmin: int = 70, fmax: int = 500,
          rate: int = 16_000) -> tuple[np.ndarray, np.ndarray]:
    """Per hop, the pitch (Hz) and its normalised autocorrelation peak over the
    ``win`` samples that end at the hop's end (causal)."""
    n = x.shape[0] // HOP_SAMPLES
    padded = np.concatenate([np.zeros(win), x])
    frames = sliding_window_view(padded, win)[HOP_SAMPLES : HOP_SAMPLES * (n + 1) : HOP_SAMPLES]
    frames = frames - frames.mean(axis=1, keepdims=True)
    r = np.fft.irfft(np.abs(np.fft.rfft(frames, 2048, axis=1)) ** 2, 2048, axis=1)
    lags = np.arange(rate // fmax, rate // fmin + 2)
    cs = np.concatenate([np.zeros((frames.shape[0], 1)), np.cumsum(frames ** 2, axis=1)], 1)
    nacf = r[:, lags] / np.sqrt(cs[:, win - lags] * (cs[:, win:] - cs[:, lags]) + 1e-12)
    k = np.argmax(nacf[:, 1:-1], axis=1) + 1
    rows = np.arange(k.shape[0])
    a, b, c = nacf[rows, k - 1], nacf[rows, k], nacf[rows, k + 1]
    den = a - 2 * b + c
    shift = np.clip(np.where(np.abs(den) > 1e-9, 0.5 * (a - c) / np.where(den == 0, 1, den),
                             0.0), -1, 1)
    return rate / (lags[k] + shift), b


def steady_pitch(n: int, conf: float, cents: float, both: bool) -> Rewrite:
    def rewrite(rec: Recorded) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        probs, mix = rec.cat("probs"), rec.cat("probs_mix")
        f0, strength = pitch(rec.estimate)
        c = 1200 * np.log2(f0)
        steady = np.zeros(probs.shape, bool)
        m = min(probs.shape[0], c.shape[0]) - n + 1
        if m > 0:
            span = (sliding_window_view(c, n).max(1) - sliding_window_view(c, n).min(1))[:m]
            sure = sliding_window_view(strength, n).min(1)[:m] >= conf
            steady[n - 1 : n - 1 + m] = sure & (span <= cents)
        return (np.where(steady, 0.0, probs), rec.cat("energy_db"),
                np.where(steady, 0.0, mix) if both else mix, False)
    return rewrite


# ---------------------------------------------------------------- learned fusion
def _lag(x: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate([np.full(k, x[0]), x[:-k]])


def _window(x: np.ndarray, k: int, fn: Callable[..., np.ndarray]) -> np.ndarray:
    return np.asarray(fn(sliding_window_view(np.concatenate([np.full(k - 1, x[0]), x]), k),
                         axis=1))


def features(rec: Recorded) -> np.ndarray:
    p, m, e = rec.cat("probs"), rec.cat("probs_mix"), rec.cat("energy_db")
    smooth = 10 * np.log10(_window(10 ** (e / 10), 8, np.mean) + 1e-12)
    level, running = None, np.empty_like(smooth)  # the caps' running level
    for i, (x, pv) in enumerate(zip(smooth.tolist(), np.maximum(p, m).tolist(), strict=True)):
        running[i] = x if level is None else level
        if level is None:
            level = x if pv >= 0.5 else None
        elif pv >= 0.5 or x > level:
            level += (0.3 if x > level else 0.005) * (x - level)
    cols = [p, m, np.maximum(p, m), np.minimum(p, m)]
    for k in (3, 6, 12, 24):
        cols += [_lag(p, k), _lag(m, k)]
    for k in (30, 100):
        cols += [_window(p, k, np.mean), _window(m, k, np.mean)]
    cols += [_window(m, 30, np.max), _window(p, 30, np.max),
             np.clip(smooth - running, -30, 10) / 10,
             np.clip(smooth - _window(smooth, 50, np.min), 0, 40) / 10,
             np.clip(smooth - _window(smooth, 50, np.max), -40, 0) / 10,
             np.clip(e - _lag(e, 3), -20, 20) / 10]
    return np.stack(cols, axis=1)


def labels(rec: Recorded, n: int) -> np.ndarray:
    t = np.array([rec.inputs[0][0].to_client(h) for h in range(n)])
    y = np.zeros(n)
    for a, b in rec.clip.speech:
        y[(t >= a) & (t < b)] = 1.0
    return y


def learned(train: list[Recorded]) -> Rewrite:
    x = np.concatenate([features(r) for r in train])
    y = np.concatenate([labels(r, features(r).shape[0]) for r in train])
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.concatenate([(x - mu) / sd, np.ones((x.shape[0], 1))], axis=1)
    w = np.zeros(z.shape[1])
    for _ in range(3000):  # plain gradient descent on the L2-regularised log loss
        w -= 0.5 * (z.T @ (1 / (1 + np.exp(-z @ w)) - y) / y.shape[0] + 1e-3 * w)

    def rewrite(rec: Recorded) -> tuple[np.ndarray, np.ndarray, None, bool]:
        f = (features(rec) - mu) / sd
        fused = 1 / (1 + np.exp(-(f @ w[:-1] + w[-1])))
        return fused, rec.cat("energy_db"), None, True
    return rewrite


# ---------------------------------------------------------------- learned voice detector
def learned_detector(train: list[Recorded]) -> Callable[[tuple[float, float] | None], Rewrite]:
    """The network of scripts/voice_net.py trained on ``train``; each variant uses it as
    the vocal estimate's claim (None) or caps that claim by it, from none at ``cap[0]``
    to full at ``cap[1]``."""
    from scripts import voice_net

    weights = voice_net.train(train)

    def variant(cap: tuple[float, float] | None) -> Rewrite:
        def rewrite(rec: Recorded) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
            q = voice_net.forward(weights, voice_net.features(rec)).astype(np.float64)
            if cap is not None:
                q = np.minimum(rec.cat("probs"), np.clip((q - cap[0]) / (cap[1] - cap[0]), 0, 1))
            return q, rec.cat("energy_db"), rec.cat("probs_mix"), False
        return rewrite
    return variant


def main() -> None:
    t0 = time.perf_counter()
    from scripts import voice_net
    from tests.song_validation import WIDE_CHORDS, generated_specs, song_cache

    groups = default_groups()
    train = song_cache(generated_specs(*voice_net.TRAIN, WIDE_CHORDS))
    groups["train"] = (POLICY, [song_clip(c) for c in train])
    recorded = record(groups)
    val = list(recorded["validation"].values())
    judged = {"hard": list(recorded["hard"].values()), "songs": list(recorded["songs"].values()),
              "validation": val[1::2], "all": val}
    net = learned_detector(list(recorded["train"].values()))
    variants: dict[str, tuple[Rewrite | None, float | None]] = {
        "detector as it is (default)": (None, None),
        "weak claim, Tm 0.15, S 10": (weak_claim(0.15, 10), None),
        "weak claim, Tm 0.35, S 10": (weak_claim(0.35, 10), None),
        "weak claim, Tm 0.35, S 6": (weak_claim(0.35, 6), None),
        "steady pitch 100 ms, vocal claim": (steady_pitch(10, 0.8, 12, False), None),
        "steady pitch 100 ms, both sources": (steady_pitch(10, 0.8, 12, True), None),
        "steady pitch 60 ms, both sources": (steady_pitch(6, 0.85, 10, True), None),
        "learned fusion (logistic, 28 features)": (learned(val[0::2]), None),
        "learned voice detector as the vocal claim": (net(None), None),
        "the same, speech ends 0.3 below the threshold": (net(None), 0.3),
        "learned voice detector capping the vocal claim (0.1..0.6)": (net((0.1, 0.6)), None),
    }
    print("| variant | hard songs: in words | pauses cut | default songs: in words | "
          "pauses cut | held-out half: in words | pauses cut | all 40 held-out: in words "
          "| pauses cut |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (rewrite, neg_below) in variants.items():
        cells = []
        for recs in judged.values():
            w = h = n = 0
            for rec in recs:
                a, b, c = score(rec.clip, replay(rec, rewrite, neg_below))
                w, h, n = w + a, h + b, n + c
            cells += [str(w), f"{h} of {n}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
