"""Songs whose voice is a real speaker (tests/recordings.py ``SOURCES``), for the voice
detector's training and for a check of SONG mode on real voices it never heard.

The voice detector first learned from espeak-ng voices alone, and on real speakers
under loud music it was unsure where a separator leak sounded like voice (docs/QUALITY.md,
"Real voices"). These songs put utterances of real recordings over the same generated
accompaniment: the training draw from the AMI meeting excerpts and two CMU prompts, the
judged draw from other speakers (CMU's card prompts and "forever" prompts, a LibriVox
reader) over the corpora's own chord instruments, which training never uses; the hard
rows' ARCTIC speakers are in neither.

Utterances are the speech runs that Silero VAD finds in the clean recording, split
where the level rests at room tone for 120 ms or more and trimmed to the first and
last 10 ms over it (:func:`utterances`), 0.6-8 s long: each is a phrase whose whole
extent counts as speech, and the song's pauses are the generator's own.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from tests import song_validation
from tests.recordings import source
from tests.song_corpus import Recorded, SongClip, SongSpec

TRAIN_SOURCES = ("dev00", "dev01", "trn01", "trn02", "trn03", "trn04", "trn05", "trn06",
                 "trn07", "trn08", "trn09", "tst00", "tst01", "chan3", "leak_test")
JUDGE_SOURCES = ("cards1", "cards2", "cards3", "cards4", "cards5", "forever2", "forever4",
                 "librivox870", "librivox880", "librivox890", "librivox920", "librivox930")
# (prefix, count, generator seed, first clip seed): seeds no other corpus uses
TRAIN = ("rec", 160, 11, 8000)
JUDGE = ("recj", 40, 12, 9000)
UTTERANCE_S = (0.6, 8.0)
GAP_FRAMES = 12  # 10 ms frames: a quiet gap this long splits an utterance
# the hard and default song corpora's chord instruments but their choir pads: piano,
# e-piano, organs, guitars, strings (training draws from tests/song_validation.py's
# WIDE_CHORDS, which leaves these out)
JUDGE_CHORDS = (0, 4, 16, 19, 24, 25, 48, 49)


@functools.cache
def utterances(name: str) -> tuple[str, ...]:
    """The utterances of one source, as :class:`~tests.song_corpus.Recorded` names."""
    import soxr
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    audio, rate = source(name)
    x = np.ascontiguousarray(soxr.resample(audio, rate, 16_000) if rate != 16_000 else audio,
                             dtype=np.float32)
    with warnings.catch_warnings():
        # torch 2.13 deprecates torch.jit.load, which the package's TorchScript model
        # needs; the utterances (and so the trained weights) were cut with that model.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = load_silero_vad(onnx=False)
    runs = get_speech_timestamps(torch.from_numpy(x), model, sampling_rate=16_000,
                                 min_silence_duration_ms=100, min_speech_duration_ms=500,
                                 speech_pad_ms=30)
    # An utterance sounds throughout: it is split wherever the level stays at the
    # recording's room tone (its 5th percentile) + 9 dB or below for 120 ms or more (a
    # pause between words, which a cutter may take), and it runs from its first to its
    # last 10 ms over that (the ARCTIC sentences' rule, tests/recordings.py); shorter
    # gaps are stop closures and word junctions, inside words.
    frame = rate // 100
    level = 10 * np.log10(np.mean(audio[: audio.size // frame * frame].reshape(-1, frame) ** 2,
                                  axis=1) + 1e-12)
    loud = level > np.percentile(level, 5) + 9.0
    out = []
    for run in runs:
        lo, hi = run["start"] // 160, min(run["end"] // 160, loud.size)
        idx = np.flatnonzero(loud[lo:hi]) + lo
        if not idx.size:
            continue
        breaks = np.flatnonzero(np.diff(idx) > GAP_FRAMES)
        for first, last in zip(np.r_[idx[0], idx[breaks + 1]], np.r_[idx[breaks], idx[-1]],
                               strict=True):
            a, b = int(first) * 10, int(last) * 10 + 10  # ms
            if UTTERANCE_S[0] * 1000 <= b - a <= UTTERANCE_S[1] * 1000:
                out.append(f"{name}@{a}-{b}")
    return tuple(out)


def recorded_specs(prefix: str, count: int, seed: int, first_seed: int,
                   sources: tuple[str, ...], chords: tuple[int, ...]) -> tuple[SongSpec, ...]:
    """``count`` songs of five utterances each, drawn from ``sources``' utterances, over
    accompaniment like tests/song_validation.py's (chord parts from ``chords``)."""
    pool = [u for s in sources for u in utterances(s)]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        phrases = tuple(Recorded(pool[int(k)]) for k in rng.choice(len(pool), 5, replace=False))
        programs = tuple(int(x) for x in rng.choice(chords, int(rng.integers(1, 3)),
                                                    replace=False))
        reverb = bool(rng.random() < 0.25)
        out.append(SongSpec(
            name=f"{prefix}_{i:03d}", voice="en-us",
            sample_rate_hz=int(rng.choice([44_100, 48_000])),
            **song_validation.backing(rng, programs, reverb), seed=first_seed + i, phrases=phrases))
    return tuple(out)


def train_specs() -> tuple[SongSpec, ...]:
    return recorded_specs(*TRAIN, TRAIN_SOURCES, song_validation.WIDE_CHORDS)


def song_cache(specs: tuple[SongSpec, ...]) -> tuple[SongClip, ...]:
    """``specs`` rendered, from ``tests/.cache/recorded-<hash>`` where they are there (the
    hash covers the code that renders them, the recordings' included)."""
    return song_validation.song_cache(specs, kind="recorded", sources=(
        "recorded_songs.py", "recordings.py", "song_corpus.py"))


@functools.cache
def judge_songs() -> tuple[SongClip, ...]:
    """The judged draw, rendered."""
    return song_cache(judge_specs())


def judge_specs() -> tuple[SongSpec, ...]:
    """Other speakers, over the corpora's chord instruments (never in training)."""
    return recorded_specs(*JUDGE, JUDGE_SOURCES, JUDGE_CHORDS)
