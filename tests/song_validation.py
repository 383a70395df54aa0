"""A held-out song set for studies of SONG-mode fusion (scripts/fusion_study.py).

Forty songs drawn from a seeded generator whose settings the quality corpora never
use, so anything fitted or tuned on it is judged on voices, languages, instruments and
seeds it has not seen (issue 14's rule for a learned component):

* languages: pt, pl, sv, da, ro, cs, fi, hu, id, tr (the hard corpus sings en, de,
  es, fr, it, nl; the default song corpus en);
* chord instruments: none of the hard corpus's or default song corpus's programs;
* seeds 1000..1039 (the corpora use 201..403); four more draws of 80 (``HELD_OUT``),
  seeds 3000..3079, 4000..4079, 6000..6079 and 10000..10079 (the voice detector
  trains on 5000..5319, and on tests/recorded_songs.py's 8000..8159).

Each song has five phrases (spoken or sung), four pauses of 300..1400 ms, music from
-14 to +3 dB, reverb on about 40 %, chord parts panned anywhere from left of centre
to right of it (centred ones too, which is what breaks the built-in separator).
Rendered in ~12 s and cached under ``tests/.cache/generated-<hash>``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.song_corpus import (
    _AH,
    _HEY,
    _LA,
    _LO,
    _MI,
    _NA,
    _OO,
    SongClip,
    SongSpec,
    Sung,
    cached_songs,
)

TEXTS = {
    "pt": ("O tempo passa devagar.", "Eu canto para você agora.",
           "A chuva cai sobre a cidade.", "Amanhã vamos partir cedo."),
    "pl": ("Wieczorem idziemy do domu.", "Słońce świeci nad rzeką.",
           "Nie wiem, co powiedzieć.", "Zawsze będę pamiętać."),
    "sv": ("Vi går längs stranden i kväll.", "Solen går ner bakom berget.",
           "Jag sjunger för dig nu.", "Vinden blåser kallt i dag."),
    "da": ("Vi ses igen i morgen.", "Havet er stille og blåt.",
           "Jeg synger en sang for dig.", "Natten falder over byen."),
    "ro": ("Noaptea vine peste sat.", "Cântăm împreună pe drum.",
           "Vântul bate peste câmp.", "Mâine plecăm spre mare."),
    "cs": ("Večer jdeme spolu domů.", "Slunce svítí nad lesem.",
           "Zpívám ti tu píseň dnes.", "Řeka teče pomalu dál."),
    "fi": ("Illalla menemme kotiin.", "Aurinko laskee järveen.",
           "Laulan sinulle tänään.", "Tuuli puhaltaa kylmästi."),
    "hu": ("Este hazamegyünk együtt.", "A nap lemegy a tó felett.",
           "Dalt énekelek neked ma.", "A szél hidegen fúj."),
    "id": ("Malam ini kita pulang.", "Matahari terbenam di laut.",
           "Aku bernyanyi untukmu.", "Angin bertiup pelan sekali."),
    "tr": ("Akşam eve dönüyoruz.", "Güneş denize batıyor.",
           "Senin için şarkı söylüyorum.", "Rüzgar yavaşça esiyor."),
}
VARIANTS = ("m4", "m5", "m6", "m7", "f1", "f5", "klatt", "klatt2", "Andy", "linda", "john",
            "belinda")
# Bright piano, e-grand, e-piano 2, vibraphone, rock organ, jazz and clean guitar,
# violin, cello, harp, synth strings, brass, alto sax, flute, voice lead, choir pad.
CHORDS = (1, 2, 5, 11, 18, 26, 27, 40, 42, 46, 50, 61, 65, 73, 85, 91)
BASSES = (34, 35, 36, 38)  # pick, fretless, slap, synth: the corpora use 32 and 33
# Every melodic GM program up to the synth effects except the corpora's own chord
# instruments (0, 4, 16, 19, 24, 25, 48, 49, 52, 53, 54) and the basses: for training.
WIDE_CHORDS = tuple(p for p in range(96) if p not in {0, 4, 16, 19, 24, 25, 48, 49, 52, 53, 54}
                    and not 32 <= p <= 39)
SYLLABLES = (_LA, _AH, _OO, _MI, _LO, _NA, _HEY)
COUNT = 40
SEED = 2026
# Held-out draws of the generator: prefix, count, generator seed, first clip seed.
# Forty songs proved too few to judge a rare fault (with the voice cap alone, cuts in
# words: 1 in the first draw, 13 in the second, 11 of them inside legato sung phrases;
# docs/QUALITY.md, "Voice floor"), so three more draws of 80 came on 2026-12-06: the
# voice floor was chosen on the second and judged on the third; the fourth was made
# after that, to judge the floor as shipped and a rule for the recorded rows (dropped
# on it).
HELD_OUT = {"validation": ("val", COUNT, SEED, 1000),
            "second": ("val2", 80, 2027, 3000),
            "third": ("val3", 80, 2028, 4000),
            "fourth": ("val4", 80, 2029, 6000),
            "fifth": ("val5", 80, 2030, 10000)}


def held_out_specs(name: str) -> tuple[SongSpec, ...]:
    """One held-out draw (``HELD_OUT``'s keys)."""
    return generated_specs(*HELD_OUT[name])


@functools.cache
def generated_specs(prefix: str, count: int, seed: int, first_seed: int,
                    chords: tuple[int, ...] = CHORDS) -> tuple[SongSpec, ...]:
    """``count`` songs from the generator seeded with ``seed``; clip seeds from
    ``first_seed`` on, chord parts drawn from ``chords``."""
    rng = np.random.default_rng(seed)
    langs = list(TEXTS)
    out = []
    for i in range(count):
        lang = langs[i % len(langs)]
        texts = TEXTS[lang]
        voice = f"{lang}+{VARIANTS[int(rng.integers(len(VARIANTS)))]}"
        phrases: list[str | Sung] = []
        for k in range(5):
            if k % 2 == 1 and rng.random() < 0.7:
                notes = tuple((SYLLABLES[int(rng.integers(len(SYLLABLES)))],
                               int(rng.integers(25, 75))) for _ in range(int(rng.integers(2, 4))))
                phrases.append(Sung(notes=notes))
            else:
                phrases.append(texts[int(rng.integers(len(texts)))])
        programs = tuple(int(x) for x in rng.choice(chords, int(rng.integers(1, 3)),
                                                    replace=False))
        reverb = bool(rng.random() < 0.4)
        out.append(SongSpec(
            name=f"{prefix}_{i:03d}", voice=voice, speed_wpm=int(rng.integers(130, 175)),
            pitch=int(rng.integers(30, 70)), sample_rate_hz=int(rng.choice([44_100, 48_000])),
            **backing(rng, programs, reverb), seed=first_seed + i, phrases=tuple(phrases)))
    return tuple(out)


def backing(rng: np.random.Generator, programs: tuple[int, ...],
            reverb: bool) -> dict[str, Any]:
    """A song's accompaniment, reverb and pauses, drawn from ``rng`` (also for
    tests/recorded_songs.py). The order of the draws is part of every draw made so far:
    change it and every held-out song changes."""
    return {
        "music_db": float(np.round(rng.uniform(-14, 3), 1)), "programs": programs,
        "pans": tuple(int(rng.integers(36, 92)) for _ in programs),
        "bass_program": int(rng.choice(BASSES)) if rng.random() < 0.8 else None,
        "drums": bool(rng.random() < 0.7),
        "progression": str(rng.choice(["pop", "ballad", "minor"])),
        "key": int(rng.integers(0, 12)), "tempo_bpm": float(rng.integers(80, 132)),
        "reverb_t60_s": float(np.round(rng.uniform(0.6, 2.2), 2)) if reverb else None,
        "stereo_reverb": reverb and bool(rng.random() < 0.6),
        "pause_ms": tuple(int(rng.integers(300, 1400)) for _ in range(4)),
    }


SOURCES = ("song_validation.py", "song_corpus.py", "corpus.py")  # what renders them


def _digest(specs: tuple[SongSpec, ...], sources: tuple[str, ...]) -> str:
    here = Path(__file__).resolve().parent
    key = {"specs": [dataclasses.asdict(s) for s in specs],
           "src": [hashlib.sha256((here / f).read_bytes()).hexdigest() for f in sources]}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def song_cache(specs: tuple[SongSpec, ...], *, kind: str = "generated",
               sources: tuple[str, ...] = SOURCES) -> tuple[SongClip, ...]:
    """``specs`` rendered, from ``tests/.cache/<kind>-<hash>`` where they are there (the
    hash covers the specs and ``sources``, the tests/ files whose code renders them)."""
    cache = Path(__file__).resolve().parent / ".cache" / f"{kind}-{_digest(specs, sources)}"
    return tuple(cached_songs(specs, cache)[0])


@functools.cache
def held_out_songs(name: str) -> tuple[SongClip, ...]:
    """One held-out draw rendered (``HELD_OUT``'s keys), from the cache where it is."""
    return song_cache(held_out_specs(name))
