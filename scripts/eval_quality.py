"""Cut quality on the espeak-ng test corpus (tests/corpus.py), for docs/QUALITY.md.

Usage: .venv/bin/python scripts/eval_quality.py   (from the repo root)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seamcut.server.config import Encoding, load_config
from seamcut.server.engine.client import InprocEngine
from seamcut.server.events import Cut, CutKind
from seamcut.server.offline import analyze

from tests.corpus import default_corpus
from tests.helpers import encode, slice_bytes, speech_spec


def main() -> None:
    cfg = load_config(env={})
    engine = InprocEngine(cfg)
    rows = []
    totals = {"cuts": 0, "in_words": 0, "p500": 0, "p500_hit": 0, "p300": 0, "p300_hit": 0}
    dist: list[float] = []
    for clip in default_corpus():
        spec = speech_spec(cfg, clip.sample_rate_hz, clip.channels, Encoding.PCM_S16LE)
        data = encode(clip.audio, Encoding.PCM_S16LE)
        chunks = slice_bytes(data, 2 * clip.channels, [clip.sample_rate_hz // 10])
        cuts = [e for e in analyze(cfg, spec, chunks, engine)
                if isinstance(e, Cut) and e.kind is not CutKind.END]
        s = [c.sample for c in cuts]
        in_words = sum(any(a < x < b for a, b in clip.speech) for x in s)
        long = [(a, b) for a, b in clip.pauses if b - a >= clip.sample_rate_hz // 2]
        short = [(a, b) for a, b in clip.pauses if b - a < clip.sample_rate_hz // 2]
        hit_long = sum(any(a <= x <= b for x in s) for a, b in long)
        hit_short = sum(any(a <= x <= b for x in s) for a, b in short)
        # distance of each cut from the nearest speech edge, ms
        for x in s:
            edge = min(min(abs(x - a), abs(x - b)) for a, b in clip.speech)
            dist.append(1000 * edge / clip.sample_rate_hz)
        rows.append((clip.name, clip.sample_rate_hz, clip.channels, clip.snr_db, len(s),
                     in_words, f"{hit_long}/{len(long)}", f"{hit_short}/{len(short)}"))
        totals["cuts"] += len(s)
        totals["in_words"] += in_words
        totals["p500"] += len(long)
        totals["p500_hit"] += hit_long
        totals["p300"] += len(short)
        totals["p300_hit"] += hit_short
    asyncio.run(engine.close())
    print("| clip | rate | ch | SNR dB | cuts | cuts in words | pauses >= 0.5 s cut "
          "| pauses < 0.5 s cut |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join("clean" if v is None else str(v) for v in r) + " |")
    print(f"\ntotal: {totals['cuts']} cuts, {totals['in_words']} inside words, "
          f"{totals['p500_hit']}/{totals['p500']} pauses >= 0.5 s cut, "
          f"{totals['p300_hit']}/{totals['p300']} pauses of 0.3 s cut")
    d = np.array(dist)
    print(f"distance from cut to nearest speech edge: min {d.min():.0f} ms, "
          f"p10 {np.percentile(d, 10):.0f} ms, median {np.median(d):.0f} ms")


if __name__ == "__main__":
    main()
