"""Cut quality on real speakers (tests/recorded_songs.py's judged draw: 40 songs of CMU
and LibriVox speakers over the corpora's own instruments, none of them in the voice
detector's training): guards against regression.

Bounds are what seamcut measured on 2026-12-06 (docs/QUALITY.md, "Real voices"): at
most that many cuts where the dry voice sounds, at least that many pauses >= 0.5 s cut
(128 in all). As the detector improves they are raised, never lowered.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from seamcut.server.config import Mode, load_config
from seamcut.server.engine.client import InprocEngine

from scripts.eval_hard import POLICY, Clip, score, seamcut_cuts, song_clip

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def songs() -> list[Clip]:
    from tests.recorded_songs import judge_songs

    return [song_clip(c) for c in judge_songs()]


@pytest.fixture(scope="module")
def engine() -> Iterator[InprocEngine]:
    eng = InprocEngine(load_config(env=POLICY))
    yield eng
    asyncio.run(eng.close())


def total(engine: InprocEngine, clips: list[Clip], mode: Mode | None = None,
          **policy: object) -> tuple[int, int, int]:
    cfg = load_config(env=POLICY)
    sums = [0, 0, 0]
    for clip in clips:
        one = dataclasses.replace(clip, policy=tuple(policy.items()))
        for i, v in enumerate(score(one, seamcut_cuts(cfg, engine, one, False, mode))):
            sums[i] += v
    return sums[0], sums[1], sums[2]


def test_speech_mode_keeps_a_real_speaker_whole(songs: list[Clip],
                                                engine: InprocEngine) -> None:
    """The dry voices alone in SPEECH mode: never inside an utterance, every pause. With
    ``background_voices`` the level cap cuts into their quiet passages (why it is not
    the default), so this fails if the default turns it on again."""
    dry = [dataclasses.replace(c, mix=c.vocal, mode=Mode.SPEECH) for c in songs]
    assert total(engine, dry) == (0, 128, 128)
    words, _, _ = total(engine, dry, background_voices=True)
    assert words >= 40, words


def test_song_mode_on_real_speakers_under_music(songs: list[Clip],
                                                engine: InprocEngine) -> None:
    """SONG mode with the built-in separator, and never worse than SPEECH mode on the
    same mixes, on either count."""
    song = total(engine, songs)
    speech = total(engine, songs, Mode.SPEECH)
    assert song[0] <= 15 and song[1] >= 126, song
    assert speech[0] <= 16 and speech[1] >= 123, speech
    assert song[0] <= speech[0] and song[1] >= speech[1], (song, speech)
