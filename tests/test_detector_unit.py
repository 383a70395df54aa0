"""The pause detector as a pure fold over synthetic features."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seamcut.server.config import CutPolicy, DetectorConfig
from seamcut.server.dsp.detector import (
    BlockInput,
    CutDecision,
    DetectorParams,
    DetectorState,
    SpeechSegment,
    detect_finish,
    detect_step,
)
from seamcut.server.events import CutKind

pytestmark = pytest.mark.unit
RATE = 16000


def features(pattern: list[tuple[bool, int]], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-hop (prob, energy) for runs of (is_speech, hops)."""
    rng = np.random.default_rng(seed)
    probs, energy = [], []
    for speech, n in pattern:
        probs.append(np.full(n, 0.95 if speech else 0.02, np.float32))
        energy.append((-20 if speech else -70) + rng.normal(0, 2, n).astype(np.float32))
    return np.concatenate(probs), np.concatenate(energy).astype(np.float32)


def run(probs: np.ndarray, energy: np.ndarray, params: DetectorParams,
        split: list[int]) -> tuple[list[CutDecision | SpeechSegment], list[tuple[int, int]]]:
    """Feed hops in blocks of the given sizes; return events and (final, emitted) pairs."""
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(len(probs) * 160) * 0.01).astype(np.float32)
    state, events, pos, i = DetectorState(), [], 0, 0
    checks = []
    while pos < len(probs):
        n = min(split[i % len(split)], len(probs) - pos)
        before = state.final_client
        state, evs = detect_step(state, params, BlockInput(
            start_hop=pos, probs=probs[pos:pos + n], energy_db=energy[pos:pos + n],
            client_start=pos * 160, client=audio[pos * 160:(pos + n) * 160]))
        checks += [(before, e.sample) for e in evs if isinstance(e, CutDecision)]
        assert state.final_client >= before, "watermark went backwards"
        events += evs
        pos += n
        i += 1
    state, tail = detect_finish(state, params, len(probs) * 160)
    return events + tail, checks


PARAMS = DetectorParams.build(CutPolicy(), DetectorConfig(), RATE)
# SPEECH mode for a speaker over background talkers: the foreground level cap is on
FG_PARAMS = DetectorParams.build(CutPolicy(background_voices=True), DetectorConfig(), RATE)
PATTERN = [(False, 50), (True, 180), (False, 60), (True, 150), (False, 35), (True, 200),
           (False, 120), (True, 90), (False, 20), (True, 300), (False, 80)]


def test_cuts_land_in_pauses_of_at_least_min_pause() -> None:
    probs, energy = features(PATTERN)
    events, _ = run(probs, energy, PARAMS, [32])
    cuts = [e for e in events if isinstance(e, CutDecision)]
    pause_cuts = [c.sample // 160 for c in cuts if c.kind is CutKind.PAUSE]
    # Silences >= 30 hops after speech: hops 230-290, 440-475, 675-795 and the trailing
    # 1205-1285 (longer than pause_search, so decided); 885-905 is too short.
    assert len(pause_cuts) == 4
    for hop, (lo, hi) in zip(pause_cuts, [(230, 290), (440, 475), (675, 795), (1205, 1285)],
                             strict=True):
        assert lo < hop < hi
    assert cuts[-1].kind is CutKind.END and cuts[-1].sample == len(probs) * 160


@settings(max_examples=60, deadline=None)
@given(split=st.lists(st.integers(1, 200), min_size=1, max_size=8),
       seed=st.integers(0, 1000),
       policy=st.sampled_from([CutPolicy(), CutPolicy(min_gap_ms=1500),
                               CutPolicy(max_segment_ms=3000, min_segment_ms=500),
                               CutPolicy(min_pause_ms=150, pause_search_ms=400),
                               CutPolicy(background_voices=True)]))
def test_block_boundaries_never_change_decisions(split: list[int], seed: int,
                                                 policy: CutPolicy) -> None:
    rng = np.random.default_rng(seed)
    pattern = [(bool(i % 2), int(rng.integers(5, 150))) for i in range(14)]
    probs, energy = features(pattern, seed)
    params = DetectorParams.build(policy, DetectorConfig(), RATE)
    whole, _ = run(probs, energy, params, [len(probs)])
    parts, checks = run(probs, energy, params, split)
    assert parts == whole
    # Finality: no cut ever lands before the watermark published before it.
    assert all(sample >= before for before, sample in checks)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000))
def test_segment_limits_hold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pattern = [(bool(i % 2), int(rng.integers(5, 400))) for i in range(16)]
    probs, energy = features(pattern, seed)
    params = DetectorParams.build(CutPolicy(min_segment_ms=800, max_segment_ms=2500),
                                  DetectorConfig(), RATE)
    events, _ = run(probs, energy, params, [32])
    cuts = [0] + [e.sample for e in events if isinstance(e, CutDecision)]
    gaps = np.diff(cuts)
    assert (gaps[:-1] >= 800 * 16 - 2 * params.snap_radius).all()  # END may be closer
    assert (gaps <= 2500 * 16 + params.snap_radius).all()


def test_forced_cut_in_endless_speech() -> None:
    probs, energy = features([(True, 1000)])
    params = DetectorParams.build(CutPolicy(max_segment_ms=3000), DetectorConfig(), RATE)
    events, _ = run(probs, energy, params, [32])
    kinds = [e.kind for e in events if isinstance(e, CutDecision)]
    assert kinds.count(CutKind.FORCED) == 3 and kinds[-1] is CutKind.END


def test_nms_keeps_the_better_of_two_close_pauses() -> None:
    pattern = [(True, 100), (False, 32), (True, 40), (False, 90), (True, 200)]
    probs, energy = features(pattern)
    params = DetectorParams.build(CutPolicy(min_gap_ms=1500, min_segment_ms=0),
                                  DetectorConfig(), RATE)
    events, _ = run(probs, energy, params, [32])
    pause = [e.sample // 160 for e in events if isinstance(e, CutDecision)
             and e.kind is CutKind.PAUSE]
    assert len(pause) == 1 and 172 < pause[0] < 262  # the longer second pause wins


def test_vad_segments_cover_phrases() -> None:
    probs, energy = features(PATTERN)
    events, _ = run(probs, energy, PARAMS, [32])
    segs = [(e.start // 160, e.end // 160) for e in events if isinstance(e, SpeechSegment)]
    assert segs == [(50, 230), (290, 440), (475, 675), (795, 1205)]
    # With background voices, an onset after a long pause comes one hop late: the
    # foreground level's 80 ms window still holds the pause's hops (the first onset has
    # no level to compare yet).
    events, _ = run(probs, energy, FG_PARAMS, [32])
    segs = [(e.start // 160, e.end // 160) for e in events if isinstance(e, SpeechSegment)]
    assert segs == [(50, 230), (291, 440), (475, 675), (796, 1205)]
    off = DetectorParams.build(CutPolicy(background_voices=True),
                               DetectorConfig(foreground_valley_db=0), RATE)
    events, _ = run(probs, energy, off, [32])
    segs = [(e.start // 160, e.end // 160) for e in events if isinstance(e, SpeechSegment)]
    assert segs == [(50, 230), (290, 440), (475, 675), (795, 1205)]


def test_rejects_non_contiguous_blocks() -> None:
    probs, energy = features([(True, 10)])
    with pytest.raises(ValueError, match="expected 0"):
        detect_step(DetectorState(), PARAMS, BlockInput(
            start_hop=5, probs=probs, energy_db=energy, client_start=0,
            client=np.zeros(1600, np.float32)))


SONG_PARAMS = DetectorParams.build(CutPolicy(), DetectorConfig(), RATE, separated=True)


def test_mix_vote_keeps_each_sources_hysteresis() -> None:
    p = SONG_PARAMS
    assert p.neg_threshold < p.mix_neg_threshold < p.threshold
    grid = np.linspace(0, 1, 201)
    votes = [p.mix_vote(float(x)) for x in grid]
    assert all(b >= a for a, b in itertools.pairwise(votes))  # monotone
    assert p.mix_vote(p.mix_neg_threshold) == pytest.approx(p.neg_threshold)
    assert p.mix_vote(p.threshold) == pytest.approx(p.threshold)
    assert p.mix_vote(0.9) == 0.9 and p.mix_vote(0.0) == 0.0
    # Below the mix's own edge the vote is below the vocal's edge, and only there.
    for x, v in zip(grid, votes, strict=True):
        assert (v < p.neg_threshold) == (x < p.mix_neg_threshold)


def song_pause_cuts(probs_mix: np.ndarray) -> list[int]:
    """Vocal says pause after hop 100 and speech again at hop 140; the mix votes as given."""
    n = 250
    probs = np.full(n, 0.9, np.float32)
    probs[100:140] = 0.05
    energy = np.full(n, -20.0, np.float32)  # vocal stays near its speech level: gate open
    audio = np.zeros(n * 160, np.float32)
    _, events = detect_step(DetectorState(), SONG_PARAMS, BlockInput(
        start_hop=0, probs=probs, probs_mix=probs_mix.astype(np.float32), energy_db=energy,
        client_start=0, client=audio))
    return [e.sample // 160 for e in events if isinstance(e, CutDecision)]


def test_mix_vote_below_its_own_edge_lets_the_pause_through() -> None:
    mix = np.full(250, 0.9, np.float32)
    # Between the separated edge (0.2) and the mix's edge (0.35): the mix says silence.
    mix[100:140] = 0.3
    assert len(song_pause_cuts(mix)) == 1
    # Above the mix's edge: the mix still hears speech, so there is no pause.
    mix[100:140] = 0.4
    assert song_pause_cuts(mix) == []


def test_foreground_valleys_cut_where_background_talk_keeps_silero_on() -> None:
    """Under background talkers Silero says speech through the foreground speaker's
    pauses; their level drops 15 dB. With ``background_voices`` those pauses are cut, at
    the same samples for any slicing; without it (the default), or with the valley off,
    none is."""
    rng = np.random.default_rng(7)
    pattern = [(True, 150), (False, 70), (True, 200), (False, 90), (True, 160)]
    energy = np.concatenate([(-20 if speech else -35) + rng.normal(0, 3, n)
                             for speech, n in pattern]).astype(np.float32)
    probs = np.full(energy.shape, 0.99, np.float32)
    events, _ = run(probs, energy, FG_PARAMS, [37])
    cuts = [e.sample // 160 for e in events if isinstance(e, CutDecision)
            and e.kind is CutKind.PAUSE]
    assert len(cuts) == 2 and 150 < cuts[0] < 220 and 420 < cuts[1] < 510
    for split in ([1], [5, 64], [300]):
        assert run(probs, energy, FG_PARAMS, split)[0] == events
    off = DetectorParams.build(CutPolicy(background_voices=True),
                               DetectorConfig(foreground_valley_db=0), RATE)
    for params in (off, PARAMS):
        assert not [e for e in run(probs, energy, params, [37])[0]
                    if isinstance(e, CutDecision) and e.kind is CutKind.PAUSE]


def test_foreground_valleys_take_blocks_without_hops() -> None:
    probs, energy = features(PATTERN)
    audio = np.zeros(len(probs) * 160, np.float32)
    state = DetectorState()
    for lo, hi in ((0, 100), (100, 100), (100, len(probs))):
        state, _ = detect_step(state, FG_PARAMS, BlockInput(
            start_hop=lo, probs=probs[lo:hi], energy_db=energy[lo:hi],
            client_start=lo * 160, client=audio[lo * 160:hi * 160]))
    assert state.next_hop == len(probs)
