"""Deterministic synthetic speech corpus with known ground truth.

Clips are rendered with espeak-ng, so the exact extent of every word run (``speech``) and of
every silence inserted between phrases (``pauses``) is known. Splitter tests use them to check
that (a) no cut falls strictly inside a speech interval and (b) every inserted pause of
>= 0.5 s receives a cut.

Conventions used throughout this module:

* Intervals are half-open ``(start, end)`` sample indices at the clip's own sample rate.
* Audio arrays are float32 with shape ``[frames, channels]`` and values in [-1, 1];
  single phrases from :func:`synth_phrase` are mono with shape ``[frames]``.
* Durations passed as ``*_ms`` are milliseconds, rates ``*_hz`` are samples per second.

Generating :func:`default_corpus` takes a few seconds; the result is cached on disk under
``tests/.cache/corpus-<hash>`` (see :func:`corpus_cache_dir`) and reused by later runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import shutil
import struct
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

__all__ = [
    "ESPEAK_RATE_HZ",
    "ClipSpec",
    "Interval",
    "SpeechClip",
    "corpus_cache_dir",
    "default_corpus",
    "default_specs",
    "espeak_version",
    "generate_corpus",
    "load_clip",
    "make_clip",
    "save_clip",
    "speech_intervals",
    "synth_phrase",
    "trim_bounds",
    "write_wav",
]

FloatArray = npt.NDArray[np.float32]
Interval = tuple[int, int]

ESPEAK_RATE_HZ = 22050
"""Native output rate of espeak-ng (Hz); phrases are assembled at this rate before resampling."""

TRIM_THRESHOLD_DB = -50.0
TRIM_KEEP_MS = 5
SPEECH_THRESHOLD_DB = -45.0
SPEECH_HOP_MS = 10
SPEECH_MERGE_GAP_MS = 30
SPEECH_DILATE_MS = 10
CLEAN_PEAK = 0.5
"""Peak amplitude of the clean speech after resampling; leaves headroom for 10 dB SNR noise."""
STEREO_GAIN = 0.9
STEREO_NOISE_CORRELATION = 0.95
PINK_LOW_CUT_HZ = 20.0
PINK_FLAT_BELOW_HZ = 50.0

_INSTALL_HINT = "install it with `apt-get install espeak-ng`"
_CACHE_ROOT = Path(__file__).resolve().parent / ".cache"


@dataclass(frozen=True, kw_only=True, slots=True)
class SpeechClip:
    """One rendered test clip and its ground truth.

    Attributes:
        name: Unique clip name, e.g. ``"en_us_m1_clean"``.
        audio: float32 samples, shape ``[frames, channels]``, values in [-1, 1]. Read-only.
        sample_rate_hz: Sample rate of ``audio`` and of every interval below.
        speech: Sorted, disjoint ``[start, end)`` sample intervals of audible speech. A cut
            strictly inside one of them splits a word and is a defect. Derived from each
            phrase's clean audio (before noise): 10 ms frames with energy above -45 dB relative
            to the phrase's loudest frame, merged over gaps < 30 ms, dilated by 10 ms per side
            (clipped to the phrase), then mapped outward to the output rate.
        pauses: The silences inserted between consecutive phrases, ``[start, end)`` samples
            from the end of phrase k's trimmed audio to the start of phrase k+1's, mapped
            inward to the output rate. ``len(pauses) == len(phrases) - 1``.
        phrases: Extent of each phrase's trimmed audio, ``[start, end)`` samples, mapped
            outward. Consecutive phrases are separated exactly by the matching pause.
        language: espeak-ng language code of the text, e.g. ``"de"``.
        voice: espeak-ng voice(s) used, e.g. ``"de+f2"``; comma-separated if several.
        snr_db: Speech-to-noise ratio of the added noise in dB, or ``None`` for a clean clip.
    """

    name: str
    audio: FloatArray
    sample_rate_hz: int
    speech: tuple[Interval, ...]
    pauses: tuple[Interval, ...]
    phrases: tuple[Interval, ...]
    language: str
    voice: str
    snr_db: float | None

    @property
    def frames(self) -> int:
        """Number of sample frames."""
        return int(self.audio.shape[0])

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.audio.shape[1])

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate_hz


@dataclass(frozen=True, kw_only=True, slots=True)
class ClipSpec:
    """Recipe for one clip of the default corpus; :meth:`render` passes it to make_clip."""

    name: str
    phrases: tuple[str, ...]
    pause_ms: tuple[int, ...]
    voice: str
    language: str
    speed_wpm: int
    pitch: int = 50
    sample_rate_hz: int
    channels: int
    snr_db: float | None
    seed: int

    def render(self) -> SpeechClip:
        """Render the clip (no caching)."""
        return make_clip(
            self.name,
            self.phrases,
            self.pause_ms,
            voice=self.voice,
            language=self.language,
            speed_wpm=self.speed_wpm,
            pitch=self.pitch,
            sample_rate_hz=self.sample_rate_hz,
            channels=self.channels,
            snr_db=self.snr_db,
            seed=self.seed,
        )


# --------------------------------------------------------------------------------------------
# espeak-ng
# --------------------------------------------------------------------------------------------


@functools.cache
def _espeak_exe() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(f"espeak-ng was not found on PATH; {_INSTALL_HINT}")
    return exe


@functools.cache
def _espeak_version_line() -> str:
    proc = subprocess.run(
        [_espeak_exe(), "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"`espeak-ng --version` failed ({proc.returncode}): {proc.stderr.strip()}; "
            f"{_INSTALL_HINT}"
        )
    return " ".join(proc.stdout.split())


def espeak_version() -> str:
    """espeak-ng version string without the data path, e.g. ``"eSpeak NG text-to-speech: 1.51"``.

    Raises:
        RuntimeError: espeak-ng is not installed.
    """
    return _espeak_version_line().split(" Data at:")[0].strip()


@functools.cache
def _espeak_variants() -> frozenset[str] | None:
    """Names of installed voice variants, or None if the data directory cannot be located."""
    line = _espeak_version_line()
    if "Data at:" not in line:
        return None
    variant_dir = Path(line.split("Data at:", 1)[1].strip()) / "voices" / "!v"
    if not variant_dir.is_dir():
        return None
    return frozenset(p.name for p in variant_dir.iterdir())


def _check_voice(voice: str) -> None:
    # espeak-ng silently falls back to the base voice for an unknown "+variant", which would
    # quietly turn a "female" clip into the default male voice.
    if "+" not in voice:
        return
    variant = voice.split("+", 1)[1]
    variants = _espeak_variants()
    if variants is not None and variant not in variants:
        raise ValueError(f"espeak-ng has no voice variant {variant!r} (voice {voice!r})")


def _fix_streamed_wav_header(data: bytes) -> bytes:
    # With --stdout espeak-ng cannot seek back, so the RIFF and data chunk sizes hold
    # placeholders (0x7ffff0xx); patch them so the parse does not rely on reader leniency.
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE" or data[36:40] != b"data":
        return data
    fixed = bytearray(data)
    fixed[4:8] = struct.pack("<I", len(data) - 8)
    fixed[40:44] = struct.pack("<I", len(data) - 44)
    return bytes(fixed)


def trim_bounds(
    x: npt.NDArray[np.floating],
    sample_rate_hz: int,
    *,
    threshold_db: float = TRIM_THRESHOLD_DB,
    keep_ms: int = TRIM_KEEP_MS,
) -> Interval:
    """Bounds of the non-silent part of a mono signal.

    Args:
        x: Mono samples, shape ``[frames]``.
        sample_rate_hz: Sample rate of ``x``.
        threshold_db: A sample is non-silent if ``|x| >= peak * 10**(threshold_db / 20)``.
        keep_ms: Margin kept before the first and after the last non-silent sample, in ms.

    Returns:
        ``(start, end)`` sample indices, half-open, clipped to ``[0, len(x)]``.

    Raises:
        ValueError: ``x`` is empty or all zeros.
    """
    mag = np.abs(np.asarray(x, dtype=np.float64))
    peak = float(mag.max()) if mag.size else 0.0
    if peak == 0.0:
        raise ValueError("signal is empty or digital silence")
    loud = np.flatnonzero(mag >= peak * 10.0 ** (threshold_db / 20.0))
    keep = round(sample_rate_hz * keep_ms / 1000)
    return max(0, int(loud[0]) - keep), min(mag.size, int(loud[-1]) + 1 + keep)


def synth_phrase(
    text: str, *, voice: str, speed_wpm: int = 160, pitch: int = 50
) -> tuple[FloatArray, int]:
    """Speak ``text`` with espeak-ng.

    Args:
        text: Text to speak (UTF-8).
        voice: espeak-ng voice, optionally with a variant, e.g. ``"en-gb+f3"``.
        speed_wpm: Speaking rate in words per minute (espeak-ng ``-s``).
        pitch: Pitch adjustment 0..99 (espeak-ng ``-p``).

    Returns:
        ``(audio, sample_rate_hz)``: mono float32, shape ``[frames]``, at espeak-ng's native
        22050 Hz, with leading/trailing silence trimmed (-50 dB re peak, 5 ms kept).

    Raises:
        RuntimeError: espeak-ng is missing, fails, or returns no audio.
        ValueError: unknown voice variant.
    """
    _check_voice(voice)
    cmd = [
        _espeak_exe(),
        "--stdout",
        "--stdin",
        "-b",
        "1",
        "-v",
        voice,
        "-s",
        str(speed_wpm),
        "-p",
        str(pitch),
    ]
    # Text goes through stdin so a phrase starting with "-" cannot be parsed as an option.
    proc = subprocess.run(cmd, input=text.encode(), capture_output=True, check=False, timeout=60)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"espeak-ng failed ({proc.returncode}) for voice {voice!r}: {msg}")
    audio, rate = sf.read(
        io.BytesIO(_fix_streamed_wav_header(proc.stdout)), dtype="float32", always_2d=False
    )
    if audio.ndim != 1:
        audio = audio[:, 0]
    try:
        start, end = trim_bounds(audio, rate)
    except ValueError:
        raise RuntimeError(f"espeak-ng produced no audio for {text!r} ({voice!r})") from None
    return np.ascontiguousarray(audio[start:end]), int(rate)


# --------------------------------------------------------------------------------------------
# Ground truth helpers
# --------------------------------------------------------------------------------------------


def _merge(intervals: Iterable[Interval], max_gap: int) -> list[Interval]:
    """Merge sorted intervals whose gap is < ``max_gap`` samples (overlaps always merge)."""
    out: list[Interval] = []
    for start, end in intervals:
        if out and start - out[-1][1] < max_gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def speech_intervals(
    x: npt.NDArray[np.floating],
    sample_rate_hz: int,
    *,
    threshold_db: float = SPEECH_THRESHOLD_DB,
    hop_ms: int = SPEECH_HOP_MS,
    merge_gap_ms: int = SPEECH_MERGE_GAP_MS,
    dilate_ms: int = SPEECH_DILATE_MS,
) -> tuple[Interval, ...]:
    """Audible-speech intervals of one clean mono phrase.

    Frames of ``hop_ms`` (non-overlapping) whose mean energy exceeds ``threshold_db`` relative
    to the loudest frame are active; runs of active frames are merged across gaps shorter than
    ``merge_gap_ms`` and then widened by ``dilate_ms`` on each side, clipped to ``[0, len(x)]``.

    Args:
        x: Clean mono samples, shape ``[frames]``.
        sample_rate_hz: Sample rate of ``x``.

    Returns:
        Sorted, disjoint ``[start, end)`` sample intervals; empty if ``x`` is silent.
    """
    sig = np.asarray(x, dtype=np.float64)
    n = sig.size
    hop = max(1, sample_rate_hz * hop_ms // 1000)
    n_frames = -(-n // hop)
    padded = np.zeros(n_frames * hop)
    padded[:n] = sig
    counts = np.full(n_frames, hop, dtype=np.float64)
    if n_frames:
        counts[-1] = n - (n_frames - 1) * hop
    energy = np.square(padded).reshape(n_frames, hop).sum(axis=1) / counts
    if not n_frames or energy.max() == 0.0:
        return ()
    active = energy > energy.max() * 10.0 ** (threshold_db / 10.0)
    edges = np.diff(np.concatenate(([0], active.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    runs = [(int(s) * hop, min(n, int(e) * hop)) for s, e in zip(starts, ends, strict=True)]
    runs = _merge(runs, round(sample_rate_hz * merge_gap_ms / 1000))
    pad = round(sample_rate_hz * dilate_ms / 1000)
    return tuple(_merge(((max(0, s - pad), min(n, e + pad)) for s, e in runs), 1))


def _to_rate_outward(iv: Interval, rate_in: int, rate_out: int) -> Interval:
    return iv[0] * rate_out // rate_in, -(-iv[1] * rate_out // rate_in)


def _to_rate_inward(iv: Interval, rate_in: int, rate_out: int) -> Interval:
    return -(-iv[0] * rate_out // rate_in), iv[1] * rate_out // rate_in


def _ms_to_samples(ms: int, rate_hz: int) -> int:
    return (ms * rate_hz + 500) // 1000


def _rms(x: npt.NDArray[np.floating]) -> float:
    return math.sqrt(float(np.mean(np.square(x, dtype=np.float64))))


def _pink_noise(frames: int, rate_hz: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Zero-mean noise with a 1/f power spectrum above 50 Hz, flat 20-50 Hz, nothing below.

    The low end is bounded so the noise is stationary enough for pause-only level estimates.
    """
    spectrum = np.fft.rfft(rng.standard_normal(frames))
    freqs = np.fft.rfftfreq(frames, d=1.0 / rate_hz)
    shape = 1.0 / np.sqrt(np.maximum(freqs, PINK_FLAT_BELOW_HZ))
    shape[freqs < PINK_LOW_CUT_HZ] = 0.0
    noise = np.fft.irfft(spectrum * shape, n=frames)
    return noise / _rms(noise)


def _readonly(a: FloatArray) -> FloatArray:
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------------------------
# Clip assembly
# --------------------------------------------------------------------------------------------


def make_clip(
    name: str,
    phrases: Sequence[str],
    pause_ms: Sequence[int],
    *,
    voice: str | Sequence[str],
    language: str,
    speed_wpm: int = 160,
    pitch: int = 50,
    sample_rate_hz: int = 16000,
    channels: int = 1,
    snr_db: float | None = None,
    lead_ms: int = 300,
    tail_ms: int = 400,
    seed: int = 0,
) -> SpeechClip:
    """Render phrases separated by exact pauses, with ground truth.

    The trimmed phrases are concatenated at 22050 Hz with ``lead_ms`` of silence before the
    first phrase, ``pause_ms[k]`` between phrase k and k+1 and ``tail_ms`` after the last,
    resampled with soxr (VHQ, zero delay) to ``sample_rate_hz`` and normalised to a 0.5 peak.
    If ``snr_db`` is set, pink-ish noise from ``numpy.random.default_rng(seed)`` is added over
    the whole clip (pauses included) so that the speech-active RMS (RMS over ``speech``) to
    noise RMS ratio is exactly ``snr_db`` on every channel. Channel c > 0 is
    ``0.9**c * (speech + own noise)``, where its noise is 95 % correlated with channel 0's.

    Args:
        name: Clip name.
        phrases: Texts, one per phrase.
        pause_ms: Inserted silence between consecutive phrases in ms;
            ``len(pause_ms) == len(phrases) - 1``.
        voice: One espeak-ng voice for all phrases, or one per phrase.
        language: Language code stored on the clip.
        speed_wpm: espeak-ng speaking rate in words per minute.
        pitch: espeak-ng pitch, 0..99.
        sample_rate_hz: Output sample rate.
        channels: Output channels (>= 1).
        snr_db: Target SNR in dB, or None for no noise.
        lead_ms: Silence before the first phrase, ms.
        tail_ms: Silence after the last phrase, ms.
        seed: Noise seed.

    Returns:
        The clip; ``audio`` has shape ``[frames, channels]``.

    Raises:
        ValueError: inconsistent arguments.
        RuntimeError: espeak-ng is missing or fails.
    """
    if not phrases:
        raise ValueError("need at least one phrase")
    if len(pause_ms) != len(phrases) - 1:
        raise ValueError(f"need {len(phrases) - 1} pauses for {len(phrases)} phrases")
    if min(pause_ms, default=0) < 0 or lead_ms < 0 or tail_ms < 0:
        raise ValueError("durations must be >= 0")
    if channels < 1 or sample_rate_hz < 1:
        raise ValueError("channels and sample_rate_hz must be >= 1")
    voices = [voice] * len(phrases) if isinstance(voice, str) else list(voice)
    if len(voices) != len(phrases):
        raise ValueError("need one voice per phrase")

    rate_in = ESPEAK_RATE_HZ
    pieces: list[npt.NDArray[np.float64]] = [np.zeros(_ms_to_samples(lead_ms, rate_in))]
    cursor = pieces[0].size
    speech_in: list[Interval] = []
    phrases_in: list[Interval] = []
    pauses_in: list[Interval] = []
    for k, (text, v) in enumerate(zip(phrases, voices, strict=True)):
        audio, rate = synth_phrase(text, voice=v, speed_wpm=speed_wpm, pitch=pitch)
        if rate != rate_in:
            raise RuntimeError(f"espeak-ng returned {rate} Hz, expected {rate_in} Hz")
        speech_in.extend((cursor + s, cursor + e) for s, e in speech_intervals(audio, rate))
        phrases_in.append((cursor, cursor + audio.size))
        pieces.append(audio.astype(np.float64))
        cursor += audio.size
        if k < len(pause_ms):
            gap = _ms_to_samples(pause_ms[k], rate_in)
            pauses_in.append((cursor, cursor + gap))
            pieces.append(np.zeros(gap))
            cursor += gap
    pieces.append(np.zeros(_ms_to_samples(tail_ms, rate_in)))
    native = np.concatenate(pieces)

    if sample_rate_hz == rate_in:
        clean = native
    else:
        clean = np.asarray(soxr.resample(native, rate_in, sample_rate_hz, quality="VHQ"))
    frames = clean.size
    clean = clean * (CLEAN_PEAK / float(np.max(np.abs(clean))))

    def clip_to_frames(iv: Interval) -> Interval:
        return min(iv[0], frames), min(iv[1], frames)

    speech = tuple(
        clip_to_frames(_to_rate_outward(iv, rate_in, sample_rate_hz)) for iv in speech_in
    )
    phrase_ivs = tuple(
        clip_to_frames(_to_rate_outward(iv, rate_in, sample_rate_hz)) for iv in phrases_in
    )
    pauses = tuple(clip_to_frames(_to_rate_inward(iv, rate_in, sample_rate_hz)) for iv in pauses_in)

    out = np.empty((frames, channels), dtype=np.float64)
    if snr_db is None:
        out[:] = clean[:, None]
    else:
        active = np.concatenate([clean[s:e] for s, e in speech])
        noise_rms = _rms(active) / 10.0 ** (snr_db / 20.0)
        rng = np.random.default_rng(seed)
        base = _pink_noise(frames, sample_rate_hz, rng)
        out[:, 0] = clean + noise_rms * base
        rho = STEREO_NOISE_CORRELATION
        for c in range(1, channels):
            own = rho * base + math.sqrt(1.0 - rho * rho) * _pink_noise(frames, sample_rate_hz, rng)
            out[:, c] = clean + noise_rms * (own / _rms(own))
    out *= STEREO_GAIN ** np.arange(channels)[None, :]
    peak = float(np.max(np.abs(out)))
    if peak > 0.999:
        # Uniform scaling keeps the SNR; it only triggers for SNRs far below the corpus range.
        out *= 0.999 / peak

    return SpeechClip(
        name=name,
        audio=_readonly(out.astype(np.float32)),
        sample_rate_hz=sample_rate_hz,
        speech=speech,
        pauses=pauses,
        phrases=phrase_ivs,
        language=language,
        voice=",".join(dict.fromkeys(voices)),
        snr_db=None if snr_db is None else float(snr_db),
    )


# --------------------------------------------------------------------------------------------
# Default corpus
# --------------------------------------------------------------------------------------------


@functools.cache
def default_specs() -> tuple[ClipSpec, ...]:
    """Recipes of the standard corpus (see :func:`default_corpus`)."""
    return (
        ClipSpec(
            name="en_us_m1_clean",
            voice="en-us+m1",
            language="en-us",
            speed_wpm=160,
            pitch=50,
            sample_rate_hz=16000,
            channels=1,
            snr_db=None,
            seed=101,
            pause_ms=(300, 800, 500, 1500),
            phrases=(
                "The train leaves at seven tonight.",
                "Please bring a warm coat.",
                "We can buy tickets at the station.",
                "My sister will meet us there.",
                "Do not forget the map.",
            ),
        ),
        ClipSpec(
            name="en_gb_f3_snr20",
            voice="en-gb+f3",
            language="en-gb",
            speed_wpm=180,
            pitch=55,
            sample_rate_hz=44100,
            channels=2,
            snr_db=20.0,
            seed=102,
            pause_ms=(650, 300, 1000, 500, 800),
            phrases=(
                "The garden looks lovely in spring.",
                "Tulips line the old stone wall.",
                "Someone left the gate open again.",
                "The neighbours' dog ran straight inside.",
                "It dug up half the roses.",
                "Nobody was very pleased about that.",
            ),
        ),
        ClipSpec(
            name="en_us_f5_snr10",
            voice="en-us+f5",
            language="en-us",
            speed_wpm=200,
            pitch=60,
            sample_rate_hz=48000,
            channels=1,
            snr_db=10.0,
            seed=103,
            pause_ms=(1000, 300, 650),
            phrases=(
                "Turn left at the next corner.",
                "The bakery is on your right.",
                "They open early every morning.",
                "Try the fresh cinnamon rolls.",
            ),
        ),
        ClipSpec(
            name="de_m3_clean",
            voice="de+m3",
            language="de",
            speed_wpm=150,
            pitch=40,
            sample_rate_hz=48000,
            channels=2,
            snr_db=None,
            seed=104,
            pause_ms=(500, 300, 1500, 650, 300),
            phrases=(
                "Heute regnet es in der ganzen Stadt.",
                "Ich bleibe lieber zu Hause.",
                "Am Abend koche ich eine Suppe.",
                "Mein Bruder bringt frisches Brot mit.",
                "Wir essen gegen acht Uhr.",
                "Danach spielen wir noch Karten.",
            ),
        ),
        ClipSpec(
            name="de_f2_snr20",
            voice="de+f2",
            language="de",
            speed_wpm=170,
            pitch=50,
            sample_rate_hz=16000,
            channels=1,
            snr_db=20.0,
            seed=105,
            pause_ms=(800, 300, 1000, 500),
            phrases=(
                "Der Zug hat zehn Minuten Verspätung.",
                "Bitte warten Sie am Gleis drei.",
                "Der Kaffee im Bahnhof ist gut.",
                "Meine Tasche steht neben der Bank.",
                "Endlich kommt der Zug an.",
            ),
        ),
        ClipSpec(
            name="fr_f4_clean",
            voice="fr-fr+f4",
            language="fr",
            speed_wpm=140,
            pitch=55,
            sample_rate_hz=22050,
            channels=1,
            snr_db=None,
            seed=106,
            pause_ms=(300, 650, 1000, 300, 800, 500),
            phrases=(
                "Nous allons au marché demain matin.",
                "Il faut acheter des tomates.",
                "Le fromage de la ferme est excellent.",
                "Ma mère veut des fleurs.",
                "Nous prendrons le vélo.",
                "Il fera beau toute la journée.",
                "On rentrera avant midi.",
            ),
        ),
        ClipSpec(
            name="fr_m2_snr10",
            voice="fr-fr+m2",
            language="fr",
            speed_wpm=190,
            pitch=45,
            sample_rate_hz=44100,
            channels=2,
            snr_db=10.0,
            seed=107,
            pause_ms=(1500, 300, 500, 650),
            phrases=(
                "Le musée ouvre à dix heures.",
                "Les billets coûtent huit euros.",
                "Les enfants entrent gratuitement.",
                "La salle des peintures est au premier étage.",
                "Le café se trouve en bas.",
            ),
        ),
        ClipSpec(
            name="es_m4_clean",
            voice="es+m4",
            language="es",
            speed_wpm=165,
            pitch=50,
            sample_rate_hz=44100,
            channels=1,
            snr_db=None,
            seed=108,
            pause_ms=(650, 300, 800, 1000),
            phrases=(
                "Mañana vamos a la playa.",
                "El agua todavía está fría.",
                "Mi padre prepara unos bocadillos.",
                "Llevaremos una sombrilla grande.",
                "Volveremos antes de la cena.",
            ),
        ),
        ClipSpec(
            name="es_f3_snr20",
            voice="es+f3",
            language="es",
            speed_wpm=175,
            pitch=60,
            sample_rate_hz=16000,
            channels=2,
            snr_db=20.0,
            seed=109,
            pause_ms=(300, 1000, 500, 300, 1500),
            phrases=(
                "La biblioteca cierra a las ocho.",
                "Necesito devolver tres libros.",
                "Uno de ellos es muy antiguo.",
                "La bibliotecaria es muy amable.",
                "Siempre me recomienda novelas nuevas.",
                "Esta semana leeré poesía.",
            ),
        ),
        ClipSpec(
            name="it_m6_clean",
            voice="it+m6",
            language="it",
            speed_wpm=145,
            pitch=45,
            sample_rate_hz=22050,
            channels=2,
            snr_db=None,
            seed=110,
            pause_ms=(800, 500, 300, 650),
            phrases=(
                "Stasera cuciniamo la pasta fresca.",
                "Il pomodoro viene dal nostro orto.",
                "Mia nonna prepara il sugo.",
                "Gli ospiti arrivano alle otto.",
                "Dopo cena beviamo un caffè.",
            ),
        ),
        ClipSpec(
            name="nl_f1_snr10",
            voice="nl+f1",
            language="nl",
            speed_wpm=155,
            pitch=55,
            sample_rate_hz=22050,
            channels=2,
            snr_db=10.0,
            seed=111,
            pause_ms=(500, 1500, 300, 800),
            phrases=(
                "Morgen fietsen we naar het strand.",
                "De wind komt uit het westen.",
                "Vergeet je zonnebril niet.",
                "We nemen appels en water mee.",
                "Om vijf uur zijn we terug.",
            ),
        ),
        ClipSpec(
            name="pt_m5_clean",
            voice="pt-br+m5",
            language="pt-br",
            speed_wpm=185,
            pitch=50,
            sample_rate_hz=48000,
            channels=1,
            snr_db=None,
            seed=112,
            pause_ms=(1000, 300, 650, 500),
            phrases=(
                "O mercado abre cedo aos sábados.",
                "Vamos comprar frutas e verduras.",
                "As laranjas estão muito doces.",
                "Meu tio vende queijo da fazenda.",
                "Depois tomamos um café juntos.",
            ),
        ),
    )


def generate_corpus(specs: Sequence[ClipSpec] | None = None) -> list[SpeechClip]:
    """Render ``specs`` (default: :func:`default_specs`) from scratch, bypassing the cache."""
    return [spec.render() for spec in (default_specs() if specs is None else specs)]


# --------------------------------------------------------------------------------------------
# Persistence and disk cache
# --------------------------------------------------------------------------------------------


def _intervals_array(ivs: Sequence[Interval]) -> npt.NDArray[np.int64]:
    return np.asarray(ivs, dtype=np.int64).reshape(len(ivs), 2)


def _intervals_tuple(a: npt.NDArray[np.integer]) -> tuple[Interval, ...]:
    return tuple((int(s), int(e)) for s, e in a.reshape(-1, 2))


def save_npz(path: str | os.PathLike[str], meta: dict[str, object],
             intervals: dict[str, Sequence[Interval]], **arrays: npt.NDArray[np.generic]) -> None:
    """Write ``arrays``, interval lists and JSON ``meta`` as an uncompressed ``.npz``,
    atomically (shared by the speech and song corpora's caches)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{k: _intervals_array(v) for k, v in intervals.items()},
                     meta=np.array(json.dumps(meta)))
        # Atomic rename lets parallel pytest workers share the cache without torn files.
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_clip(clip: SpeechClip, path: str | os.PathLike[str]) -> None:
    """Store a clip (audio and ground truth) as an uncompressed ``.npz`` file, atomically."""
    meta = {
        "name": clip.name,
        "sample_rate_hz": clip.sample_rate_hz,
        "language": clip.language,
        "voice": clip.voice,
        "snr_db": clip.snr_db,
    }
    save_npz(path, meta, {"speech": clip.speech, "pauses": clip.pauses,
                          "phrases": clip.phrases}, audio=clip.audio)


def load_clip(path: str | os.PathLike[str]) -> SpeechClip:
    """Load a clip written by :func:`save_clip`; its audio array is read-only."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        snr = meta["snr_db"]
        return SpeechClip(
            name=str(meta["name"]),
            audio=_readonly(np.ascontiguousarray(data["audio"], dtype=np.float32)),
            sample_rate_hz=int(meta["sample_rate_hz"]),
            speech=_intervals_tuple(data["speech"]),
            pauses=_intervals_tuple(data["pauses"]),
            phrases=_intervals_tuple(data["phrases"]),
            language=str(meta["language"]),
            voice=str(meta["voice"]),
            snr_db=None if snr is None else float(snr),
        )


@functools.cache
def corpus_cache_dir() -> Path:
    """Cache directory of the default corpus: ``tests/.cache/corpus-<hash>``.

    The hash covers the clip specs, the espeak-ng version, the numpy and soxr versions and
    this module's source, so any change that could alter the audio or ground truth selects a
    fresh directory. The directory is created lazily by :func:`default_corpus`.
    """
    key = {
        "specs": [dataclasses.asdict(s) for s in default_specs()],
        "espeak": _espeak_version_line(),
        "numpy": np.__version__,
        "soxr": soxr.__version__,
        "source": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return _CACHE_ROOT / f"corpus-{digest}"


def _prune_stale_caches(keep: Path) -> None:
    if not keep.parent.is_dir():
        return
    for old in keep.parent.glob("corpus-*"):
        if old != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


@functools.cache
def _default_corpus_cached() -> tuple[SpeechClip, ...]:
    cache = corpus_cache_dir()
    clips: list[SpeechClip] = []
    wrote = False
    for spec in default_specs():
        path = cache / f"{spec.name}.npz"
        try:
            clips.append(load_clip(path))
            continue
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass
        clip = spec.render()
        clips.append(clip)
        try:
            save_clip(clip, path)
            wrote = True
        except OSError:
            pass  # read-only checkout: the cache is an optimisation only
    if wrote:
        _prune_stale_caches(cache)
    return tuple(clips)


def default_corpus() -> list[SpeechClip]:
    """The standard test set (12 clips, ~2.5 min of audio), loaded from the disk cache if present.

    Covers en-us, en-gb, de, fr, es, it, nl and pt-br, male and female variants, 140-200 wpm,
    4-7 phrases of 3-8 words per clip, inserted pauses from {300, 500, 650, 800, 1000, 1500}
    ms (each clip has some < 500 ms and some >= 500 ms), clean clips and clips at 20 or 10 dB
    SNR, sample rates 16000/22050/44100/48000 Hz, mono and stereo. Clips are immutable and
    shared between calls.
    """
    return list(_default_corpus_cached())


def write_wav(clip: SpeechClip, path: str | os.PathLike[str], subtype: str = "PCM_16") -> None:
    """Write ``clip.audio`` with soundfile; the container follows the file extension."""
    sf.write(os.fspath(path), clip.audio, clip.sample_rate_hz, subtype=subtype)
