"""SONG-mode cut quality on the song corpus (tests/song_corpus.py), for docs/QUALITY.md.

Compares seamcut SONG mode (built-in separator), seamcut with the clean vocal stem
supplied by the client, Silero VAD run on the mix (cut mid-gap), and an RMS silence
slicer of the kind singing-voice dataset tools use.

Usage (from the repo root):
    .venv/bin/python scripts/eval_song.py            # the comparison table
    .venv/bin/python scripts/eval_song.py --sweep    # + sensitivity to the VAD settings
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seamcut.server.config import AppConfig, AudioFormat, Encoding, Mode, load_config, stream_spec
from seamcut.server.engine.client import InprocEngine
from seamcut.server.events import Cut, CutKind
from seamcut.server.offline import analyze

from tests.helpers import encode, slice_bytes
from tests.song_corpus import SongClip, default_song_corpus


def seamcut_cuts(cfg: AppConfig, engine: InprocEngine, clip: SongClip, stem: bool) -> list[int]:
    audio = np.concatenate([clip.mix, clip.vocal[:, :1]], axis=1) if stem else clip.mix
    ch = audio.shape[1]
    spec = stream_spec(cfg, format=AudioFormat(encoding=Encoding.F32LE,
                                               sample_rate_hz=clip.sample_rate_hz, channels=ch),
                       mode=Mode.SONG, policy_overrides={}, event_overrides={},
                       vocal_stem_channels=(2,) if stem else ())
    data = encode(audio, Encoding.F32LE)
    chunks = slice_bytes(data, 4 * ch, [clip.sample_rate_hz // 5])
    return [e.sample for e in analyze(cfg, spec, chunks, engine)
            if isinstance(e, Cut) and e.kind is not CutKind.END]


def score(clip: SongClip, cuts: list[int]) -> tuple[int, int, int, list[float]]:
    in_words = sum(any(a < x < b for a, b in clip.speech) for x in cuts)
    long = [(a, b) for a, b in clip.pauses if b - a >= clip.sample_rate_hz // 2]
    hit = sum(any(a <= x <= b for x in cuts) for a, b in long)
    bounds = [0, *cuts, clip.frames]
    lengths = list(np.diff(bounds) / clip.sample_rate_hz)
    return in_words, hit, len(long), lengths


def main() -> None:
    from scripts.baselines import rms_slicer_cuts, silero_mix_cuts

    cfg = load_config(env={})
    engine = InprocEngine(cfg)
    methods: dict[str, Callable[[SongClip], list[int]]] = {
        "seamcut SONG (built-in separator)": lambda c: seamcut_cuts(cfg, engine, c, False),
        "seamcut SONG, clean vocal stem": lambda c: seamcut_cuts(cfg, engine, c, True),
        "Silero VAD on the mix": silero_mix_cuts,
        "RMS silence slicer on the mix": rms_slicer_cuts,
    }
    clips = default_song_corpus()
    print("| method | cuts in words | pauses >= 0.5 s cut | recall | segments | "
          "median / max segment s |")
    print("|---|---|---|---|---|---|")
    for name, fn in methods.items():
        tw = th = tn = 0
        lengths: list[float] = []
        per_clip = []
        for clip in clips:
            w, h, n, seg = score(clip, fn(clip))
            tw, th, tn = tw + w, th + h, tn + n
            lengths += seg
            per_clip.append(f"{clip.name}:{w}/{h}/{n}")
        print(f"| {name} | {tw} | {th}/{tn} | {100 * th / tn:.0f} % | {len(lengths)} | "
              f"{np.median(lengths):.1f} / {max(lengths):.1f} |")
        print("    " + " ".join(per_clip), file=sys.stderr)
    asyncio.run(engine.close())
    if "--sweep" in sys.argv[1:]:
        sweep(clips)


SWEEP = [(0.5, 300), (0.5, 250), (0.5, 350), (0.45, 300), (0.55, 300), (0.45, 250),
         (0.55, 350)]


def sweep(clips: list[SongClip]) -> None:
    """Both VAD-based methods at the same neighbouring settings (threshold, min pause).

    Shows how far the default's result is from an edge, for seamcut and for Silero on the
    mix alike: each cell is cuts in words / pauses >= 0.5 s cut.
    """
    from scripts.baselines import silero_mix_cuts

    print("\n| VAD threshold | min pause ms | seamcut SONG (built-in) | Silero VAD on the mix |")
    print("|---|---|---|---|")
    for thr, pause in SWEEP:
        cfg = load_config(env={"SEAMCUT_POLICY_VAD_THRESHOLD": str(thr),
                               "SEAMCUT_POLICY_MIN_PAUSE_MS": str(pause)})
        engine = InprocEngine(cfg)
        cells = []
        for method in ("seamcut", "silero"):
            scores = [score(c, seamcut_cuts(cfg, engine, c, False) if method == "seamcut"
                            else silero_mix_cuts(c, threshold=thr, min_silence_ms=pause))
                      for c in clips]
            cells.append(f"{sum(s[0] for s in scores)} / {sum(s[1] for s in scores)}"
                         f" of {sum(s[2] for s in scores)}")
        asyncio.run(engine.close())
        print(f"| {thr} | {pause} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
