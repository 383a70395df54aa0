"""Render the bundled demo song seamcut/samples/song_en.flac and its ground truth JSON.

Usage: python scripts/make_song_sample.py [OUT_DIR]   (default: seamcut/samples/)

Needs espeak-ng, fluidsynth and the GM soundfont (`apt-get install espeak-ng fluidsynth
fluid-soundfont-gm`). Output: ~15 s of English "song", 44.1 kHz stereo int16 FLAC: a centred
dry espeak-ng vocal (five phrases, spoken and sung, separated by 0.4-1.5 s pauses) over a
piano + bass + drums accompaniment at -6 dB re the vocal that keeps playing through every
pause, plus song_en.json with the pause and speech intervals in samples at 44.1 kHz. The
vocal stem itself is not written.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Run as a plain script, sys.path[0] is scripts/; the generator lives in tests/.
    sys.path.insert(0, str(ROOT))

import soundfile as sf  # noqa: E402

from scripts.make_sample import _dumps  # noqa: E402
from tests.corpus import espeak_version  # noqa: E402
from tests.song_corpus import (  # noqa: E402
    SOUNDFONT,
    SongSpec,
    Sung,
    fluidsynth_version,
    make_song,
    write_song,
)

SAMPLE_RATE_HZ = 44100
MAX_FLAC_BYTES = 1_500_000
DURATION_RANGE_S = (13.0, 16.0)
SPEC = SongSpec(
    name="song_en",
    voice="en-us+f3",
    speed_wpm=150,
    pitch=50,
    sung_wpm=100,
    sample_rate_hz=SAMPLE_RATE_HZ,
    music_db=-6.0,
    programs=(0,),
    bass_program=32,
    drums=True,
    progression="pop",
    key=0,
    tempo_bpm=100,
    reverb_t60_s=None,
    lead_ms=800,
    tail_ms=700,
    seed=301,
    pause_ms=(400, 1000, 700, 1500),
    phrases=(
        "Welcome to the seamcut song.",
        Sung(notes=(("laaaa", 45), ("[[l'A::]]", 60))),
        "The band keeps playing while I rest.",
        Sung(notes=(("[[n'u:]]", 55), ("[[l'o:]]", 40))),
        "A good splitter finds the gaps.",
    ),
)


def _phrase_doc(phrase: str | Sung) -> dict[str, object]:
    if isinstance(phrase, str):
        return {"kind": "spoken", "text": phrase}
    return {
        "kind": "sung",
        "syllables": [syllable for syllable, _ in phrase.notes],
        "espeak_pitch": [pitch for _, pitch in phrase.notes],
    }


def render(out_dir: Path) -> dict[str, object]:
    """Write song_en.flac and song_en.json into out_dir; return the JSON document."""
    clip = make_song(SPEC)
    if not DURATION_RANGE_S[0] <= clip.duration_s <= DURATION_RANGE_S[1]:
        raise SystemExit(f"sample is {clip.duration_s:.2f} s, expected {DURATION_RANGE_S}")

    out_dir.mkdir(parents=True, exist_ok=True)
    flac = out_dir / "song_en.flac"
    write_song(clip, flac, stem="mix", subtype="PCM_16")
    size = flac.stat().st_size
    if size > MAX_FLAC_BYTES:
        raise SystemExit(f"{flac} is {size} bytes, limit {MAX_FLAC_BYTES}")
    if sf.info(str(flac)).frames != clip.frames:
        raise SystemExit(f"{flac} does not hold {clip.frames} frames")

    doc: dict[str, object] = {
        "file": flac.name,
        "sample_rate_hz": clip.sample_rate_hz,
        "channels": 2,
        "frames": clip.frames,
        "duration_s": round(clip.duration_s, 4),
        "units": "sample indices at sample_rate_hz; intervals are half-open [start, end)",
        "pauses": [list(iv) for iv in clip.pauses],
        "pause_ms": list(SPEC.pause_ms),
        "speech": [list(iv) for iv in clip.speech],
        "phrases": [
            {**_phrase_doc(phrase), "start": start, "end": end}
            for phrase, (start, end) in zip(SPEC.phrases, clip.phrases, strict=True)
        ],
        "music_db": clip.music_db,
        "patch": clip.patch,
        "reverb": clip.reverb,
        "generator": {
            "script": "scripts/make_song_sample.py",
            "espeak_ng": espeak_version(),
            "fluidsynth": fluidsynth_version(),
            "soundfont": SOUNDFONT.name,
            "voice": SPEC.voice,
            "tempo_bpm": SPEC.tempo_bpm,
        },
    }
    (out_dir / "song_en.json").write_text(_dumps(doc), encoding="utf-8")
    return doc


def main(argv: list[str]) -> None:
    """Entry point: optional OUT_DIR argument."""
    out_dir = Path(argv[1]) if len(argv) > 1 else ROOT / "seamcut" / "samples"
    doc = render(out_dir)
    size = (out_dir / "song_en.flac").stat().st_size
    print(
        f"wrote {out_dir / 'song_en.flac'}: {doc['duration_s']} s, {doc['frames']} frames, "
        f"{size} bytes"
    )


if __name__ == "__main__":
    main(sys.argv)
