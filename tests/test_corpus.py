"""Checks of the synthetic speech corpus generator itself (real espeak-ng, no mocks)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from tests.corpus import (
    ESPEAK_RATE_HZ,
    ClipSpec,
    SpeechClip,
    corpus_cache_dir,
    default_corpus,
    default_specs,
    load_clip,
    make_clip,
    save_clip,
    speech_intervals,
    synth_phrase,
    write_wav,
)

SPEC_BY_NAME: dict[str, ClipSpec] = {s.name: s for s in default_specs()}
PAUSE_CHOICES_MS = {300, 500, 650, 800, 1000, 1500}
CUT_PAUSE_MS = 500


@pytest.fixture(scope="module")
def corpus() -> list[SpeechClip]:
    return default_corpus()


def _rms(x: npt.NDArray[np.floating]) -> float:
    return math.sqrt(float(np.mean(np.square(x, dtype=np.float64))))


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _speech_samples(
    clip: SpeechClip, channel_audio: npt.NDArray[np.floating]
) -> npt.NDArray[np.floating]:
    return np.concatenate([channel_audio[s:e] for s, e in clip.speech])


def _same_ground_truth(a: SpeechClip, b: SpeechClip) -> bool:
    fields = [f.name for f in dataclasses.fields(SpeechClip) if f.name != "audio"]
    return all(getattr(a, f) == getattr(b, f) for f in fields)


@pytest.mark.unit
def test_synth_phrase_is_trimmed_mono_native_rate() -> None:
    audio, rate = synth_phrase("Hello there, how are you?", voice="en-us+f3", speed_wpm=170)
    assert rate == ESPEAK_RATE_HZ
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert audio.size > rate // 2
    keep = round(rate * 0.005)
    threshold = float(np.abs(audio).max()) * 10 ** (-50 / 20)
    loud = np.flatnonzero(np.abs(audio) >= threshold)
    assert loud[0] <= keep
    assert loud[-1] >= audio.size - 1 - keep


@pytest.mark.unit
def test_synth_phrase_is_deterministic() -> None:
    a, _ = synth_phrase("Guten Morgen, liebe Nachbarn.", voice="de+f2", speed_wpm=150, pitch=60)
    b, _ = synth_phrase("Guten Morgen, liebe Nachbarn.", voice="de+f2", speed_wpm=150, pitch=60)
    assert np.array_equal(a, b)


@pytest.mark.unit
def test_make_clip_is_deterministic() -> None:
    for name in ("en_gb_f3_snr20", "de_m3_clean"):
        first, second = SPEC_BY_NAME[name].render(), SPEC_BY_NAME[name].render()
        assert np.array_equal(first.audio, second.audio)
        assert _same_ground_truth(first, second)


@pytest.mark.unit
def test_cached_corpus_matches_fresh_render(corpus: list[SpeechClip]) -> None:
    assert [c.name for c in corpus] == list(SPEC_BY_NAME)
    for clip in corpus:
        fresh = SPEC_BY_NAME[clip.name].render()
        assert np.array_equal(clip.audio, fresh.audio), clip.name
        assert _same_ground_truth(clip, fresh), clip.name
    assert corpus_cache_dir().name.startswith("corpus-")


@pytest.mark.unit
def test_corpus_composition(corpus: list[SpeechClip]) -> None:
    specs = default_specs()
    assert len(corpus) >= 8
    assert len({s.language for s in specs}) >= 5
    assert {s.sample_rate_hz for s in specs} == {16000, 22050, 44100, 48000}
    assert {s.channels for s in specs} == {1, 2}
    assert sum(s.snr_db is not None for s in specs) * 2 == len(specs)
    assert {s.snr_db for s in specs} == {None, 10.0, 20.0}
    assert any("+f" in s.voice for s in specs)
    assert any("+m" in s.voice for s in specs)
    assert sum(c.duration_s for c in corpus) < 180
    for spec in specs:
        assert 140 <= spec.speed_wpm <= 200, spec.name
        assert 4 <= len(spec.phrases) <= 7, spec.name
        assert all(3 <= len(p.split()) <= 8 for p in spec.phrases), spec.name
        assert set(spec.pause_ms) <= PAUSE_CHOICES_MS, spec.name
        assert min(spec.pause_ms) < CUT_PAUSE_MS <= max(spec.pause_ms), spec.name
    assert len({c.name for c in corpus}) == len(corpus)


@pytest.mark.unit
def test_rate_channels_and_range(corpus: list[SpeechClip]) -> None:
    for clip in corpus:
        spec = SPEC_BY_NAME[clip.name]
        assert clip.sample_rate_hz == spec.sample_rate_hz
        assert clip.audio.dtype == np.float32
        assert clip.audio.ndim == 2
        assert clip.channels == spec.channels
        assert clip.snr_db == spec.snr_db
        assert clip.language == spec.language
        assert clip.voice == spec.voice
        assert np.all(np.isfinite(clip.audio))
        assert float(np.abs(clip.audio).max()) <= 1.0
        assert not clip.audio.flags.writeable


@pytest.mark.unit
def test_pauses_lie_outside_speech(corpus: list[SpeechClip]) -> None:
    for clip in corpus:
        for pause in clip.pauses:
            for speech in clip.speech:
                assert not _overlaps(pause, speech), (clip.name, pause, speech)


@pytest.mark.unit
def test_pause_lengths_match_request(corpus: list[SpeechClip]) -> None:
    for clip in corpus:
        spec = SPEC_BY_NAME[clip.name]
        assert len(clip.pauses) == len(spec.pause_ms)
        for (start, end), want_ms in zip(clip.pauses, spec.pause_ms, strict=True):
            got_ms = (end - start) * 1000 / clip.sample_rate_hz
            assert abs(got_ms - want_ms) <= 1.0, (clip.name, got_ms, want_ms)


@pytest.mark.unit
def test_speech_intervals_are_inside_phrases(corpus: list[SpeechClip]) -> None:
    for clip in corpus:
        spec = SPEC_BY_NAME[clip.name]
        rate = clip.sample_rate_hz
        assert len(clip.phrases) == len(spec.phrases)
        assert clip.speech
        assert all(s < e for s, e in clip.speech)
        assert all(e0 < s1 for (_, e0), (s1, _) in itertools.pairwise(clip.speech))
        for k, pause in enumerate(clip.pauses):
            assert clip.phrases[k][1] == pause[0]
            assert clip.phrases[k + 1][0] == pause[1]
        assert abs(clip.phrases[0][0] - 0.3 * rate) <= 2
        assert abs(clip.frames - clip.phrases[-1][1] - 0.4 * rate) <= 2
        owner = [
            [k for k, ph in enumerate(clip.phrases) if ph[0] <= s and e <= ph[1]]
            for s, e in clip.speech
        ]
        assert all(len(o) == 1 for o in owner), clip.name
        assert {o[0] for o in owner} == set(range(len(clip.phrases))), clip.name


@pytest.mark.unit
def test_ground_truth_matches_clean_audio(corpus: list[SpeechClip]) -> None:
    for clip in corpus:
        if clip.snr_db is not None:
            continue
        peak = float(np.abs(clip.audio).max())
        for s, e in clip.pauses:
            # soxr's ringing off a -50 dB phrase edge stays far below -40 dB re peak.
            assert float(np.abs(clip.audio[s:e]).max()) < peak * 0.01, clip.name
        for s, e in clip.speech:
            assert float(np.abs(clip.audio[s:e, 0]).max()) > peak * 10 ** (-45 / 20), clip.name


@pytest.mark.unit
def test_noise_snr_matches_target(corpus: list[SpeechClip]) -> None:
    noisy = [c for c in corpus if c.snr_db is not None]
    assert noisy
    for clip in noisy:
        assert clip.snr_db is not None
        clean = dataclasses.replace(SPEC_BY_NAME[clip.name], snr_db=None).render()
        assert clean.speech == clip.speech
        for ch in range(clip.channels):
            noise = clip.audio[:, ch].astype(np.float64) - clean.audio[:, ch]
            signal = _speech_samples(clip, clean.audio[:, ch])
            snr = 20 * math.log10(_rms(signal) / _rms(noise))
            assert abs(snr - clip.snr_db) <= 1.0, (clip.name, ch, snr)
            # The noise is stationary: what a splitter sees in the pauses is the same level.
            in_pauses = np.concatenate([noise[s:e] for s, e in clip.pauses])
            assert abs(20 * math.log10(_rms(in_pauses) / _rms(noise))) <= 1.0, clip.name


@pytest.mark.unit
def test_stereo_channels_differ_but_correlate(corpus: list[SpeechClip]) -> None:
    for clip in corpus:
        if clip.channels != 2:
            continue
        left, right = clip.audio[:, 0], clip.audio[:, 1]
        assert not np.array_equal(left, right)
        assert float(np.corrcoef(left, right)[0, 1]) > 0.9, clip.name


@pytest.mark.unit
def test_speech_intervals_merge_and_dilate() -> None:
    rate = 1000
    x = np.zeros(1000)
    x[100:200] = 1.0
    x[220:300] = 1.0  # 20 ms gap: merged
    x[400:500] = 1.0  # 100 ms gap: separate
    x[700:710] = 10 ** (-50 / 20)  # below -45 dB: not speech
    assert speech_intervals(x, rate) == ((90, 310), (390, 510))
    assert speech_intervals(np.zeros(50), rate) == ()


@pytest.mark.unit
def test_make_clip_per_phrase_voices_and_rounding() -> None:
    clip = make_clip(
        "mix",
        ["Good morning everyone.", "Welcome to the show."],
        [650],
        voice=["en-us+m3", "en-gb+f3"],
        language="en",
        sample_rate_hz=44100,
        channels=2,
        snr_db=None,
    )
    assert clip.voice == "en-us+m3,en-gb+f3"
    ((start, end),) = clip.pauses
    assert abs((end - start) / 44100 - 0.65) <= 0.001
    assert np.allclose(clip.audio[:, 1], 0.9 * clip.audio[:, 0], rtol=0, atol=1e-7)


@pytest.mark.unit
def test_make_clip_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pauses"):
        make_clip("x", ["One two three.", "Four five six."], [], voice="en", language="en")
    with pytest.raises(ValueError, match="variant"):
        make_clip("x", ["One two three."], [], voice="en+nosuchvariant", language="en")


@pytest.mark.unit
def test_save_load_and_write_wav_roundtrip(tmp_path: Path, corpus: list[SpeechClip]) -> None:
    clip = next(c for c in corpus if c.channels == 2 and c.snr_db is not None)
    save_clip(clip, tmp_path / "clip.npz")
    loaded = load_clip(tmp_path / "clip.npz")
    assert np.array_equal(loaded.audio, clip.audio)
    assert _same_ground_truth(loaded, clip)

    write_wav(clip, tmp_path / "clip.wav")
    data, rate = sf.read(tmp_path / "clip.wav", dtype="float32", always_2d=True)
    assert rate == clip.sample_rate_hz
    assert data.shape == clip.audio.shape
    assert float(np.abs(data - clip.audio).max()) <= 1 / 32768 + 1e-6
