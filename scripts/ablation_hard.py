"""The ablation of the level caps, the separated onset margin and the voice detector
(docs/QUALITY.md, "Hard conditions"): each variant's cuts in words and pauses cut,
summed per corpus.

The engine runs once per clip (Silero, the separator, the band energy); the detector,
a pure fold over those inputs, is then replayed under each variant of the cap
settings, so every row sees the same model outputs. Corpora: the hard conditions
(policy of scripts/eval_hard.py), the default song corpus and the default speech
corpus (default policy, as their quality tests use), and the 40 songs of real speakers
(tests/recorded_songs.py ``judge_songs``; the hard rows' policy). The SPEECH
foreground cap applies where the stream asks for it (``policy.background_voices``: the
background-talker rows).

Usage (from the repo root):
    .venv/bin/python scripts/ablation_hard.py [--held-out]

``--held-out``: the four held-out draws of generated songs too
(tests/song_validation.py ``HELD_OUT``: 40 and four times 80 songs; ~6 min more).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seamcut.server.config import ANALYSIS_RATE_HZ, HOP_SAMPLES, Mode

from scripts import fusion_study
from scripts.eval_hard import POLICY, Clip, clips, score, song_clip
from scripts.fusion_study import Recorded

# name: (SPEECH: valley, silent dB; SONG vocal claim: valley, silent dB; window ms; attack;
# the onset margin on a separated vocal, ms; the voice detector's cap: its (low, high)
# probabilities, or None for off; its floor on or off)
Voice = tuple[float, float] | None
ON = (0.1, 0.7)  # the default (DetectorConfig.voice_cap_low, voice_cap_high)
Variant = tuple[float, float, float, float, int, float, int, Voice, bool]
VARIANTS: dict[str, Variant] = {
    "no caps, onset margin 100 ms (before)": (0, 0, 0, 0, 80, 0.3, 100, None, True),
    "SPEECH foreground cap only": (6, 14, 0, 0, 80, 0.3, 100, None, True),
    "SONG vocal-claim cap only": (0, 0, 4, 12, 80, 0.3, 100, None, True),
    "both caps, onset margin 100 ms (2026-12-02)": (6, 14, 4, 12, 80, 0.3, 100, None, True),
    "both caps, separated onset margin 200 ms": (6, 14, 4, 12, 80, 0.3, 200, None, True),
    "the same and the voice detector's cap 0.1..0.7": (6, 14, 4, 12, 80, 0.3, 200, ON, False),
    "**the same and its floor 0.8..0.95 (default)**": (6, 14, 4, 12, 80, 0.3, 200, ON, True),
    "the voice detector, onset margin 100 ms": (6, 14, 4, 12, 80, 0.3, 100, ON, True),
    "separated onset margin 150 ms": (6, 14, 4, 12, 80, 0.3, 150, ON, True),
    "separated onset margin 250 ms": (6, 14, 4, 12, 80, 0.3, 250, ON, True),
    "SPEECH cap 4..12 dB": (4, 12, 4, 12, 80, 0.3, 200, ON, True),
    "SPEECH cap 8..16 dB": (8, 16, 4, 12, 80, 0.3, 200, ON, True),
    "SONG cap 6..14 dB": (6, 14, 6, 14, 80, 0.3, 200, ON, True),
    "SONG cap 8..16 dB": (6, 14, 8, 16, 80, 0.3, 200, ON, True),
    "level window 50 ms": (6, 14, 4, 12, 50, 0.3, 200, ON, True),
    "level window 120 ms": (6, 14, 4, 12, 120, 0.3, 200, ON, True),
    "level attack 0.1": (6, 14, 4, 12, 80, 0.1, 200, ON, True),
    "voice cap 0.05..0.5": (6, 14, 4, 12, 80, 0.3, 200, (0.05, 0.5), True),
    "voice cap 0.1..0.6 (the first default)": (6, 14, 4, 12, 80, 0.3, 200, (0.1, 0.6), True),
    "voice cap 0.1..0.8": (6, 14, 4, 12, 80, 0.3, 200, (0.1, 0.8), True),
    "voice cap 0.1..0.9": (6, 14, 4, 12, 80, 0.3, 200, (0.1, 0.9), True),
    "voice cap 0.2..0.7": (6, 14, 4, 12, 80, 0.3, 200, (0.2, 0.7), True),
    "voice cap 0.3..0.8": (6, 14, 4, 12, 80, 0.3, 200, (0.3, 0.8), True),
}
FLOORS = {"voice floor 0.6..0.8": (0.6, 0.8), "voice floor 0.7..0.8": (0.7, 0.8),
          "voice floor 0.7..0.9": (0.7, 0.9), "voice floor 0.75..0.9": (0.75, 0.9),
          "voice floor 0.85..0.95": (0.85, 0.95),
          "voice floor 0.9..0.98": (0.9, 0.98)}  # with every default but the floor's range


def record(held_out: bool) -> dict[str, dict[str, Recorded]]:
    """Each clip's detector inputs, in the order the session fed them."""
    from tests.corpus import default_corpus
    from tests.recorded_songs import judge_songs
    from tests.song_corpus import default_song_corpus
    from tests.song_validation import HELD_OUT, held_out_songs

    songs = [song_clip(c) for c in default_song_corpus()]
    speech = [Clip(c.name, c.audio, None, c.sample_rate_hz, c.speech, c.pauses, Mode.SPEECH)
              for c in default_corpus()]
    groups = {"hard": (POLICY, clips()), "songs": ({}, songs), "speech": ({}, speech),
              "real": (POLICY, [song_clip(c) for c in judge_songs()])}
    if held_out:
        groups |= {draw: (POLICY, [song_clip(c) for c in held_out_songs(draw)])
                   for draw in HELD_OUT}
    return fusion_study.record(groups)


def replay(inputs: list[Any], v: Variant, floor: tuple[float, float] | None = None
           ) -> list[int]:
    params, first = inputs[0]
    song = first.probs_mix is not None  # SONG with the separator (and its mix vote)
    # SPEECH: the foreground cap runs where the stream asked for it (background_voices)
    valley, silent = (v[2], v[3]) if song else (v[0], v[1]) if params.valley_db else (0, 0)
    window = max(1, round(v[4] * ANALYSIS_RATE_HZ / 1000 / HOP_SAMPLES))
    p = dataclasses.replace(params, valley_db=valley, silent_db=silent,
                            valley_window=window, level_attack=v[5])
    if song:
        p = dataclasses.replace(p, margin_end=round(v[6] * ANALYSIS_RATE_HZ / 1000 / HOP_SAMPLES),
                                voice_cap=v[7] is not None)
        p = dataclasses.replace(p, voice_floor=v[8] and v[7] is not None)
        if v[7] is not None:
            p = dataclasses.replace(p, voice_low=v[7][0], voice_high=v[7][1])
        if floor is not None:
            p = dataclasses.replace(p, voice_floor_low=floor[0], voice_floor_high=floor[1])
    return fusion_study.detector_cuts(p, [block for _, block in inputs])


def main() -> None:
    t0 = time.perf_counter()
    recorded = record("--held-out" in sys.argv[1:])
    print("| variant | " + " | ".join(f"{g}: in words | {g}: pauses cut" for g in recorded)
          + " |")
    print("|---|" + "---|---|" * len(recorded))
    default = VARIANTS["**the same and its floor 0.8..0.95 (default)**"]
    rows = [(name, v, None) for name, v in VARIANTS.items()]
    rows += [(name, default, floor) for name, floor in FLOORS.items()]
    for name, v, floor in rows:
        cells = []
        for group in recorded.values():
            w = h = n = 0
            for rec in group.values():
                a, b, c = score(rec.clip, replay(rec.inputs, v, floor))
                w, h, n = w + a, h + b, n + c
            cells.append(f"{w} | {h} of {n}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
