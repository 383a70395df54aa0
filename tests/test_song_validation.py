"""The held-out generated songs (tests/song_validation.py) share no language, chord
instrument or seed with the quality corpora, so a fit or tuning on them is judged on
settings it has not seen (issue 14's rule for anything learned)."""

from __future__ import annotations

import pytest

from scripts.voice_gru import TRAIN as GRU_TRAIN
from scripts.voice_net import TRAIN
from tests.hard_corpus import hard_song_specs
from tests.song_corpus import Recorded, language, song_specs
from tests.song_validation import HELD_OUT, WIDE_CHORDS, generated_specs, held_out_specs

pytestmark = pytest.mark.unit


def test_generated_songs_share_no_setting_with_the_quality_corpora() -> None:
    judged = hard_song_specs() + song_specs()
    assert {s.bass_program for s in judged} - {None} <= {32, 33}
    draws = [held_out_specs(d) for d in HELD_OUT]
    for held_out in (*draws, generated_specs(*TRAIN, WIDE_CHORDS),
                     generated_specs(*GRU_TRAIN, WIDE_CHORDS)):
        assert {language(s.voice) for s in held_out}.isdisjoint(
            {language(s.voice) for s in judged})
        assert {p for s in held_out for p in s.programs}.isdisjoint(
            {p for s in judged for p in s.programs})
        assert {s.bass_program for s in held_out} - {None} <= {34, 35, 36, 38}
        assert {s.seed for s in held_out}.isdisjoint({s.seed for s in judged})
    held_seeds = [{s.seed for s in draw} for draw in draws]
    assert sum(map(len, held_seeds)) == len(set().union(*held_seeds))  # no song twice
    for train in (TRAIN, GRU_TRAIN):
        assert set().union(*held_seeds).isdisjoint(
            {s.seed for s in generated_specs(*train, WIDE_CHORDS)})


def test_the_generator_is_deterministic_and_varied() -> None:
    a = generated_specs.__wrapped__("x", 12, 3, 100)
    assert a == generated_specs.__wrapped__("x", 12, 3, 100)
    assert a != generated_specs.__wrapped__("x", 12, 4, 100)
    assert len({s.voice for s in a}) > 6 and len({s.music_db for s in a}) == 12
    assert any(s.reverb_t60_s for s in a) and not all(s.reverb_t60_s for s in a)


def test_the_real_voices_share_nothing_with_what_they_judge_or_train() -> None:
    """tests/recorded_songs.py: the judged draw's speakers, instruments and seeds are
    not the training draw's, and neither shares a seed with the held-out draws or the
    generated training songs."""
    from tests import recorded_songs as rs

    assert not set(rs.JUDGE_SOURCES) & set(rs.TRAIN_SOURCES)
    assert not set(rs.JUDGE_CHORDS) & set(WIDE_CHORDS)

    def seeds(draw: tuple[str, int, int, int]) -> set[int]:
        return set(range(draw[3], draw[3] + draw[1]))

    taken = [seeds(HELD_OUT[d]) for d in HELD_OUT] + [seeds(TRAIN), seeds(GRU_TRAIN)]
    for draw in (rs.TRAIN, rs.JUDGE):
        assert all(seeds(draw).isdisjoint(other) for other in taken)
    assert seeds(rs.TRAIN).isdisjoint(seeds(rs.JUDGE))
    judged = rs.judge_specs()
    assert {s.seed for s in judged} == seeds(rs.JUDGE)
    phrases = [p for s in judged for p in s.phrases]
    assert all(isinstance(p, Recorded) for p in phrases)
    assert {p.name.split("@")[0] for p in phrases if isinstance(p, Recorded)} <= set(
        rs.JUDGE_SOURCES)
