"""Deterministic synthetic SONG corpus: a vocal over accompaniment that never stops.

In songs the band keeps playing while the singer breathes, so a vocal-domain pause detector
must find the phrase gaps of the *voice* under continuous music. Each clip here is the sum of

* a **vocal** stem: espeak-ng phrases, some spoken (via :func:`tests.corpus.synth_phrase`),
  some "sung" (one slow espeak-ng call per sustained syllable at its own pitch, so a phrase is
  a short melody of long vowels), separated by exact pauses; optionally with a deterministic
  mono convolution reverb; identical in both channels (centred);
* an **accompaniment**: a Standard MIDI File written by :func:`accompaniment_midi` (chords on
  one or two General MIDI programs, optional bass, optional drums on channel 10) rendered
  with fluidsynth and the FluidR3_GM soundfont. Its parts are legato or re-struck on every
  beat/eighth, so it has no rest anywhere, least of all in the vocal pauses.

Ground truth follows :mod:`tests.corpus`: ``speech`` comes from the DRY vocal (10 ms frames
above -45 dB re the phrase's loudest frame, merged over gaps < 30 ms, widened by 10 ms; a cut
strictly inside is a defect) and ``pauses`` are the inserted gaps. With reverb, the vocal's
tail rings on into each pause: :attr:`SongClip.pauses_tail_ms` gives, per pause, how long
the wet vocal stays above -30 dB re the preceding phrase's loudest 10 ms frame, and
:attr:`SongClip.clear_pauses` the pauses with that tail removed. ``pauses`` themselves are
NOT shrunk, so "every pause >= 0.5 s gets a cut" keeps referring to the inserted length; a
cut inside a tail is no word cut (the tail is reverberation only).

Conventions: intervals are half-open ``(start, end)`` sample indices at the clip's rate;
audio arrays are float32 ``[frames, 2]``; ``*_ms`` are milliseconds, ``*_hz`` samples per
second, ``*_db`` decibels. General MIDI program numbers in this module are the 0-based MIDI
byte (GM's 1-based "53 Choir Aahs" is ``52`` here).

Rendering :func:`default_song_corpus` takes ~10 s (fluidsynth dominates); it is cached under
``tests/.cache/songs-<hash>`` (see :func:`song_cache_dir`). fluidsynth 2.3 renders
byte-identically from run to run (raw float output, one thread); the tests check it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import tempfile
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from tests.corpus import (
    ESPEAK_RATE_HZ,
    Interval,
    _espeak_version_line,
    _intervals_tuple,
    _ms_to_samples,
    _readonly,
    _rms,
    _to_rate_inward,
    _to_rate_outward,
    save_npz,
    speech_intervals,
    synth_phrase,
)

__all__ = [
    "GM_PROGRAMS",
    "PROGRESSIONS",
    "SOUNDFONT",
    "SongClip",
    "SongSpec",
    "Sung",
    "accompaniment_midi",
    "default_song_corpus",
    "fluidsynth_version",
    "generate_song_corpus",
    "load_song",
    "make_song",
    "render_midi",
    "render_midi_raw",
    "reverb_ir",
    "save_song",
    "smf_bytes",
    "song_cache_dir",
    "song_specs",
    "write_song",
]

FloatArray = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]
MidiEvent = tuple[int, bytes]
"""``(tick, message)``: absolute time in ticks and one raw MIDI or meta message."""

SOUNDFONT = Path(os.environ.get("SEAMCUT_SOUNDFONT", "/usr/share/sounds/sf2/FluidR3_GM.sf2"))
"""General MIDI soundfont (Debian ``fluid-soundfont-gm``); override with $SEAMCUT_SOUNDFONT."""
TICKS_PER_QUARTER = 480
FLUID_GAIN = 0.4
"""fluidsynth master gain (``-g``); the render is float and rescaled afterwards anyway."""
VOCAL_RMS_DBFS = -20.0
"""Per-channel RMS of the vocal stem over its ``speech`` intervals, dBFS."""
MAX_PEAK = 0.95
"""If the mix peaks above this, vocal and accompaniment are scaled down together."""
REVERB_WET = 0.5
"""Amplitude of the reverberated signal (unit-energy IR) added to the dry vocal (-6 dB)."""
REVERB_PREDELAY_MS = 12
TAIL_THRESHOLD_DB = -30.0
"""A pause's reverb tail lasts while the wet vocal is above this re the phrase's peak frame."""
TAIL_HOP_MS = 10
MUSIC_DB_RANGE = (-15.0, 3.0)

GM_PROGRAMS: dict[int, str] = {
    0: "Acoustic Grand Piano",
    1: "Bright Acoustic Piano",
    2: "Electric Grand Piano",
    4: "Electric Piano 1",
    5: "Electric Piano 2",
    11: "Vibraphone",
    16: "Drawbar Organ",
    18: "Rock Organ",
    19: "Church Organ",
    24: "Acoustic Guitar (nylon)",
    25: "Acoustic Guitar (steel)",
    26: "Electric Guitar (jazz)",
    27: "Electric Guitar (clean)",
    32: "Acoustic Bass",
    33: "Electric Bass (finger)",
    34: "Electric Bass (pick)",
    38: "Synth Bass 1",
    40: "Violin",
    42: "Cello",
    46: "Orchestral Harp",
    48: "String Ensemble 1",
    49: "String Ensemble 2",
    50: "Synth Strings 1",
    52: "Choir Aahs",
    53: "Voice Oohs",
    54: "Synth Voice",
    61: "Brass Section",
    65: "Alto Sax",
    73: "Flute",
    85: "Lead 6 (voice)",
    89: "Pad 2 (warm)",
    91: "Pad 4 (choir)",
}
"""Names of the GM programs this module uses, keyed by the 0-based MIDI program byte."""

_COMP_STYLE: dict[int, str] = {0: "pulse", 4: "pulse", 24: "arpeggio", 25: "arpeggio"}
"""How a chord program plays: re-struck every beat, eighth-note arpeggio, else held per bar."""

PROGRESSIONS: dict[str, tuple[tuple[int, str], ...]] = {
    "pop": ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),  # I V vi IV
    "ballad": ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),  # I vi IV V
    "minor": ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),  # i VI III VII
}
"""Four-bar chord loops: ``(semitones above the key, "maj" | "min")`` per bar."""

_TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
_DRUM_CHANNEL = 9
_KICK, _SNARE, _HIHAT = 36, 38, 42
_HARMONY_PANS = (40, 90)

_CACHE_ROOT = Path(__file__).resolve().parent / ".cache"
_CACHE_PREFIX = "songs-"


# --------------------------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    """A phrase read by a real speaker: a sentence from :mod:`tests.recordings`, whose
    whole extent counts as speech (a cut anywhere inside it is inside a word)."""

    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Sung:
    """A sung phrase: sustained syllables, each one espeak-ng call at its own pitch.

    Attributes:
        notes: ``(syllable, pitch)`` pairs. ``syllable`` is espeak-ng input, typically a
            phoneme string such as ``"[[l'A::]]"`` or a spelling such as ``"laaaa"``;
            ``pitch`` is espeak-ng's ``-p`` (0..99; with ``en-us+f3`` 20 -> ~140 Hz,
            50 -> ~185 Hz, 80 -> ~250 Hz). Syllables are butted together (each trimmed at
            -50 dB), so a phrase sounds like one legato line of long vowels.
    """

    notes: tuple[tuple[str, int], ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class SongClip:
    """One rendered song clip and its ground truth.

    Attributes:
        name: Unique clip name, e.g. ``"piano_drums_48k"``.
        mix: float32 ``[frames, 2]``; exactly ``vocal + accompaniment`` in float32. Read-only.
        vocal: float32 ``[frames, 2]``, the vocal stem as it sits in the mix (after reverb and
            gain), identical in both channels. Read-only.
        accompaniment: float32 ``[frames, 2]``, the fluidsynth render (stereo). Read-only.
        sample_rate_hz: 44100 or 48000.
        speech: Sorted, disjoint ``[start, end)`` vocal-active intervals from the DRY vocal
            (as in :mod:`tests.corpus`); a cut strictly inside one is a defect.
        pauses: The inserted gaps between consecutive phrases, ``[start, end)``, from the end of
            phrase k's trimmed dry audio to the start of phrase k+1's (mapped inward).
        phrases: Extent of each phrase's trimmed dry audio, ``[start, end)`` (mapped outward).
        pauses_tail_ms: Per pause, ms from its start until the wet vocal stays below -30 dB
            re the preceding phrase's loudest 10 ms frame (0 without reverb).
        music_db: Accompaniment RMS relative to vocal RMS over the ``speech`` samples, dB
            (-15 .. +3); the measured value matches within 0.01 dB.
        patch: GM program names used, ``" + "``-joined, e.g. ``"Acoustic Grand Piano +
            Acoustic Bass + Standard Drums"``.
        reverb: Whether the vocal has reverb.
    """

    name: str
    mix: FloatArray
    vocal: FloatArray
    accompaniment: FloatArray
    sample_rate_hz: int
    speech: tuple[Interval, ...]
    pauses: tuple[Interval, ...]
    phrases: tuple[Interval, ...]
    pauses_tail_ms: tuple[int, ...]
    music_db: float
    patch: str
    reverb: bool

    @property
    def frames(self) -> int:
        """Number of sample frames."""
        return int(self.mix.shape[0])

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate_hz

    @property
    def clear_pauses(self) -> tuple[Interval, ...]:
        """``pauses`` with each reverb tail (``pauses_tail_ms``) cut off the start.

        An interval may become empty (``start == end``) when the tail fills the whole pause.
        """
        out: list[Interval] = []
        for (start, end), tail in zip(self.pauses, self.pauses_tail_ms, strict=True):
            out.append((min(end, start + _ms_to_samples(tail, self.sample_rate_hz)), end))
        return tuple(out)


@dataclass(frozen=True, kw_only=True, slots=True)
class SongSpec:
    """Recipe for one song clip; :meth:`render` builds it (no caching).

    Attributes:
        name: Clip name.
        phrases: Spoken text (``str``) or :class:`Sung` per phrase.
        pause_ms: Gap between consecutive phrases, ms; ``len(phrases) - 1`` entries.
        voice: espeak-ng voice, e.g. ``"en-us+f3"``.
        speed_wpm: espeak-ng rate of spoken phrases, words per minute.
        pitch: espeak-ng pitch (0..99) of spoken phrases.
        sung_wpm: espeak-ng rate of sung syllables (slow means long vowels).
        sample_rate_hz: Output rate, 44100 or 48000.
        music_db: Accompaniment level re the vocal over ``speech``, dB.
        programs: GM programs (0-based) of the chord parts, one MIDI channel each.
        bass_program: GM program of the bass line, or None for no bass.
        drums: Whether a drum kit plays on channel 10.
        progression: Key of :data:`PROGRESSIONS`.
        key: Transposition of the progression, semitones above C.
        tempo_bpm: Tempo, quarter notes per minute (4/4 time).
        reverb_t60_s: Vocal reverb decay time (60 dB) in seconds, or None for a dry vocal.
        stereo_reverb: The reverb's left and right responses differ (two seeds), so its
            tail is decorrelated between the channels, as a stereo room or plate is;
            otherwise one mono response feeds both.
        pans: MIDI pan (0..127, 64 = centre) of each chord part; () = the default
            left/right spread.
        lead_ms: Music-only intro before the first phrase, ms.
        tail_ms: Music-only outro after the last phrase, ms.
        seed: Seed of the reverb impulse response and the drum/chord velocity humanisation.
    """

    name: str
    phrases: tuple[str | Sung | Recorded, ...]
    pause_ms: tuple[int, ...]
    voice: str
    speed_wpm: int = 150
    pitch: int = 50
    sung_wpm: int = 100
    sample_rate_hz: int
    music_db: float
    programs: tuple[int, ...]
    bass_program: int | None
    drums: bool
    progression: str = "pop"
    key: int = 0
    tempo_bpm: float = 96.0
    reverb_t60_s: float | None = None
    stereo_reverb: bool = False
    pans: tuple[int, ...] = ()
    lead_ms: int = 1000
    tail_ms: int = 800
    seed: int = 0

    @property
    def patch(self) -> str:
        """GM program names of all parts, ``" + "``-joined (drums as ``"Standard Drums"``)."""
        names = [GM_PROGRAMS.get(p, f"GM {p}") for p in self.programs]
        if self.bass_program is not None:
            names.append(GM_PROGRAMS.get(self.bass_program, f"GM {self.bass_program}"))
        if self.drums:
            names.append("Standard Drums")
        return " + ".join(names)

    def render(self) -> SongClip:
        """Render the clip from scratch (espeak-ng + fluidsynth; a few seconds)."""
        return make_song(self)


# --------------------------------------------------------------------------------------------
# Standard MIDI File writing
# --------------------------------------------------------------------------------------------


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity (7 bits per byte, big-endian, high bit = more follows)."""
    if value < 0:
        raise ValueError("negative delta time")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _event_order(msg: bytes) -> int:
    """Order of simultaneous events: meta, controller/program, note-off, note-on."""
    status = msg[0]
    if status == 0xFF:
        return 0
    kind = status & 0xF0
    if kind in (0xB0, 0xC0):
        return 1
    if kind == 0x80 or (kind == 0x90 and msg[2] == 0):
        return 2
    return 3


def smf_bytes(events: Sequence[MidiEvent], *, ticks_per_quarter: int = TICKS_PER_QUARTER) -> bytes:
    """Serialise events as a format-0 Standard MIDI File (one track).

    Simultaneous events are ordered meta < controller/program < note-off < note-on (stable
    otherwise), so a legato note that ends where the same key starts again is retriggered
    rather than cut. No running status; an end-of-track meta event is appended.

    Args:
        events: ``(tick, message)`` pairs; ticks are absolute, >= 0; a message is raw bytes,
            e.g. ``b"\\x90\\x3c\\x64"`` (note-on) or ``b"\\xff\\x51\\x03..."`` (meta).
        ticks_per_quarter: Time division (ticks per quarter note).

    Returns:
        The file's bytes.
    """
    ordered = sorted(events, key=lambda ev: (ev[0], _event_order(ev[1])))
    track = bytearray()
    now = 0
    for tick, msg in ordered:
        track += _vlq(tick - now) + msg
        now = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_quarter)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def _note(ch: int, key: int, vel: int, start: int, end: int) -> list[MidiEvent]:
    return [(start, bytes((0x90 | ch, key, vel))), (end, bytes((0x80 | ch, key, 64)))]


def _cc(ch: int, ctrl: int, value: int) -> MidiEvent:
    return (0, bytes((0xB0 | ch, ctrl, value)))


def accompaniment_midi(
    *,
    programs: Sequence[int],
    bass_program: int | None,
    drums: bool,
    progression: str,
    key: int,
    tempo_bpm: float,
    bars: int,
    seed: int,
    pans: Sequence[int] = (),
) -> bytes:
    """Compose a gap-free 4/4 accompaniment and return it as a Standard MIDI File.

    Parts (all starting at tick 0 and playing through the last bar without a rest):

    * one chord part per entry of ``programs`` (channels 1, 2, ...; panned left/right):
      pianos re-strike the triad on every beat, guitars arpeggiate it in eighths, everything
      else (organ, strings, choir, pads) holds it for the whole bar, legato into the next;
    * bass (next channel, centre): legato quarter notes root-root-fifth-octave;
    * drums (channel 10): closed hi-hat every eighth, kick on 1 and 3, snare on 2 and 4.

    Args:
        programs: GM programs (0-based) of the chord parts, at most 8.
        bass_program: GM program of the bass, or None.
        drums: Whether to add the drum part.
        progression: Key of :data:`PROGRESSIONS` (a 4-bar loop, one chord per bar).
        key: Transposition in semitones above C.
        tempo_bpm: Quarter notes per minute.
        bars: Number of bars (>= 1).
        seed: Seed of the +-6 velocity humanisation.
        pans: MIDI pan per chord part (default: alternating left/right).

    Returns:
        SMF bytes (format 0, :data:`TICKS_PER_QUARTER` ticks per quarter).
    """
    if bars < 1 or not 1 <= len(programs) <= 8:
        raise ValueError("need bars >= 1 and 1..8 chord programs")
    rng = np.random.default_rng(seed)

    def vel(base: int) -> int:
        return int(np.clip(base + rng.integers(-6, 7), 1, 127))

    q = TICKS_PER_QUARTER
    bar = 4 * q
    events: list[MidiEvent] = [
        (0, b"\xff\x51\x03" + round(60_000_000 / tempo_bpm).to_bytes(3, "big")),
        (0, b"\xff\x58\x04\x04\x02\x18\x08"),
    ]
    chords = [PROGRESSIONS[progression][b % 4] for b in range(bars)]
    for ch, program in enumerate(programs):
        pan = _HARMONY_PANS[ch % 2] if len(programs) > 1 else _HARMONY_PANS[0]
        if pans:
            pan = pans[ch]
        events += [(0, bytes((0xC0 | ch, program))), _cc(ch, 7, 96), _cc(ch, 10, pan)]
        events.append(_cc(ch, 91, 50))
        style = _COMP_STYLE.get(program, "sustain")
        for b, (degree, quality) in enumerate(chords):
            root = 48 + (key + degree) % 12 + (12 if style != "sustain" else 0)
            tones = [root + i for i in _TRIADS[quality]]
            t0 = b * bar
            if style == "pulse":
                for beat in range(4):
                    for k in tones:
                        events += _note(ch, k, vel(88 if beat == 0 else 76), *_span(t0, beat, q))
            elif style == "arpeggio":
                line = (*tones, tones[0] + 12)
                for i, idx in enumerate((0, 2, 1, 2, 3, 2, 1, 2)):
                    events += _note(ch, line[idx], vel(80), *_span(t0, i, q // 2))
            else:
                for k in tones:
                    events += _note(ch, k, vel(84), t0, t0 + bar)
    if bass_program is not None:
        ch = len(programs)
        events += [(0, bytes((0xC0 | ch, bass_program))), _cc(ch, 7, 110), _cc(ch, 10, 64)]
        for b, (degree, _) in enumerate(chords):
            root = 36 + (key + degree) % 12
            for beat, interval in enumerate((0, 0, 7, 12)):
                events += _note(ch, root + interval, vel(96), *_span(b * bar, beat, q))
    if drums:
        ch = _DRUM_CHANNEL
        events += [_cc(ch, 7, 100), _cc(ch, 91, 30)]
        for b in range(bars):
            for i in range(8):
                start = b * bar + i * (q // 2)
                events += _note(ch, _HIHAT, vel(72 if i % 2 == 0 else 54), start, start + q // 4)
                if i in (0, 4):
                    events += _note(ch, _KICK, vel(100), start, start + q // 4)
                if i in (2, 6):
                    events += _note(ch, _SNARE, vel(92), start, start + q // 4)
    return smf_bytes(events)


def _span(t0: int, index: int, step: int) -> tuple[int, int]:
    """``[start, end)`` ticks of the ``index``-th legato step of ``step`` ticks after ``t0``."""
    return t0 + index * step, t0 + (index + 1) * step


# --------------------------------------------------------------------------------------------
# fluidsynth
# --------------------------------------------------------------------------------------------


@functools.cache
def _fluidsynth_exe() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RuntimeError(
            "fluidsynth was not found on PATH; install it with "
            "`apt-get install fluidsynth fluid-soundfont-gm`"
        )
    return exe


@functools.cache
def fluidsynth_version() -> str:
    """fluidsynth's version line, e.g. ``"FluidSynth runtime version 2.3.1"``.

    Raises:
        RuntimeError: fluidsynth is missing or fails.
    """
    proc = subprocess.run(
        [_fluidsynth_exe(), "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"`fluidsynth --version` failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout.strip().splitlines()[0].strip()


def _soundfont() -> Path:
    if not SOUNDFONT.is_file():
        raise RuntimeError(
            f"soundfont {SOUNDFONT} not found; `apt-get install fluid-soundfont-gm` "
            "or set SEAMCUT_SOUNDFONT"
        )
    return SOUNDFONT


def render_midi_raw(
    midi: bytes, raw_path: str | os.PathLike[str], *, sample_rate_hz: int, gain: float = FLUID_GAIN
) -> None:
    """Render a MIDI file with fluidsynth to headerless float32 little-endian stereo PCM.

    Runs ``fluidsynth -n -i -q -g GAIN -r RATE -F OUT -T raw -O float -E little
    -o synth.cpu-cores=1 -o synth.dynamic-sample-loading=1 SOUNDFONT song.mid`` (fast render;
    fluidsynth's own reverb and chorus stay on). Float output means no dither, and with the
    same fluidsynth, soundfont and MIDI bytes the file is byte-identical from run to run.
    (Raw, not WAV: libsndfile stamps the wall-clock time into a float WAV's PEAK chunk, so
    two WAV renders differ in those 4 header bytes though their samples are identical.)
    Rendering stops when the MIDI file ends, so the last release tail is cut.

    Args:
        midi: Standard MIDI File bytes.
        raw_path: Output file (overwritten): interleaved L/R float32 frames.
        sample_rate_hz: Synthesis rate.
        gain: Master gain (``-g``).

    Raises:
        RuntimeError: fluidsynth or the soundfont is missing, or the render fails.
    """
    out = Path(raw_path)
    with tempfile.TemporaryDirectory(prefix="seamcut-song-") as tmp:
        mid = Path(tmp) / "song.mid"
        mid.write_bytes(midi)
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        cmd = [
            _fluidsynth_exe(),
            "-n",
            "-i",
            "-q",
            "-g",
            f"{gain}",
            "-r",
            str(sample_rate_hz),
            "-F",
            str(out),
            "-T",
            "raw",
            "-O",
            "float",
            "-E",
            "little",
            "-o",
            "synth.cpu-cores=1",
            "-o",
            "synth.dynamic-sample-loading=1",
            str(_soundfont()),
            str(mid),
        ]
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=300)
    # fluidsynth may exit 0 after errors such as an unreadable soundfont, so the output
    # file is checked too.
    if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        msg = (proc.stderr + proc.stdout).decode(errors="replace").strip()
        raise RuntimeError(f"fluidsynth failed ({proc.returncode}): {msg}")


def render_midi(midi: bytes, *, sample_rate_hz: int, gain: float = FLUID_GAIN) -> FloatArray:
    """Render a MIDI file with fluidsynth (see :func:`render_midi_raw`) and decode it.

    Returns:
        float32 stereo samples, shape ``[frames, 2]``, at ``sample_rate_hz``.

    Raises:
        RuntimeError: fluidsynth or the soundfont is missing, the render fails, or it is
            silent or not whole stereo float32 frames.
    """
    with tempfile.TemporaryDirectory(prefix="seamcut-song-") as tmp:
        out = Path(tmp) / "out.f32"
        render_midi_raw(midi, out, sample_rate_hz=sample_rate_hz, gain=gain)
        data = out.read_bytes()
    if len(data) % 8:
        raise RuntimeError(f"fluidsynth wrote {len(data)} bytes, not whole float32 stereo frames")
    audio = np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(-1, 2)
    if not np.any(audio):
        raise RuntimeError("fluidsynth rendered digital silence (soundfont not loaded?)")
    return np.ascontiguousarray(audio)


# --------------------------------------------------------------------------------------------
# Vocal
# --------------------------------------------------------------------------------------------


# A sung note shorter than this is a rendering fault, not a note (every note here lasts
# 0.38 s or more at the sung tempo).
SUNG_NOTE_MIN_S = 0.3
# Languages whose espeak-ng phoneme table has the open back vowel ``A`` of the default
# syllables. The others (fr, es, it, pl, ro, cs, fi, id, tr among those used here) render
# ``[[n'A:]]`` as 0.15 s of near-silence, so the note is sung on their ``a`` instead.
_OPEN_BACK_A = ("en", "de", "nl", "pt", "sv", "da", "hu")


def language(voice: str) -> str:
    """The language of an espeak-ng voice such as ``"pt-br+f3"``: ``"pt"``."""
    return voice.split("+", maxsplit=1)[0].split("-", maxsplit=1)[0]


def _portable(syllable: str, voice: str) -> str:
    """``syllable`` as ``voice``'s phoneme table can sing it."""
    if syllable.startswith("[[") and language(voice) not in _OPEN_BACK_A:
        return syllable.replace("A", "a")
    return syllable


def _render_phrase(phrase: str | Sung | Recorded, spec: SongSpec) -> F64Array:
    """Dry mono phrase at :data:`ESPEAK_RATE_HZ`, trimmed at both ends."""
    parts: list[FloatArray] = []
    if isinstance(phrase, Recorded):
        from tests.recordings import recording

        audio64, rate64 = recording(phrase.name)
        return np.asarray(soxr.resample(audio64, rate64, ESPEAK_RATE_HZ, quality="VHQ"),
                          dtype=np.float64)
    if isinstance(phrase, str):
        audio, rate = synth_phrase(
            phrase, voice=spec.voice, speed_wpm=spec.speed_wpm, pitch=spec.pitch
        )
        parts.append(audio)
    else:
        if not phrase.notes:
            raise ValueError("a sung phrase needs at least one note")
        for syllable, pitch in phrase.notes:
            audio, rate = synth_phrase(
                _portable(syllable, spec.voice), voice=spec.voice, speed_wpm=spec.sung_wpm,
                pitch=pitch,
            )
            if audio.shape[0] < SUNG_NOTE_MIN_S * rate:
                raise RuntimeError(
                    f"espeak-ng sang {syllable!r} with {spec.voice} as {audio.shape[0] / rate:.2f}"
                    f" s, not a sustained note: its phoneme table lacks a phoneme of it"
                )
            parts.append(audio)
    if rate != ESPEAK_RATE_HZ:
        raise RuntimeError(f"espeak-ng returned {rate} Hz, expected {ESPEAK_RATE_HZ} Hz")
    return np.concatenate(parts).astype(np.float64)


def reverb_ir(t60_s: float, sample_rate_hz: int, *, seed: int) -> F64Array:
    """Deterministic mono room impulse response: pre-delay, then exponentially decaying noise.

    Gaussian noise (``numpy.random.default_rng(seed)``) under an envelope falling 60 dB over
    ``t60_s``, truncated there, preceded by :data:`REVERB_PREDELAY_MS` of zeros, scaled to
    unit energy (``sum(h**2) == 1``).

    Args:
        t60_s: Decay time to -60 dB, seconds (> 0).
        sample_rate_hz: Rate of the response.
        seed: Noise seed.

    Returns:
        float64 ``[taps]``.
    """
    if t60_s <= 0:
        raise ValueError("t60_s must be > 0")
    n = max(1, round(t60_s * sample_rate_hz))
    t = np.arange(n) / sample_rate_hz
    h = np.random.default_rng(seed).standard_normal(n) * 10.0 ** (-3.0 * t / t60_s)
    h /= math.sqrt(float(np.sum(h * h)))
    return np.concatenate((np.zeros(_ms_to_samples(REVERB_PREDELAY_MS, sample_rate_hz)), h))


def _convolve_same(x: F64Array, h: F64Array) -> F64Array:
    """Causal linear convolution of ``x`` with ``h`` via FFT, truncated to ``len(x)``."""
    n = x.size + h.size - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)
    return np.ascontiguousarray(y[: x.size])


def _frame_energy(x: F64Array, hop: int) -> F64Array:
    """Mean square of consecutive ``hop``-sample frames (last frame zero-padded)."""
    n_frames = -(-x.size // hop)
    padded = np.zeros(n_frames * hop)
    padded[: x.size] = x
    energy: F64Array = np.square(padded).reshape(n_frames, hop).mean(axis=1)
    return energy


def _tail_ms(wet: F64Array, phrase: Interval, pause: Interval, rate: int) -> int:
    """How long (ms) the wet vocal stays above :data:`TAIL_THRESHOLD_DB` into ``pause``."""
    hop = max(1, rate * TAIL_HOP_MS // 1000)
    ref = float(_frame_energy(wet[phrase[0] : phrase[1]], hop).max())
    energy = _frame_energy(wet[pause[0] : pause[1]], hop)
    loud = np.flatnonzero(energy > ref * 10.0 ** (TAIL_THRESHOLD_DB / 10.0))
    if loud.size == 0 or ref == 0.0:
        return 0
    samples = min(pause[1] - pause[0], (int(loud[-1]) + 1) * hop)
    return math.ceil(samples * 1000 / rate)


# --------------------------------------------------------------------------------------------
# Clip assembly
# --------------------------------------------------------------------------------------------


def make_song(spec: SongSpec) -> SongClip:
    """Render one song clip from its recipe (no caching).

    Steps: each phrase is synthesised at 22050 Hz and laid out with the exact pauses (plus
    ``lead_ms``/``tail_ms`` of music-only intro/outro); the dry vocal is resampled with soxr
    (VHQ) to the output rate, optionally convolved with :func:`reverb_ir` (wet = dry +
    0.5 * reverb), and scaled to :data:`VOCAL_RMS_DBFS` over ``speech``. The accompaniment is
    composed for the clip's length plus one bar, rendered by fluidsynth at the output rate,
    cut to length and scaled to ``music_db``. If the mix would peak above :data:`MAX_PEAK`
    both stems are scaled down together (``music_db`` is unchanged).

    Raises:
        ValueError: inconsistent spec.
        RuntimeError: espeak-ng, fluidsynth or the soundfont is missing or fails.
    """
    if len(spec.pause_ms) != len(spec.phrases) - 1 or not spec.phrases:
        raise ValueError(f"{spec.name}: need {len(spec.phrases) - 1} pauses")
    if min(spec.pause_ms, default=0) < 0 or spec.lead_ms < 0 or spec.tail_ms < 0:
        raise ValueError(f"{spec.name}: durations must be >= 0")
    if not MUSIC_DB_RANGE[0] <= spec.music_db <= MUSIC_DB_RANGE[1]:
        raise ValueError(f"{spec.name}: music_db {spec.music_db} outside {MUSIC_DB_RANGE}")
    rate_in, rate = ESPEAK_RATE_HZ, spec.sample_rate_hz

    pieces: list[F64Array] = [np.zeros(_ms_to_samples(spec.lead_ms, rate_in))]
    cursor = pieces[0].size
    speech_in: list[Interval] = []
    phrases_in: list[Interval] = []
    pauses_in: list[Interval] = []
    for k, phrase in enumerate(spec.phrases):
        audio = _render_phrase(phrase, spec)
        spans = (((0, audio.size),) if isinstance(phrase, Recorded)
                 else speech_intervals(audio, rate_in))
        speech_in.extend((cursor + s, cursor + e) for s, e in spans)
        phrases_in.append((cursor, cursor + audio.size))
        pieces.append(audio)
        cursor += audio.size
        if k < len(spec.pause_ms):
            gap = _ms_to_samples(spec.pause_ms[k], rate_in)
            pauses_in.append((cursor, cursor + gap))
            pieces.append(np.zeros(gap))
            cursor += gap
    pieces.append(np.zeros(_ms_to_samples(spec.tail_ms, rate_in)))
    dry = np.asarray(soxr.resample(np.concatenate(pieces), rate_in, rate, quality="VHQ"))
    frames = dry.size

    def clip(iv: Interval) -> Interval:
        return min(iv[0], frames), min(iv[1], frames)

    speech = tuple(clip(_to_rate_outward(iv, rate_in, rate)) for iv in speech_in)
    phrases = tuple(clip(_to_rate_outward(iv, rate_in, rate)) for iv in phrases_in)
    pauses = tuple(clip(_to_rate_inward(iv, rate_in, rate)) for iv in pauses_in)

    if spec.reverb_t60_s is None:
        wet = np.stack([dry, dry], axis=1)
    else:
        seeds = (spec.seed, spec.seed + 1) if spec.stereo_reverb else (spec.seed, spec.seed)
        wet = np.stack([dry + REVERB_WET * _convolve_same(
            dry, reverb_ir(spec.reverb_t60_s, rate, seed=sd)) for sd in seeds], axis=1)
    tails = tuple(
        _tail_ms(wet.mean(axis=1), ph, pa, rate) if spec.reverb_t60_s is not None else 0
        for ph, pa in zip(phrases, pauses, strict=False)
    )

    def speech_rms(x: npt.NDArray[np.float64]) -> float:
        return _rms(np.concatenate([x[s:e] for s, e in speech]))

    stereo_vocal = wet * (10.0 ** (VOCAL_RMS_DBFS / 20.0) / speech_rms(wet.mean(axis=1)))
    vocal = stereo_vocal.mean(axis=1)

    bar_s = 4 * 60.0 / spec.tempo_bpm
    bars = math.ceil(frames / rate / bar_s) + 1
    midi = accompaniment_midi(
        programs=spec.programs,
        bass_program=spec.bass_program,
        drums=spec.drums,
        progression=spec.progression,
        key=spec.key,
        tempo_bpm=spec.tempo_bpm,
        bars=bars,
        seed=spec.seed,
        pans=spec.pans,
    )
    music = render_midi(midi, sample_rate_hz=rate).astype(np.float64)
    if music.shape[0] < frames:
        raise RuntimeError(f"{spec.name}: fluidsynth rendered {music.shape[0]} < {frames} frames")
    music = music[:frames]
    target = speech_rms(vocal) * 10.0 ** (spec.music_db / 20.0)
    music *= target / speech_rms(music)

    peak = float(np.max(np.abs(stereo_vocal + music)))
    if peak > MAX_PEAK:
        stereo_vocal *= MAX_PEAK / peak
        music *= MAX_PEAK / peak
    vocal32 = stereo_vocal.astype(np.float32)
    music32 = music.astype(np.float32)
    return SongClip(
        name=spec.name,
        mix=_readonly(vocal32 + music32),
        vocal=_readonly(vocal32),
        accompaniment=_readonly(music32),
        sample_rate_hz=rate,
        speech=speech,
        pauses=pauses,
        phrases=phrases,
        pauses_tail_ms=tails,
        music_db=float(spec.music_db),
        patch=spec.patch,
        reverb=spec.reverb_t60_s is not None,
    )


# --------------------------------------------------------------------------------------------
# Default corpus
# --------------------------------------------------------------------------------------------

_LA, _AH, _OO, _MI, _LO, _NA, _HEY = (
    "laaaa",
    "[[l'A::]]",
    "[[n'u:]]",
    "[[m'i:]]",
    "[[l'o:]]",
    "[[n'A:]]",
    "[[h'eI]]",
)


@functools.cache
def song_specs() -> tuple[SongSpec, ...]:
    """Recipes of the default song corpus (see :func:`default_song_corpus`)."""
    return (
        SongSpec(
            name="piano_drums_48k",
            voice="en-us+f3",
            speed_wpm=150,
            sample_rate_hz=48000,
            music_db=-6.0,
            programs=(0,),
            bass_program=32,
            drums=True,
            progression="pop",
            key=0,
            tempo_bpm=100,
            seed=201,
            pause_ms=(500, 1000, 300),
            phrases=(
                "The night is long and the road is wide.",
                Sung(notes=((_LA, 40), (_LA, 55), (_AH, 70))),
                "I keep on walking to the other side.",
                Sung(notes=((_OO, 60), (_OO, 45), (_MI, 35))),
            ),
        ),
        SongSpec(
            name="strings_reverb_44k",
            voice="en-gb+m3",
            speed_wpm=140,
            pitch=40,
            sample_rate_hz=44100,
            music_db=-12.0,
            programs=(48,),
            bass_program=32,
            drums=False,
            progression="ballad",
            key=2,
            tempo_bpm=76,
            reverb_t60_s=0.6,
            seed=202,
            pause_ms=(700, 1500, 500),
            phrases=(
                Sung(notes=((_AH, 30), (_LO, 45), (_AH, 55))),
                "Under the silver moon we wait.",
                Sung(notes=((_NA, 50), (_NA, 40), (_OO, 30))),
                "The morning never comes too late.",
            ),
        ),
        SongSpec(
            name="guitar_drums_reverb_48k",
            voice="en-us+m1",
            speed_wpm=160,
            pitch=45,
            sample_rate_hz=48000,
            music_db=-3.0,
            programs=(24,),
            bass_program=33,
            drums=True,
            progression="pop",
            key=7,
            tempo_bpm=108,
            reverb_t60_s=0.4,
            seed=203,
            pause_ms=(300, 700, 1000, 500),
            phrases=(
                "Pack your bags, we are leaving town.",
                "Nothing here can slow us down.",
                Sung(notes=((_HEY, 55), (_HEY, 65), (_LA, 50))),
                "Sunlight on the open road.",
                Sung(notes=((_OO, 40), (_AH, 50))),
            ),
        ),
        SongSpec(
            name="organ_44k",
            voice="en-us+f5",
            speed_wpm=150,
            pitch=55,
            sample_rate_hz=44100,
            music_db=0.0,
            programs=(16,),
            bass_program=33,
            drums=False,
            progression="minor",
            key=9,
            tempo_bpm=88,
            seed=204,
            pause_ms=(1000, 500, 1500),
            phrases=(
                "Lay me down by the river bend.",
                Sung(notes=((_MI, 45), (_AH, 60), (_AH, 50))),
                "This is where the story ends.",
                Sung(notes=((_LO, 35), (_OO, 30))),
            ),
        ),
        SongSpec(
            name="choir_reverb_48k",
            voice="en-gb+f2",
            speed_wpm=140,
            pitch=60,
            sample_rate_hz=48000,
            music_db=-9.0,
            programs=(52,),
            bass_program=None,
            drums=False,
            progression="ballad",
            key=5,
            tempo_bpm=72,
            reverb_t60_s=0.8,
            seed=205,
            pause_ms=(1500, 700, 1000),
            phrases=(
                Sung(notes=((_AH, 50), (_AH, 60), (_NA, 70))),
                "Hold the light above the sea.",
                Sung(notes=((_OO, 65), (_OO, 55), (_LO, 45))),
                "Sing the song you sang to me.",
            ),
        ),
        SongSpec(
            name="oohs_piano_drums_44k",
            voice="en-us+m3",
            speed_wpm=165,
            pitch=40,
            sample_rate_hz=44100,
            music_db=3.0,
            programs=(53, 0),
            bass_program=32,
            drums=True,
            progression="pop",
            key=4,
            tempo_bpm=112,
            seed=206,
            pause_ms=(500, 700, 1000, 1500),
            phrases=(
                "Turn it up and let it play.",
                Sung(notes=((_LA, 35), (_LA, 45))),
                "Dancing till the break of day.",
                "Every heart is beating fast.",
                Sung(notes=((_HEY, 50), (_AH, 40))),
            ),
        ),
        SongSpec(
            name="synthvoice_drums_reverb_48k",
            voice="en-us+f4",
            speed_wpm=155,
            pitch=50,
            sample_rate_hz=48000,
            music_db=-15.0,
            programs=(54,),
            bass_program=33,
            drums=True,
            progression="minor",
            key=2,
            tempo_bpm=120,
            reverb_t60_s=0.3,
            seed=207,
            pause_ms=(300, 1000, 500),
            phrases=(
                Sung(notes=((_NA, 55), (_NA, 65), (_MI, 75))),
                "Neon lights are calling out my name.",
                "Nothing ever stays the same.",
                Sung(notes=((_OO, 60), (_AH, 50), (_OO, 40))),
            ),
        ),
        SongSpec(
            name="epiano_drums_44k",
            voice="en-gb+m1",
            speed_wpm=150,
            pitch=45,
            sample_rate_hz=44100,
            music_db=-9.0,
            programs=(4,),
            bass_program=33,
            drums=True,
            progression="ballad",
            key=10,
            tempo_bpm=92,
            seed=208,
            pause_ms=(700, 300, 1500, 500),
            phrases=(
                "Coffee on the kitchen table.",
                Sung(notes=((_LA, 40), (_AH, 50))),
                "Tell me stories, tell me fables.",
                Sung(notes=((_MI, 45), (_LO, 55), (_AH, 45))),
                "Stay a while and sing along.",
            ),
        ),
        SongSpec(
            name="church_organ_reverb_44k",
            voice="en-us+m2",
            speed_wpm=135,
            pitch=35,
            sample_rate_hz=44100,
            music_db=-6.0,
            programs=(19,),
            bass_program=None,
            drums=False,
            progression="minor",
            key=0,
            tempo_bpm=66,
            reverb_t60_s=0.5,
            seed=209,
            pause_ms=(1000, 500, 700),
            phrases=(
                "Bells are ringing far away.",
                Sung(notes=((_AH, 25), (_AH, 35), (_OO, 30))),
                "Candles burning where we pray.",
                Sung(notes=((_LO, 40), (_NA, 30))),
            ),
        ),
        SongSpec(
            name="guitar_strings_drums_reverb_48k",
            voice="en-us+f2",
            speed_wpm=160,
            pitch=55,
            sample_rate_hz=48000,
            music_db=0.0,
            programs=(25, 49),
            bass_program=32,
            drums=True,
            progression="pop",
            key=9,
            tempo_bpm=104,
            reverb_t60_s=0.7,
            seed=210,
            pause_ms=(500, 1500, 300, 1000),
            phrases=(
                Sung(notes=((_HEY, 60), (_LA, 70))),
                "Run with me across the field.",
                "Every wound will someday heal.",
                Sung(notes=((_OO, 55), (_AH, 65))),
                "Carry on and hold the line.",
            ),
        ),
    )


def generate_song_corpus(specs: Sequence[SongSpec] | None = None) -> list[SongClip]:
    """Render ``specs`` (default: :func:`song_specs`) from scratch, bypassing the cache.

    Clips are rendered in a thread pool (the work is in subprocesses and numpy); each clip
    depends only on its own spec, so the result does not depend on scheduling.
    """
    todo = list(song_specs() if specs is None else specs)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return list(pool.map(make_song, todo))


# --------------------------------------------------------------------------------------------
# Persistence and disk cache
# --------------------------------------------------------------------------------------------


def save_song(clip: SongClip, path: str | os.PathLike[str]) -> None:
    """Store a clip as an uncompressed ``.npz`` (vocal, accompaniment, ground truth), atomically.

    One vocal channel when both are identical (no stereo reverb), and no mix:
    :func:`load_song` rebuilds them, the mix as ``vocal + accompaniment`` in float32,
    which is bit-exact.
    """
    meta = {
        "name": clip.name,
        "sample_rate_hz": clip.sample_rate_hz,
        "pauses_tail_ms": list(clip.pauses_tail_ms),
        "music_db": clip.music_db,
        "patch": clip.patch,
        "reverb": clip.reverb,
    }
    save_npz(path, meta, {"speech": clip.speech, "pauses": clip.pauses,
                          "phrases": clip.phrases},
             vocal=clip.vocal[:, 0] if np.array_equal(clip.vocal[:, 0], clip.vocal[:, 1])
             else clip.vocal, accompaniment=clip.accompaniment)


def load_song(path: str | os.PathLike[str]) -> SongClip:
    """Load a clip written by :func:`save_song`; its arrays are read-only."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        vocal = np.asarray(data["vocal"], dtype=np.float32)
        if vocal.ndim == 1:
            vocal = np.repeat(vocal[:, None], 2, axis=1)
        music = np.ascontiguousarray(data["accompaniment"], dtype=np.float32)
        return SongClip(
            name=str(meta["name"]),
            mix=_readonly(vocal + music),
            vocal=_readonly(vocal),
            accompaniment=_readonly(music),
            sample_rate_hz=int(meta["sample_rate_hz"]),
            speech=_intervals_tuple(data["speech"]),
            pauses=_intervals_tuple(data["pauses"]),
            phrases=_intervals_tuple(data["phrases"]),
            pauses_tail_ms=tuple(int(t) for t in meta["pauses_tail_ms"]),
            music_db=float(meta["music_db"]),
            patch=str(meta["patch"]),
            reverb=bool(meta["reverb"]),
        )


@functools.cache
def song_cache_dir() -> Path:
    """Cache directory of the default song corpus: ``tests/.cache/songs-<hash>``.

    The hash covers the specs, the espeak-ng and fluidsynth versions, the soundfont's path,
    size and mtime, the numpy and soxr versions and the source of this module and of
    ``tests/corpus.py`` (whose espeak-ng helpers it uses).
    """
    sf2 = _soundfont().stat()
    key = {
        "specs": [dataclasses.asdict(s) for s in song_specs()],
        "espeak": _espeak_version_line(),
        "fluidsynth": fluidsynth_version(),
        "soundfont": [str(SOUNDFONT), sf2.st_size, sf2.st_mtime_ns],
        "numpy": np.__version__,
        "soxr": soxr.__version__,
        "source": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "corpus": hashlib.sha256(
            (Path(__file__).resolve().parent / "corpus.py").read_bytes()
        ).hexdigest(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return _CACHE_ROOT / f"{_CACHE_PREFIX}{digest}"


def _prune_stale_caches(keep: Path) -> None:
    if not keep.parent.is_dir():
        return
    for old in keep.parent.glob(f"{_CACHE_PREFIX}*"):
        if old != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


@functools.cache
def cached_songs(specs: Sequence[SongSpec], cache: Path) -> tuple[list[SongClip], bool]:
    """``specs`` rendered, from ``cache`` where a clip is there; whether any was missing."""
    loaded: dict[str, SongClip] = {}
    for spec in specs:
        with contextlib.suppress(OSError, ValueError, KeyError, zipfile.BadZipFile):
            loaded[spec.name] = load_song(cache / f"{spec.name}.npz")
    missing = [s for s in specs if s.name not in loaded]
    if missing:
        with contextlib.suppress(OSError):
            cache.mkdir(parents=True, exist_ok=True)
        for clip in generate_song_corpus(missing):
            loaded[clip.name] = clip
            with contextlib.suppress(OSError):  # read-only checkout: the cache is optional
                save_song(clip, cache / f"{clip.name}.npz")
    return [loaded[s.name] for s in specs], bool(missing)


def _default_song_corpus_cached() -> tuple[SongClip, ...]:
    cache = song_cache_dir()
    clips, rendered = cached_songs(song_specs(), cache)
    if rendered:
        _prune_stale_caches(cache)
    return tuple(clips)


def default_song_corpus() -> list[SongClip]:
    """The standard song test set (10 clips, ~2 min), loaded from the disk cache if present.

    Covers 44100 and 48000 Hz; music from -15 to +3 dB re the vocal; piano, electric piano,
    nylon and steel guitar, drawbar and church organ, strings, and the vocal-like "Choir
    Aahs", "Voice Oohs" and "Synth Voice" patches; drums on 6 clips, reverb (T60 0.3-0.8 s)
    on 6; 4-5 phrases per clip mixing spoken and sung ones; pauses from {300, 500, 700, 1000,
    1500} ms. Clips are immutable and shared between calls.
    """
    return list(_default_song_corpus_cached())


def write_song(
    clip: SongClip, path: str | os.PathLike[str], *, stem: str = "mix", subtype: str = "PCM_16"
) -> None:
    """Write ``clip.mix`` (or ``"vocal"`` / ``"accompaniment"``) with soundfile.

    The container follows the file extension; PCM subtypes clip at full scale (the mix peaks
    at most at :data:`MAX_PEAK`).
    """
    audio = {"mix": clip.mix, "vocal": clip.vocal, "accompaniment": clip.accompaniment}[stem]
    sf.write(os.fspath(path), audio, clip.sample_rate_hz, subtype=subtype)
