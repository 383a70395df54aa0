"""Render the bundled demo sample seamcut/samples/speech_en.flac and its ground truth JSON.

Usage: python scripts/make_sample.py [OUT_DIR]   (default: seamcut/samples/)

Needs espeak-ng (`apt-get install espeak-ng`). Output: ~14 s of English from two alternating
espeak-ng voices, 16 kHz mono int16 FLAC, six phrases separated by 0.4-1.2 s pauses, plus
speech_en.json with the pause and speech intervals in samples at 16 kHz.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Run as a plain script, sys.path[0] is scripts/; the generator lives in tests/.
    sys.path.insert(0, str(ROOT))

import soundfile as sf  # noqa: E402

from tests.corpus import espeak_version, make_clip, write_wav  # noqa: E402

SAMPLE_RATE_HZ = 16000
SPEED_WPM = 175
VOICES = ("en-us+m3", "en-gb+f3")
PHRASES = (
    "Welcome to the seamcut demo.",
    "This sample has two voices.",
    "Each phrase ends with a pause.",
    "Some pauses are short and others long.",
    "A good splitter never cuts words.",
    "Thanks for listening.",
)
PAUSE_MS = (400, 700, 1200, 500, 900)
MAX_FLAC_BYTES = 300_000
DURATION_RANGE_S = (12.0, 15.0)
_INT_LIST = re.compile(r"\[\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*\]")


def _dumps(doc: dict[str, object]) -> str:
    """JSON with each list of integers on one line, so intervals stay readable in diffs."""
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    return (
        _INT_LIST.sub(lambda m: "[" + ", ".join(m[1].replace(",", " ").split()) + "]", text) + "\n"
    )


def render(out_dir: Path) -> dict[str, object]:
    """Write speech_en.flac and speech_en.json into out_dir; return the JSON document."""
    voices = [VOICES[k % len(VOICES)] for k in range(len(PHRASES))]
    clip = make_clip(
        "speech_en",
        PHRASES,
        PAUSE_MS,
        voice=voices,
        language="en",
        speed_wpm=SPEED_WPM,
        sample_rate_hz=SAMPLE_RATE_HZ,
        channels=1,
        snr_db=None,
    )
    if not DURATION_RANGE_S[0] <= clip.duration_s <= DURATION_RANGE_S[1]:
        raise SystemExit(f"sample is {clip.duration_s:.2f} s, expected {DURATION_RANGE_S}")

    out_dir.mkdir(parents=True, exist_ok=True)
    flac = out_dir / "speech_en.flac"
    write_wav(clip, flac, subtype="PCM_16")
    size = flac.stat().st_size
    if size > MAX_FLAC_BYTES:
        raise SystemExit(f"{flac} is {size} bytes, limit {MAX_FLAC_BYTES}")
    if sf.info(str(flac)).frames != clip.frames:
        raise SystemExit(f"{flac} does not hold {clip.frames} frames")

    doc: dict[str, object] = {
        "file": flac.name,
        "sample_rate_hz": clip.sample_rate_hz,
        "channels": clip.channels,
        "frames": clip.frames,
        "duration_s": round(clip.duration_s, 4),
        "units": "sample indices at sample_rate_hz; intervals are half-open [start, end)",
        "pauses": [list(iv) for iv in clip.pauses],
        "pause_ms": list(PAUSE_MS),
        "speech": [list(iv) for iv in clip.speech],
        "phrases": [
            {"text": text, "voice": voice, "start": start, "end": end}
            for text, voice, (start, end) in zip(PHRASES, voices, clip.phrases, strict=True)
        ],
        "generator": {
            "script": "scripts/make_sample.py",
            "espeak_ng": espeak_version(),
            "speed_wpm": SPEED_WPM,
        },
    }
    (out_dir / "speech_en.json").write_text(_dumps(doc), encoding="utf-8")
    return doc


def main(argv: list[str]) -> None:
    """Entry point: optional OUT_DIR argument."""
    out_dir = Path(argv[1]) if len(argv) > 1 else ROOT / "seamcut" / "samples"
    doc = render(out_dir)
    print(f"wrote {out_dir / 'speech_en.flac'}: {doc['duration_s']} s, {doc['frames']} frames")


if __name__ == "__main__":
    main(sys.argv)
