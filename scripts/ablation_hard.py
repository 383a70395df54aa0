"""The ablation of the level caps (docs/QUALITY.md, "Hard conditions"): each variant's
cuts in words and pauses cut, summed per corpus.

The engine runs once per clip (Silero, the separator, the band energy); the detector,
a pure fold over those inputs, is then replayed under each variant of the cap
settings, so every row sees the same model outputs. Corpora: the hard conditions
(policy of scripts/eval_hard.py), the default song corpus and the default speech
corpus (default policy, as their quality tests use).

Usage (from the repo root):
    .venv/bin/python scripts/ablation_hard.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seamcut.server.config import ANALYSIS_RATE_HZ, HOP_SAMPLES, Mode, load_config
from seamcut.server.dsp import detector
from seamcut.server.engine.client import InprocEngine
from seamcut.server.events import CutKind
from seamcut.server.session import chain

from scripts.eval_hard import POLICY, Clip, clips, score, seamcut_cuts

# name: (SPEECH: valley, silent dB; SONG vocal claim: valley, silent dB; window ms; attack)
VARIANTS: dict[str, tuple[float, float, float, float, int, float]] = {
    "no caps (before)": (0, 0, 0, 0, 80, 0.3),
    "SPEECH foreground cap only": (6, 14, 0, 0, 80, 0.3),
    "SONG vocal-claim cap only": (0, 0, 4, 12, 80, 0.3),
    "both (default)": (6, 14, 4, 12, 80, 0.3),
    "SPEECH cap 4..12 dB": (4, 12, 4, 12, 80, 0.3),
    "SPEECH cap 8..16 dB": (8, 16, 4, 12, 80, 0.3),
    "SONG cap 6..14 dB": (6, 14, 6, 14, 80, 0.3),
    "SONG cap 8..16 dB": (6, 14, 8, 16, 80, 0.3),
    "level window 50 ms": (6, 14, 4, 12, 50, 0.3),
    "level window 120 ms": (6, 14, 4, 12, 120, 0.3),
    "level attack 0.1": (6, 14, 4, 12, 80, 0.1),
}


def record() -> dict[str, tuple[Clip, list[Any]]]:
    """Each clip's detector inputs, in the order the session fed them."""
    from tests.corpus import default_corpus
    from tests.song_corpus import default_song_corpus

    seen: list[tuple[detector.DetectorParams, detector.BlockInput]] = []
    real = chain.detect_step

    def spy(state: Any, params: Any, block: Any) -> Any:
        seen.append((params, block))
        return real(state, params, block)

    chain.detect_step = spy  # type: ignore[assignment]
    out: dict[str, tuple[Clip, list[Any]]] = {}
    songs = [Clip(c.name, c.mix, c.vocal, c.sample_rate_hz, c.speech, c.pauses, Mode.SONG)
             for c in default_song_corpus()]
    speech = [Clip(c.name, c.audio, None, c.sample_rate_hz, c.speech, c.pauses, Mode.SPEECH)
              for c in default_corpus()]
    for env, group, todo in ((POLICY, "hard", clips()), ({}, "songs", songs),
                             ({}, "speech", speech)):
        cfg = load_config(env=env)
        engine = InprocEngine(cfg)
        for clip in todo:
            seen.clear()
            seamcut_cuts(cfg, engine, clip, False)
            out[f"{group}:{clip.name}"] = (clip, list(seen))
        asyncio.run(engine.close())
    chain.detect_step = real  # type: ignore[assignment]
    return out


def replay(inputs: list[Any], v: tuple[float, float, float, float, int, float]) -> list[int]:
    params, first = inputs[0]
    song = first.probs_mix is not None  # SONG with the separator (and its mix vote)
    valley, silent = (v[2], v[3]) if song else (v[0], v[1])
    window = max(1, round(v[4] * ANALYSIS_RATE_HZ / 1000 / HOP_SAMPLES))
    p = dataclasses.replace(params, valley_db=valley, silent_db=silent,
                            valley_window=window, level_attack=v[5])
    return detector_cuts(p, [block for _, block in inputs])


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


def main() -> None:
    t0 = time.perf_counter()
    recorded = record()
    print("| variant | hard: in words | hard: pauses cut | songs: in words | songs: pauses "
          "cut | speech: in words | speech: pauses cut |")
    print("|---|---|---|---|---|---|---|")
    for name, v in VARIANTS.items():
        tot: dict[str, list[int]] = {}
        for key, (clip, inputs) in recorded.items():
            w, h, n = score(clip, replay(inputs, v))
            t = tot.setdefault(key.split(":")[0], [0, 0, 0])
            t[0], t[1], t[2] = t[0] + w, t[1] + h, t[2] + n
        cells = [f"{t[0]} | {t[1]} of {t[2]}" for t in tot.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
