"""Write the test corpus, downmixed to 16 kHz mono int16 and repeated twice (303 s).

Usage: .venv/bin/python scripts/make_long_speech.py OUT.wav   (from the repo root)
Used for the single-stream throughput figures in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.corpus import default_corpus


def main(out: str) -> None:
    parts = [soxr.resample(c.audio.mean(axis=1), c.sample_rate_hz, 16000).astype(np.float32)
             for c in default_corpus()]
    audio = np.concatenate(parts * 2)
    sf.write(out, audio, 16000, subtype="PCM_16")
    print(f"{out}: {audio.shape[0] / 16000:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1])
