"""The online pause detector and cut policy: one state machine for streaming and offline.

Works on 10 ms hops of the 16 kHz analysis grid. Per hop it gets the Silero speech
probability and the band energy; it tracks speech/silence with hysteresis, turns a
silence of at least ``min_pause`` after speech into a pause, places the cut at the
quietest point of the pause (centre of the hops within ``tolerance_db`` of the minimum),
applies the policy (NMS over ``min_gap``, merge below ``min_segment``, FORCED cut at the
quietest point before a segment exceeds ``max_segment``) and snaps the cut to a zero
crossing of the original mix in the client's sample rate.

Every decision is final after a bounded delay: a pause is decided when speech resumes
or after ``search`` hops of silence, whichever comes first, so the look-ahead does not
depend on how long a pause lasts. ``DetectorState.final_client`` is an exact watermark:
no later cut can land before it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from seamcut.server.config import ANALYSIS_RATE_HZ, HOP_SAMPLES, CutPolicy, DetectorConfig
from seamcut.server.dsp.refine import snap_to_zero_crossing
from seamcut.server.events import CutKind

FORCED_PROB_WEIGHT_DB = 40.0  # in a forced cut's cost, speech probability 1 costs 40 dB
SPEECH_LEVEL_UNKNOWN = -1000.0
MIX_GATE_DB = 20.0  # the mix VAD counts where the vocal is within this of its speech level
LEVEL_ALPHA = 0.02  # per-hop smoothing of the running speech level (~0.5 s)


@dataclass(frozen=True, kw_only=True, slots=True)
class CutDecision:
    """A final cut in client frames (before the stream's start_sample offset)."""

    sample: int
    kind: CutKind
    score: float
    pause_start: int
    pause_end: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SpeechSegment:
    start: int  # client frames
    end: int
    mean_probability: float


DetectorEvent = CutDecision | SpeechSegment


@dataclass(frozen=True, kw_only=True, slots=True)
class DetectorParams:
    """Policy and constants converted to hops (10 ms) and client frames."""

    client_rate_hz: int
    threshold: float
    neg_threshold: float
    mix_neg_threshold: float  # the mix's own hysteresis (SONG mode's mix vote)
    min_pause: int
    search: int
    margin_start: int
    margin_end: int
    min_segment: int
    max_segment: int  # 0 = unlimited
    min_gap: int
    tolerance_db: float
    snap_radius: int  # client frames
    # the level caps (DetectorConfig.foreground_* in SPEECH mode with
    # CutPolicy.background_voices, vocal_* on SONG mode's separated vocal, level_*);
    # valley_db 0 = off
    valley_db: float = 0.0
    silent_db: float = 0.0
    valley_window: int = 1  # hops
    level_attack: float = 0.3
    level_release: float = 0.005
    # SONG with a separator: Silero on the mix votes too (BlockInput.probs_mix); with a
    # client's stem the mix is analysed for the voice detector only
    mix_votes: bool = False
    # SONG: the voice detector's cap on both probabilities (with a separator) and floor
    # under the hop's speech probability (with a separator or a stem; BlockInput.voice;
    # DetectorConfig.voice_cap*, voice_floor*)
    voice_cap: bool = False
    voice_low: float = 0.1
    voice_high: float = 0.6
    voice_floor: bool = False
    voice_floor_low: float = 0.8
    voice_floor_high: float = 0.95

    @classmethod
    def build(cls, policy: CutPolicy, det: DetectorConfig, client_rate_hz: int, *,
              separated: bool = False, song: bool = False) -> DetectorParams:
        """``separated``: detection runs on a separator's vocal estimate; ``song``:
        SONG mode (separated, or a vocal stem the client sends)."""
        def hops(ms: float) -> int:
            return round(ms * ANALYSIS_RATE_HZ / 1000 / HOP_SAMPLES)

        return cls(
            client_rate_hz=client_rate_hz,
            threshold=policy.vad_threshold,
            neg_threshold=max(policy.vad_threshold - (
                det.separated_neg_threshold_offset if separated else det.neg_threshold_offset
            ), 0.01),
            mix_neg_threshold=max(policy.vad_threshold - det.neg_threshold_offset, 0.01),
            min_pause=hops(policy.min_pause_ms),
            search=hops(policy.pause_search_ms),
            margin_start=hops(det.margin_start_ms),
            margin_end=hops(det.separated_margin_end_ms if separated else det.margin_end_ms),
            min_segment=hops(policy.min_segment_ms),
            max_segment=hops(policy.max_segment_ms),
            min_gap=hops(policy.min_gap_ms),
            tolerance_db=det.energy_tolerance_db,
            snap_radius=int(det.snap_ms * client_rate_hz / 1000),
            # SPEECH: on the probability; SONG: on the separated vocal's claim alone,
            # with the vocal_* depths (on the whole fused probability it cut inside
            # sung phrases: a phrase's level dips between notes; docs/QUALITY.md). A
            # client's clean stem is a dry voice in SONG mode: no cap.
            valley_db=(det.vocal_valley_db if separated else 0.0) if song
            else det.foreground_valley_db if policy.background_voices else 0.0,
            silent_db=(det.vocal_silent_db if separated else 0.0) if song
            else det.foreground_silent_db if policy.background_voices else 0.0,
            valley_window=max(1, hops(det.level_window_ms)),
            level_attack=det.level_attack,
            level_release=det.level_release,
            mix_votes=separated,
            voice_cap=det.voice_cap and separated and song,
            voice_low=det.voice_cap_low,
            voice_high=det.voice_cap_high,
            voice_floor=det.voice_floor and song,
            voice_floor_low=det.voice_floor_low,
            voice_floor_high=det.voice_floor_high,
        )

    def to_client(self, hop: int) -> int:
        """Client frame index of a hop's centre (rounded to nearest)."""
        return (hop * HOP_SAMPLES * self.client_rate_hz + ANALYSIS_RATE_HZ // 2) // ANALYSIS_RATE_HZ

    def mix_vote(self, prob_mix: float) -> float:
        """A mix probability on the vocal's scale, so each source keeps its own hysteresis.

        Silero on a separated vocal scores lower than on a dry voice, hence the vocal's
        lower ``neg_threshold``; the mix is not separated and keeps the usual one. This
        monotone piecewise-linear map sends the mix's ``mix_neg_threshold`` to
        ``neg_threshold`` and ``threshold`` to itself, so ``max(vocal, mix_vote(mix))``
        crosses each hysteresis edge exactly when one of the two sources crosses its own.
        """
        t, nv, nm = self.threshold, self.neg_threshold, self.mix_neg_threshold
        if prob_mix >= t or nm >= t:
            return prob_mix
        if prob_mix >= nm:
            return nv + (prob_mix - nm) * (t - nv) / (t - nm)
        return prob_mix * nv / nm

    def decision_delay_hops(self) -> int:
        """Worst case of (newest analysed hop - earliest hop a future cut can take)."""
        return self.search + self.min_gap + 2


@dataclass(frozen=True, kw_only=True, slots=True)
class Candidate:
    hop: int
    score: float
    pause_start: int  # hops
    pause_end: int


@dataclass(frozen=True, kw_only=True, slots=True)
class BlockInput:
    """One block's features. ``probs``/``energy_db`` have one value per hop."""

    start_hop: int
    probs: np.ndarray
    energy_db: np.ndarray
    # SONG mode: Silero on the mix as well. Where the separated vocal still carries
    # energy near its running speech level, the mix's vote counts too (speech if either
    # says so), which covers separation artefacts that hollow out a sung word; where
    # the separated vocal is far below that level, the vocal alone decides, so
    # vocal-like accompaniment in a pause cannot veto the cut.
    probs_mix: np.ndarray | None = None
    client_start: int  # first client frame of ``client``
    client: np.ndarray  # mono client-rate audio that this block adds, for snapping
    is_last: bool = False  # the stream ends with this block
    # SONG with a separator: the voice detector's probability per hop, which caps both
    # Silero probabilities where it says no voice (server/dsp/voice.py)
    voice: np.ndarray | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DetectorState:
    next_hop: int = 0
    in_speech: bool = False
    seen_speech: bool = False
    silence_start: int = -1  # first silent hop after speech; -1 = none open
    pause_decided: bool = False
    segment_start: int = -1  # open speech segment (for VadSegment); -1 = none
    segment_prob_sum: float = 0.0
    segment_hops: int = 0
    last_cut: int = 0  # hop of the last emitted cut (stream start counts as a cut)
    last_cut_client: int = 0
    pending: Candidate | None = None
    hist_start: int = 0  # hop index of hist_e[0]
    hist_e: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    hist_p: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    ring_start: int = 0  # client frame index of ring[0]
    ring: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    final_client: int = 0
    speech_level_db: float = SPEECH_LEVEL_UNKNOWN  # running energy of speech hops
    voice_level_db: float = SPEECH_LEVEL_UNKNOWN  # the foreground voice's running level
    # the last valley_window - 1 hops' powers (NaN before the stream's first hop)
    recent_power: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.float64))
    # The longest silence between speech that was too short to be a pause (hops;
    # start -1 = none): tells a user with no pause cut which min_pause would cut one.
    short_pause_start: int = -1
    short_pause_hops: int = 0


class _Run:
    """Mutable working copy of a DetectorState for one step (the fold's body)."""

    def __init__(self, s: DetectorState, p: DetectorParams) -> None:
        self.p = p
        self.next_hop = s.next_hop
        self.in_speech = s.in_speech
        self.seen_speech = s.seen_speech
        self.silence_start = s.silence_start
        self.pause_decided = s.pause_decided
        self.segment_start = s.segment_start
        self.segment_prob_sum = s.segment_prob_sum
        self.segment_hops = s.segment_hops
        self.last_cut = s.last_cut
        self.last_cut_client = s.last_cut_client
        self.pending = s.pending
        self.hist_start = s.hist_start
        self.hist_e = s.hist_e
        self.hist_p = s.hist_p
        self.ring_start = s.ring_start
        self.ring = s.ring
        self.speech_level_db = s.speech_level_db
        self.voice_level_db = s.voice_level_db
        self.recent_power = s.recent_power
        self.short_pause_start = s.short_pause_start
        self.short_pause_hops = s.short_pause_hops
        self.at_end = False
        self.events: list[DetectorEvent] = []

    # ---- helpers over the history window
    def _e(self, lo: int, hi: int) -> np.ndarray:
        return self.hist_e[lo - self.hist_start : hi + 1 - self.hist_start]

    def _p(self, lo: int, hi: int) -> np.ndarray:
        return self.hist_p[lo - self.hist_start : hi + 1 - self.hist_start]

    def _quietest(self, lo: int, hi: int) -> int:
        """Centre-most hop among those within tolerance of the minimum energy."""
        e = self._e(lo, hi)
        ok = np.flatnonzero(e <= e.min() + self.p.tolerance_db) + lo
        centre2 = lo + hi  # compare doubled distances to stay in integers
        return int(ok[np.argmin(np.abs(2 * ok - centre2))])

    def _snap(self, hop: int) -> int:
        target = self.p.to_client(hop)
        return snap_to_zero_crossing(self.ring, self.ring_start, target, self.p.snap_radius)

    # ---- cut emission and policy
    def _emit(self, c: Candidate, kind: CutKind) -> None:
        sample = max(self._snap(c.hop), self.last_cut_client + 1)
        end = self.ring_start + self.ring.shape[0]
        if sample >= end:
            # Past the client's last frame: only at the very end, when a separated
            # vocal runs a few samples longer than the mix after resampling.
            return
        if self.at_end and end - sample < self.p.to_client(self.p.min_segment):
            return  # the stream ends within min_segment: merge into the last segment
        self.events.append(
            CutDecision(
                sample=sample,
                kind=kind,
                score=c.score,
                pause_start=self.p.to_client(c.pause_start),
                pause_end=self.p.to_client(c.pause_end),
            )
        )
        self.last_cut = c.hop
        self.last_cut_client = sample

    def _accept(self, c: Candidate) -> None:
        if c.hop - self.last_cut >= self.p.min_segment:
            self._emit(c, CutKind.PAUSE)

    def _offer(self, c: Candidate) -> None:
        if self.p.min_gap == 0:
            self._accept(c)
        elif self.pending is None:
            self.pending = c
        elif c.hop - self.pending.hop < self.p.min_gap:
            if c.score > self.pending.score:
                self.pending = c
        else:
            self._accept(self.pending)
            self.pending = c

    def _decide_pause(self, a: int, end: int, lo: int, hi: int) -> None:
        if lo > hi:  # pause too short for both margins: take its middle
            lo = hi = (a + end) // 2
        hop = self._quietest(lo, hi)
        length_factor = min(1.0, (end - a) / 100.0)  # saturates at 1 s
        prob = float(self._p(hop, hop)[0])
        self._offer(Candidate(hop=hop, score=(1.0 - prob) * length_factor, pause_start=a,
                               pause_end=end))

    def _earliest_future(self, h: int) -> int:
        """Lowest hop any cut decided after hop ``h`` can take."""
        bound = h + 1
        if self.silence_start >= 0 and self.seen_speech and not self.pause_decided:
            bound = self.silence_start
        if self.p.max_segment:
            bound = min(bound, max(self.last_cut + self.p.min_segment, h + 1 - self.p.search))
        if self.pending is not None:
            bound = min(bound, self.pending.hop)
        return max(bound, self.last_cut)

    def _force_if_due(self, h: int) -> None:
        p = self.p
        if not p.max_segment or h + 1 - self.last_cut < p.max_segment:
            return
        if self.pending is not None:
            pend, self.pending = self.pending, None
            self._accept(pend)
            if h + 1 - self.last_cut < p.max_segment:
                return
        lo = max(self.last_cut + p.min_segment, h - p.search, self.hist_start)
        cost = self._e(lo, h) + FORCED_PROB_WEIGHT_DB * self._p(lo, h)
        hop = lo + int(np.argmin(cost))
        prob = float(self._p(hop, hop)[0])
        self._emit(Candidate(hop=hop, score=0.5 * (1.0 - prob), pause_start=hop, pause_end=hop),
                   CutKind.FORCED)

    def _close_segment(self, end_hop: int) -> None:
        if self.segment_start >= 0 and self.segment_hops:
            self.events.append(
                SpeechSegment(
                    start=self.p.to_client(self.segment_start),
                    end=self.p.to_client(end_hop),
                    mean_probability=self.segment_prob_sum / self.segment_hops,
                )
            )
        self.segment_start, self.segment_prob_sum, self.segment_hops = -1, 0.0, 0

    # ---- per-hop state machine
    def hop(self, h: int, prob: float) -> None:
        p = self.p
        if self.in_speech:
            if prob < p.neg_threshold:
                self.in_speech = False
                self.silence_start, self.pause_decided = h, False
        elif prob >= p.threshold:
            a = self.silence_start
            if self.seen_speech and a >= 0 and not self.pause_decided and h - a >= p.min_pause:
                self._decide_pause(a, h, a + p.margin_start, h - p.margin_end)
            elif self.seen_speech and a >= 0 and self.short_pause_hops < h - a < p.min_pause:
                self.short_pause_start, self.short_pause_hops = a, h - a
            self.in_speech = self.seen_speech = True
            self.silence_start, self.pause_decided = -1, False
            if self.segment_start < 0:
                self.segment_start = h
        elif self.seen_speech and self.silence_start >= 0 and not self.pause_decided:
            a = self.silence_start
            if h + 1 - a == p.min_pause:
                self._close_segment(a)
            if h + 1 - a >= p.search:
                self.pause_decided = True
                self._decide_pause(a, h + 1, a + p.margin_start, h)
        if self.segment_start >= 0:
            self.segment_prob_sum += prob
            self.segment_hops += 1
        if self.pending is not None and self._earliest_future(h) > self.pending.hop + p.min_gap:
            pend, self.pending = self.pending, None
            self._accept(pend)
        self._force_if_due(h)

    def freeze(self, final_client: int) -> DetectorState:
        return DetectorState(
            next_hop=self.next_hop, in_speech=self.in_speech, seen_speech=self.seen_speech,
            silence_start=self.silence_start, pause_decided=self.pause_decided,
            segment_start=self.segment_start, segment_prob_sum=self.segment_prob_sum,
            segment_hops=self.segment_hops, last_cut=self.last_cut,
            last_cut_client=self.last_cut_client, pending=self.pending,
            hist_start=self.hist_start, hist_e=self.hist_e, hist_p=self.hist_p,
            ring_start=self.ring_start, ring=self.ring, final_client=final_client,
            speech_level_db=self.speech_level_db, voice_level_db=self.voice_level_db,
            recent_power=self.recent_power, short_pause_start=self.short_pause_start,
            short_pause_hops=self.short_pause_hops,
        )

    def level_caps(self, probs: np.ndarray, energy_db: np.ndarray) -> np.ndarray:
        """Per hop, the most speech a hop can be given its level: 1 near the voice's
        running level, falling to 0 at ``silent_db`` below it (DetectorConfig's
        ``foreground_*`` in SPEECH mode, ``vocal_*`` on SONG mode's vocal estimate).

        Each hop's level is the mean power of the last ``valley_window`` hops, every
        window summed from the same values in the same order however the stream was
        sliced, so streaming equals offline to the bit; the running level moves only
        on hops Silero calls speech (or above it), so room tone cannot pull it down.
        """
        p = self.p
        k = p.valley_window
        caps = np.ones(probs.shape[0], np.float32)
        if not probs.shape[0]:  # a block with no whole hop (the last one can be)
            return caps
        prev = self.recent_power
        if prev.shape[0] < k - 1:  # the stream's first block: no hops before it
            prev = np.concatenate([np.full(k - 1 - prev.shape[0], np.nan), prev])
        power = np.concatenate([prev, np.power(10.0, energy_db.astype(np.float64) / 10.0)])
        windows = np.lib.stride_tricks.sliding_window_view(power, k)
        with np.errstate(invalid="ignore"):
            smooth = 10.0 * np.log10(np.nanmean(windows, axis=1) + 1e-12)
        self.recent_power = power[power.shape[0] - (k - 1):] if k > 1 else power[:0]
        level, span = self.voice_level_db, p.silent_db - p.valley_db
        for i, (pv, es) in enumerate(zip(probs.tolist(), smooth.tolist(), strict=True)):
            if level == SPEECH_LEVEL_UNKNOWN:
                if pv >= p.threshold:
                    level = es
                continue
            caps[i] = min(1.0, max(0.0, (es - level + p.silent_db) / span))
            if pv >= p.threshold or es > level:
                level += (p.level_attack if es > level else p.level_release) * (es - level)
        self.voice_level_db = level
        return caps

    def effective_probs(self, block: BlockInput, floor: np.ndarray | None = None) -> np.ndarray:
        """Per-hop speech probability after the level caps and, in SONG mode, the mix
        gate (see BlockInput), and at least ``floor`` (the voice detector's) where given.

        The floor comes last and the running levels never see it: they follow what
        Silero claims, and a hop the voice detector is sure of is voice however quiet
        the vocal estimate (measured: docs/QUALITY.md, "Voice floor")."""
        probs = block.probs.astype(np.float32)
        capped: np.ndarray = probs
        if self.p.valley_db:
            capped = np.minimum(probs, self.level_caps(block.probs, block.energy_db))
        if block.probs_mix is None:
            return capped if floor is None else np.maximum(capped, floor)
        # SONG: the cap applies to the vocal estimate's own claim only. A separator's
        # leak of the accompaniment (a centred chord, a pad) sounds like voice to
        # Silero but sits below the singer's level; where the mix's Silero says voice,
        # its vote still stands, so a sung note the estimate hollows out is kept.
        out = np.empty(probs.shape[-1], np.float32)
        level = self.speech_level_db
        for i, (pv, pc, pm, e) in enumerate(zip(probs.tolist(), capped.tolist(),
                                                block.probs_mix.tolist(),
                                                block.energy_db.tolist(), strict=True)):
            gate = level == SPEECH_LEVEL_UNKNOWN or e > level - MIX_GATE_DB
            out[i] = max(pc, self.p.mix_vote(pm)) if gate else pc
            if pv >= self.p.threshold:
                level = e if level == SPEECH_LEVEL_UNKNOWN else level + LEVEL_ALPHA * (e - level)
        self.speech_level_db = level
        return out if floor is None else np.maximum(out, floor)


def _voice_bounds(params: DetectorParams, block: BlockInput,
                  q: np.ndarray) -> tuple[BlockInput, np.ndarray | None]:
    """SONG: the voice detector's verdict ``q`` bounds Silero's.

    With a separator, where it hears no voice, neither Silero probability counts as
    voice: the cap finds pauses that the separator's leaks hide (a client's stem has
    none). Where it is sure of a voice, the hop's speech probability is at least the
    returned floor: Silero scores many sustained sung vowels as no speech, on a stem
    too, and a legato phrase then split at its quietest note change (measured:
    docs/QUALITY.md, "Voice detector" and "Voice floor")."""
    floor = None
    if params.voice_floor:
        floor = np.clip((q - params.voice_floor_low)
                        / (params.voice_floor_high - params.voice_floor_low),
                        0, 1).astype(np.float32)
    if not params.voice_cap:
        return block, floor
    ceiling = np.clip((q - params.voice_low) / (params.voice_high - params.voice_low),
                      0, 1).astype(np.float32)
    return dataclasses.replace(
        block, probs=np.minimum(block.probs, ceiling),
        probs_mix=None if block.probs_mix is None else np.minimum(block.probs_mix, ceiling)
    ), floor


def detect_step(
    state: DetectorState, params: DetectorParams, block: BlockInput
) -> tuple[DetectorState, list[DetectorEvent]]:
    """Advance the detector over one block of hops. Pure: ``state`` is not modified."""
    if block.start_hop != state.next_hop:
        raise ValueError(f"block starts at hop {block.start_hop}, expected {state.next_hop}")
    if block.client.size and block.client_start != state.ring_start + state.ring.size:
        raise ValueError("client audio is not contiguous with the detector's ring")
    if not params.mix_votes and block.probs_mix is not None:
        block = dataclasses.replace(block, probs_mix=None)  # the voice detector's alone
    if (params.voice_cap or params.voice_floor) and block.voice is not None:
        block, floor = _voice_bounds(params, block, block.voice)
    else:
        floor = None
    run = _Run(state, params)
    run.at_end = block.is_last
    n = int(block.probs.shape[-1])
    probs = run.effective_probs(block, floor)
    run.hist_e = np.concatenate([run.hist_e, block.energy_db.astype(np.float32)])
    run.hist_p = np.concatenate([run.hist_p, probs])
    if block.client.size:
        run.ring = np.concatenate([run.ring, block.client.astype(np.float32)])
    for i, prob in enumerate(probs.tolist()):
        run.hop(block.start_hop + i, prob)
    h_last = block.start_hop + n - 1
    run.next_hop = block.start_hop + n
    # Keep just the history later decisions can look at.
    # A decided pause's start is not looked at again: a long silence does not grow it.
    open_pause = run.silence_start >= 0 and not run.pause_decided
    keep_from = min(h_last + 1 - params.search - 2, run.silence_start if open_pause
                    else h_last, run.pending.hop if run.pending else h_last)
    keep_from = max(keep_from, run.hist_start)
    run.hist_e = run.hist_e[keep_from - run.hist_start :]
    run.hist_p = run.hist_p[keep_from - run.hist_start :]
    run.hist_start = keep_from
    ring_from = max(params.to_client(keep_from) - params.snap_radius - 2, run.ring_start)
    run.ring = run.ring[ring_from - run.ring_start :]
    run.ring_start = ring_from
    final = max(run.last_cut_client, params.to_client(run._earliest_future(h_last))
                - params.snap_radius)
    return run.freeze(final), run.events


def detect_finish(
    state: DetectorState, params: DetectorParams, total_client: int
) -> tuple[DetectorState, list[DetectorEvent]]:
    """End of stream: release what is pending, close the open segment, emit the END cut.

    A silence still undecided at the end is trailing silence: no cut is placed in it.
    """
    run = _Run(state, params)
    if run.pending is not None:
        pend, run.pending = run.pending, None
        run._accept(pend)
    if run.segment_start >= 0:
        end_hop = run.silence_start if run.silence_start >= 0 else run.next_hop
        run._close_segment(end_hop)
    run.events.append(
        CutDecision(sample=total_client, kind=CutKind.END, score=1.0,
                    pause_start=total_client, pause_end=total_client)
    )
    run.last_cut_client = total_client
    return run.freeze(total_client), run.events
