"""Cut quality on the hard conditions (tests/hard_corpus.py), for docs/QUALITY.md.

One row per condition: seamcut (SONG with the built-in separator for songs, SPEECH
for the background-talker clips), seamcut with the clean vocal stem (songs), seamcut
in SPEECH mode on the song's mix (songs: SONG mode must not do worse), Silero
VAD on the mix and an RMS silence slicer (scripts/baselines.py); each cell is cuts
where the dry voice sounds / pauses >= 0.5 s holding a cut. Policy as the issue
states it: min segment 0.5 s, max segment 15 s.

Usage (from the repo root):
    .venv/bin/python scripts/eval_hard.py [--json PATH] [--no-caps] [--no-voice] [--no-floor]
        [--held-out [validation|second|third|fourth|fifth|recorded]]

``--no-caps``: the detector without its level caps (detector.foreground_valley_db and
vocal_valley_db 0), which is the detector as it was before 2026-12-02. ``--no-voice``:
without the voice detector (detector.voice_cap and voice_floor false); ``--no-floor``:
without its floor only (detector.voice_floor false; with a stem, the voice detector
then does not run). ``--held-out``: the 40 held-out generated
songs (tests/song_validation.py) instead of the hard rows, one row each and their
sums (1-2 min once the songs are cached); ``second`` ... ``fifth``: the
draws of 80 held-out songs made later (tests/song_validation.py ``HELD_OUT``, 2-3 min each);
``recorded``: 40 songs of real speakers (tests/recorded_songs.py ``judge_songs``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seamcut.server.config import AppConfig, AudioFormat, Encoding, Mode, load_config, stream_spec
from seamcut.server.engine.client import InprocEngine
from seamcut.server.events import Cut, CutKind
from seamcut.server.offline import analyze

from tests.helpers import encode, slice_bytes

POLICY = {"SEAMCUT_POLICY_MIN_SEGMENT_MS": "500", "SEAMCUT_POLICY_MAX_SEGMENT_MS": "15000"}
SONG_ONLY = ("stem", "speech_mode")  # methods that only mean something on a song


@dataclass(frozen=True)
class Clip:
    """What the scorers and baselines read, for songs and speech clips alike."""

    name: str
    mix: np.ndarray  # [frames, channels]
    vocal: np.ndarray | None  # the clean voice (songs), for the stem row
    sample_rate_hz: int
    speech: tuple[tuple[int, int], ...]
    pauses: tuple[tuple[int, int], ...]
    mode: Mode
    # the stream's policy overrides: background talkers' clips set background_voices,
    # as a user who knows of them would
    policy: tuple[tuple[str, Any], ...] = ()

    @property
    def frames(self) -> int:
        return int(self.mix.shape[0])


def song_clip(c: Any) -> Clip:
    """A generated song (tests/song_corpus.py SongClip) as a SONG-mode clip."""
    return Clip(c.name, c.mix, c.vocal, c.sample_rate_hz, c.speech, c.pauses, Mode.SONG)


def clips() -> list[Clip]:
    from tests.hard_corpus import babble_clips, hard_songs

    out = [song_clip(c) for c in hard_songs()]
    out += [Clip(c.name, c.audio, None, c.sample_rate_hz, c.speech, c.pauses, Mode.SPEECH,
                 (("background_voices", True),) if c.name.startswith("babble") else ())
            for c in babble_clips()]
    return out


def seamcut_cuts(cfg: AppConfig, engine: InprocEngine, clip: Clip, stem: bool,
                 mode: Mode | None = None) -> list[int]:
    """seamcut's cuts in the clip's own mode (or ``mode``), from the mix or with the
    clean vocal stem as a third channel."""
    audio = clip.mix
    if stem:
        assert clip.vocal is not None
        audio = np.concatenate([clip.mix, clip.vocal[:, :1]], axis=1)
    ch = audio.shape[1]
    spec = stream_spec(cfg, format=AudioFormat(encoding=Encoding.F32LE,
                                               sample_rate_hz=clip.sample_rate_hz, channels=ch),
                       mode=mode or clip.mode, policy_overrides=dict(clip.policy),
                       event_overrides={},
                       vocal_stem_channels=(2,) if stem else ())
    chunks = slice_bytes(encode(audio, Encoding.F32LE), 4 * ch, [clip.sample_rate_hz // 5])
    return [e.sample for e in analyze(cfg, spec, chunks, engine)
            if isinstance(e, Cut) and e.kind is not CutKind.END]


def score(clip: Clip, cuts: list[int]) -> tuple[int, int, int]:
    """(cuts where the dry voice sounds, pauses >= 0.5 s cut, such pauses).

    A pause is the inserted gap, and it holds a cut anywhere in the dry voice's
    silence around it: a phrase's synthesised audio ends in up to ~150 ms of its own
    silence before the gap, and a cut there is as clean as one inside the gap (before
    2026-12-06 such a cut, 10 ms before a gap, did not count; docs/QUALITY.md)."""
    in_words = sum(any(a < x < b for a, b in clip.speech) for x in cuts)
    held = 0
    long = [(a, b) for a, b in clip.pauses if b - a >= clip.sample_rate_hz // 2]
    for a, b in long:
        lo = max((end for _, end in clip.speech if end <= a), default=0)
        hi = min((start for start, _ in clip.speech if start >= b), default=clip.frames)
        held += any(lo <= x <= hi for x in cuts)
    return in_words, held, len(long)


def evaluate(methods: dict[str, Any], todo: list[Clip]) -> dict[str, dict[str, list[int]]]:
    table: dict[str, dict[str, list[int]]] = {}
    for clip in todo:
        row = table.setdefault(clip.name, {})
        for name, fn in methods.items():
            if name in SONG_ONLY and clip.mode is not Mode.SONG:
                continue
            row[name] = list(score(clip, fn(clip)))
    return table


def main() -> None:
    from scripts.baselines import rms_slicer_cuts, silero_mix_cuts

    env = dict(POLICY)
    if "--no-caps" in sys.argv[1:]:  # the detector as it was before the level caps
        env |= {"SEAMCUT_DETECTOR_FOREGROUND_VALLEY_DB": "0",
                "SEAMCUT_DETECTOR_VOCAL_VALLEY_DB": "0"}
    if "--no-voice" in sys.argv[1:]:
        env |= {"SEAMCUT_DETECTOR_VOICE_CAP": "false", "SEAMCUT_DETECTOR_VOICE_FLOOR": "false"}
    if "--no-floor" in sys.argv[1:]:
        env |= {"SEAMCUT_DETECTOR_VOICE_FLOOR": "false"}
    todo = clips()
    if "--held-out" in sys.argv[1:]:
        from tests.song_validation import HELD_OUT, held_out_songs

        after = sys.argv[sys.argv.index("--held-out") + 1:]
        draw = after[0] if after and after[0] in (*HELD_OUT, "recorded") else "validation"
        if draw == "recorded":
            from tests.recorded_songs import judge_songs

            todo = [song_clip(c) for c in judge_songs()]
        else:
            todo = [song_clip(c) for c in held_out_songs(draw)]
    cfg = load_config(env=env)
    engine = InprocEngine(cfg)
    methods: dict[str, Any] = {
        "seamcut": lambda c: seamcut_cuts(cfg, engine, c, False),
        "stem": lambda c: seamcut_cuts(cfg, engine, c, True),
        "speech_mode": lambda c: seamcut_cuts(cfg, engine, c, False, Mode.SPEECH),
        "silero_mix": silero_mix_cuts,
        "rms": rms_slicer_cuts,
    }
    t0 = time.perf_counter()
    table = evaluate(methods, todo)
    asyncio.run(engine.close())
    print("| condition | seamcut | seamcut, clean stem | seamcut SPEECH mode on the mix "
          "| Silero VAD on the mix | RMS slicer |")
    print("|---|---|---|---|---|---|")
    for name, row in table.items():
        cells = [f"{row[m][0]} / {row[m][1]} of {row[m][2]}" if m in row else "–"
                 for m in methods]
        print(f"| {name} | " + " | ".join(cells) + " |")
    sums = [[sum(row[m][i] for row in table.values() if m in row) for i in range(3)]
            for m in methods]
    print("| **sum** | " + " | ".join(f"{w} / {h} of {n}" if n else "–" for w, h, n in sums)
          + " |")
    print(f"\n(cuts in words / pauses >= 0.5 s cut; {time.perf_counter() - t0:.0f} s)")
    if "--json" in sys.argv[1:]:
        path = sys.argv[sys.argv.index("--json") + 1]
        Path(path).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"),
                                          "env": env, "table": table}, indent=1))


if __name__ == "__main__":
    main()
