"""Checks of the synthetic song corpus generator (real espeak-ng and fluidsynth, no mocks)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import struct
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.song_corpus import (
    GM_PROGRAMS,
    MAX_PEAK,
    SongClip,
    SongSpec,
    Sung,
    accompaniment_midi,
    default_song_corpus,
    load_song,
    make_song,
    render_midi_raw,
    reverb_ir,
    save_song,
    smf_bytes,
    song_cache_dir,
    song_specs,
)

pytestmark = pytest.mark.unit

SPEC_BY_NAME: dict[str, SongSpec] = {s.name: s for s in song_specs()}
PAUSE_CHOICES_MS = {300, 500, 700, 1000, 1500}
LEVEL_TOLERANCE_DB = 0.5
PAUSE_MUSIC_MIN_RE_SPEECH_DB = -6.0
"""Accompaniment RMS over a whole pause vs. over the vocal-active samples, dB."""
PAUSE_MUSIC_MIN_DBFS = -40.0
WINDOW_MS = 50
WINDOW_MIN_RE_SPEECH_DB = -20.0
"""No 50 ms window of a pause may have music this far below its vocal-active RMS."""


@pytest.fixture(scope="module")
def songs() -> list[SongClip]:
    return default_song_corpus()


def _rms(x: npt.NDArray[np.floating]) -> float:
    return math.sqrt(float(np.mean(np.square(x, dtype=np.float64))))


def _db(x: npt.NDArray[np.floating]) -> float:
    return 20.0 * math.log10(max(_rms(x), 1e-12))


def _over(clip: SongClip, audio: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    return np.concatenate([audio[s:e] for s, e in clip.speech])


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _assert_same(a: SongClip, b: SongClip) -> None:
    for field in dataclasses.fields(SongClip):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, field.name
            assert x.tobytes() == y.tobytes(), field.name
        else:
            assert x == y, field.name


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------


def test_corpus_covers_the_grid(songs: list[SongClip]) -> None:
    specs = song_specs()
    assert [c.name for c in songs] == [s.name for s in specs]
    assert len({c.name for c in songs}) == len(songs) >= 10
    assert {c.sample_rate_hz for c in songs} == {44100, 48000}
    levels = [c.music_db for c in songs]
    assert min(levels) == -15.0 and max(levels) == 3.0
    assert any(c.reverb for c in songs) and not all(c.reverb for c in songs)
    assert any(s.drums for s in specs) and not all(s.drums for s in specs)
    programs = {p for s in specs for p in s.programs}
    for needed in (0, 24, 48, 52, 53, 54):  # piano, guitar, strings, choir, oohs, synth voice
        assert needed in programs
    assert programs & {16, 19}  # an organ
    for spec in specs:
        kinds = {isinstance(p, Sung) for p in spec.phrases}
        assert kinds == {True, False}, f"{spec.name}: needs spoken and sung phrases"
        assert set(spec.pause_ms) <= PAUSE_CHOICES_MS
        assert spec.reverb_t60_s is None or 0.3 <= spec.reverb_t60_s <= 0.8
        assert set(spec.programs) | {spec.bass_program or 0} <= set(GM_PROGRAMS)
    assert {ms for s in specs for ms in s.pause_ms} == PAUSE_CHOICES_MS
    assert sum(len(c.pauses) for c in songs) >= 30


def test_shapes_and_metadata(songs: list[SongClip]) -> None:
    for clip in songs:
        spec = SPEC_BY_NAME[clip.name]
        assert clip.sample_rate_hz == spec.sample_rate_hz
        assert 8.0 <= clip.duration_s <= 15.0, clip.name
        for audio in (clip.mix, clip.vocal, clip.accompaniment):
            assert audio.dtype == np.float32
            assert audio.shape == (clip.frames, 2)
            assert not audio.flags.writeable
            assert np.all(np.isfinite(audio))
        assert float(np.max(np.abs(clip.mix))) <= MAX_PEAK + 1e-6
        assert clip.patch == spec.patch
        assert ("Standard Drums" in clip.patch) == spec.drums
        assert clip.reverb == (spec.reverb_t60_s is not None)
        assert len(clip.phrases) == len(spec.phrases)
        assert len(clip.pauses) == len(clip.pauses_tail_ms) == len(spec.pause_ms)


def test_mix_is_exactly_vocal_plus_accompaniment(songs: list[SongClip]) -> None:
    for clip in songs:
        assert np.array_equal(clip.mix, clip.vocal + clip.accompaniment), clip.name


def test_vocal_is_centred_and_accompaniment_is_stereo(songs: list[SongClip]) -> None:
    for clip in songs:
        assert np.array_equal(clip.vocal[:, 0], clip.vocal[:, 1]), clip.name
        left, right = clip.accompaniment[:, 0], clip.accompaniment[:, 1]
        assert not np.array_equal(left, right), clip.name
        # Panned parts and fluidsynth's reverb/chorus decorrelate the channels somewhat.
        corr = float(np.corrcoef(left, right)[0, 1])
        assert corr < 0.99, (clip.name, corr)


def test_music_level_matches_target(songs: list[SongClip]) -> None:
    for clip in songs:
        measured = _db(_over(clip, clip.accompaniment)) - _db(_over(clip, clip.vocal))
        assert abs(measured - clip.music_db) <= LEVEL_TOLERANCE_DB, (clip.name, measured)


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


def test_intervals_are_sorted_disjoint_and_in_range(songs: list[SongClip]) -> None:
    for clip in songs:
        for ivs in (clip.speech, clip.pauses, clip.phrases):
            assert all(0 <= s < e <= clip.frames for s, e in ivs), clip.name
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(ivs)), clip.name
        for pause in clip.pauses:
            assert not any(_overlaps(pause, sp) for sp in clip.speech), (clip.name, pause)
        for sp in clip.speech:
            assert any(p[0] <= sp[0] and sp[1] <= p[1] for p in clip.phrases), (clip.name, sp)
        # Consecutive phrases are separated exactly by their pause (up to rate mapping).
        for k, (start, end) in enumerate(clip.pauses):
            assert abs(start - clip.phrases[k][1]) <= 1 and abs(end - clip.phrases[k + 1][0]) <= 1


def test_pause_lengths_match_spec(songs: list[SongClip]) -> None:
    for clip in songs:
        spec = SPEC_BY_NAME[clip.name]
        for (start, end), ms in zip(clip.pauses, spec.pause_ms, strict=True):
            assert abs((end - start) * 1000 / clip.sample_rate_hz - ms) <= 1.0, (clip.name, ms)


def test_music_plays_through_every_pause(songs: list[SongClip]) -> None:
    """The accompaniment has no rest in a vocal pause: it stays near its vocal-time level."""
    for clip in songs:
        music_ref_db = _db(_over(clip, clip.accompaniment))
        win = clip.sample_rate_hz * WINDOW_MS // 1000
        for start, end in clip.pauses:
            pause_db = _db(clip.accompaniment[start:end])
            assert pause_db >= PAUSE_MUSIC_MIN_DBFS, (clip.name, start, pause_db)
            assert pause_db - music_ref_db >= PAUSE_MUSIC_MIN_RE_SPEECH_DB, (clip.name, start)
            for w in range(start, end - win + 1, win):
                rel = _db(clip.accompaniment[w : w + win]) - music_ref_db
                assert rel >= WINDOW_MIN_RE_SPEECH_DB, (clip.name, w, rel)


def test_vocal_is_silent_in_pauses_after_the_reverb_tail(songs: list[SongClip]) -> None:
    """Past ``pauses_tail_ms`` every 10 ms frame of the vocal is <= -30 dB re the phrase peak."""
    for clip in songs:
        vocal = clip.vocal[:, 0].astype(np.float64)
        if not clip.reverb:
            assert clip.pauses_tail_ms == (0,) * len(clip.pauses)
        assert clip.clear_pauses == tuple(
            (min(e, s + round(t * clip.sample_rate_hz / 1000)), e)
            for (s, e), t in zip(clip.pauses, clip.pauses_tail_ms, strict=True)
        )
        hop = clip.sample_rate_hz // 100
        for (p0, p1), (c0, c1) in zip(clip.phrases, clip.clear_pauses, strict=False):
            peak = max(_rms(vocal[i : i + hop]) for i in range(p0, p1 - hop, hop))
            rest = vocal[c0:c1]
            frames = rest[: rest.size // hop * hop].reshape(-1, hop)
            worst = max((_rms(f) for f in frames), default=0.0)
            assert worst <= peak * 10 ** (-30 / 20) * 1.01, (clip.name, c0)
            if not clip.reverb:
                # Only the -50 dB trim margin and soxr's ripple reach into a dry pause.
                assert _rms(rest) <= peak * 10 ** (-55 / 20), (clip.name, c0)


def test_some_reverb_tails_reach_into_pauses(songs: list[SongClip]) -> None:
    tails = [t for c in songs if c.reverb for t in c.pauses_tail_ms]
    assert max(tails) >= 100
    assert all(t >= 0 for t in tails)


# --------------------------------------------------------------------------------------------
# Determinism, cache, persistence
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["choir_reverb_48k", "oohs_piano_drums_44k"])
def test_rendering_is_deterministic(songs: list[SongClip], name: str) -> None:
    cached = next(c for c in songs if c.name == name)
    spec = SPEC_BY_NAME[name]
    first = make_song(spec)
    _assert_same(first, cached)
    _assert_same(make_song(spec), first)


def test_fluidsynth_renders_byte_identical_files(tmp_path: Path) -> None:
    midi = accompaniment_midi(
        programs=(0, 52),
        bass_program=32,
        drums=True,
        progression="minor",
        key=3,
        tempo_bpm=110,
        bars=2,
        seed=7,
    )
    a, b = tmp_path / "a.f32", tmp_path / "b.f32"
    render_midi_raw(midi, a, sample_rate_hz=44100)
    time.sleep(1.1)  # a wall-clock stamp in the output would now differ
    render_midi_raw(midi, b, sample_rate_hz=44100)
    assert a.stat().st_size > 44100 * 2 * 4  # > 1 s of float stereo
    assert a.read_bytes() == b.read_bytes()


def test_default_corpus_is_cached_and_shared(songs: list[SongClip]) -> None:
    cache = song_cache_dir()
    assert cache.name.startswith("songs-")
    assert {p.stem for p in cache.glob("*.npz")} >= set(SPEC_BY_NAME)
    again = default_song_corpus()
    assert all(a is b for a, b in zip(again, songs, strict=True))


def test_save_load_roundtrip(songs: list[SongClip], tmp_path: Path) -> None:
    clip = next(c for c in songs if c.reverb)
    path = tmp_path / "clip.npz"
    save_song(clip, path)
    _assert_same(load_song(path), clip)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def test_smf_bytes_layout_and_event_order() -> None:
    events = [
        (960, b"\x90\x3c\x64"),  # note-on given before the note-off at the same tick
        (0, b"\x90\x3c\x64"),
        (960, b"\x80\x3c\x40"),
        (200_000, b"\x80\x3c\x40"),
        (0, b"\xc0\x00"),
    ]
    data = smf_bytes(events, ticks_per_quarter=480)
    assert data[:14] == b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480)
    assert data[14:18] == b"MTrk"
    (length,) = struct.unpack(">I", data[18:22])
    track = data[22:]
    assert len(track) == length
    assert track == (
        b"\x00\xc0\x00"  # program change sorts before a note-on at the same tick
        b"\x00\x90\x3c\x64"
        b"\x87\x40\x80\x3c\x40"  # 960 = 0x3C0 -> VLQ 87 40; the off precedes the on
        b"\x00\x90\x3c\x64"
        b"\x8c\x93\x00\x80\x3c\x40"  # 199040 = 12*128**2 + 19*128 -> VLQ 8C 93 00
        b"\x00\xff\x2f\x00"
    )


def test_accompaniment_midi_is_deterministic_and_seeded() -> None:
    kwargs: dict[str, object] = {
        "programs": (24, 48),
        "bass_program": 33,
        "drums": True,
        "progression": "ballad",
        "key": 5,
        "tempo_bpm": 90.0,
        "bars": 4,
    }
    a = accompaniment_midi(seed=1, **kwargs)  # type: ignore[arg-type]
    assert a == accompaniment_midi(seed=1, **kwargs)  # type: ignore[arg-type]
    assert a != accompaniment_midi(seed=2, **kwargs)  # type: ignore[arg-type]
    assert b"\xc0\x18" in a and b"\xc1\x30" in a and b"\xc2\x21" in a  # program changes
    assert b"\x99\x24" in a  # a kick on channel 10


def test_reverb_ir_is_deterministic_unit_energy_and_decays() -> None:
    h = reverb_ir(0.5, 48000, seed=3)
    assert np.array_equal(h, reverb_ir(0.5, 48000, seed=3))
    assert not np.array_equal(h, reverb_ir(0.5, 48000, seed=4))
    assert math.isclose(float(np.sum(h * h)), 1.0, rel_tol=1e-9)
    body = h[np.flatnonzero(h)[0] :]
    quarter = body.size // 4
    first, last = _rms(body[:quarter]), _rms(body[-quarter:])
    assert 20 * math.log10(first / last) > 30  # 45 dB nominal over the last 3/4 of T60


def test_every_sung_note_of_every_corpus_is_a_sustained_note() -> None:
    """espeak-ng sings a phoneme its language's table lacks (``A`` in fr, es, it, pl,
    ...) as 0.15 s of near-silence; such "phrases" in three hard rows measured the
    generator, not the detector (docs/QUALITY.md, "Hard conditions"). Every (voice, syllable,
    pitch) any corpus uses renders as a note of at least SUNG_NOTE_MIN_S at -30 dB RMS
    or louder, and the renderer refuses one that does not."""
    from scripts.voice_gru import TRAIN
    from tests.hard_corpus import hard_song_specs
    from tests.song_corpus import ESPEAK_RATE_HZ, SUNG_NOTE_MIN_S, _render_phrase
    from tests.song_validation import HELD_OUT, WIDE_CHORDS, generated_specs, held_out_specs

    notes = {(s.voice, s.sung_wpm, syllable, pitch)
             for specs in (song_specs(), hard_song_specs(),
                           *(held_out_specs(d) for d in HELD_OUT),
                           generated_specs(*TRAIN, WIDE_CHORDS))
             for s in specs for ph in s.phrases if isinstance(ph, Sung)
             for syllable, pitch in ph.notes}
    assert any(v.startswith("it+") for v, *_ in notes)  # a language without ``A``
    base, short = next(iter(SPEC_BY_NAME.values())), []
    for voice, wpm, syllable, pitch in sorted(notes):
        # Through the renderer the corpora use, which refuses a note too short itself.
        audio = _render_phrase(Sung(notes=((syllable, pitch),)),
                               dataclasses.replace(base, voice=voice, sung_wpm=wpm))
        if audio.shape[0] < SUNG_NOTE_MIN_S * ESPEAK_RATE_HZ or _rms(audio) < 10 ** (-30 / 20):
            short.append((voice, syllable, audio.shape[0] / ESPEAK_RATE_HZ))
    assert not short
    spec = dataclasses.replace(base, voice="it+f4")
    with pytest.raises(RuntimeError, match="not a sustained note"):
        _render_phrase(Sung(notes=(("[[t]]", 50),)), spec)  # a stop: no vowel to hold
