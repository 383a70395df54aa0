"""One stream's analysis chain: blocks -> ANALYSE requests -> detector events.

The recurrent VAD state goes into a request and comes back in its result; a request
sent while the previous one is still out continues from that one's end state
(``Request.state_from``). At most :data:`REQUESTS_IN_FLIGHT` are out; blocks that
become ready meanwhile wait here and leave together in the next request (up to
``max_blocks``): a paced stream sends one block per request, a flooding one many,
and the engine runs a request's blocks as one sequence. The grouping never changes
a result: the engine treats every block exactly as if it came alone.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from seamcut.server.config import HOP_SAMPLES, VAD_FRAME_SAMPLES
from seamcut.server.dsp import voice
from seamcut.server.dsp.detector import (
    BlockInput,
    DetectorEvent,
    DetectorParams,
    DetectorState,
    detect_finish,
    detect_step,
)
from seamcut.server.dsp.reblock import GridBlock
from seamcut.server.engine.protocol import (
    EMPTY,
    Kind,
    Request,
    Result,
    frames_per_block,
    hops_per_block,
    initial_vad_state,
)


@dataclass(slots=True)
class Pending:
    """A block waiting for analysis (or a marker: ``block`` None, only a release), with
    what its trace and the session's accounting need."""

    block: GridBlock | None
    releases: int  # session slots this entry frees once analysed
    first_seq: int
    last_seq: int
    send_ns: int
    recv_ns: int
    t_ready: float  # perf_counter when its unit was handed to the engine
    mix16: np.ndarray | None = None  # SONG: the mix over the block at 16 kHz
    separation_ms: float = 0.0
    separation_batch: int = 0
    separation_queue_ms: float = 0.0
    separation_ipc_ms: float = 0.0
    separation_pipeline: str = ""  # "cuda": its windows (and all before) ran through it
    h2d_ms: float = 0.0  # the separation's copies (the analysis adds its own)
    d2h_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Analysed:
    """One entry of a completed request, with its share of the result."""

    pending: Pending
    probs: np.ndarray  # per VAD frame
    probs_mix: np.ndarray | None
    energy_db: np.ndarray  # per hop


# ANALYSE requests of one stream in flight at once. Two keep the engine's VAD busy:
# while one runs, the next waits right behind it, continuing from its end state, and
# the session gathers the blocks for the one after.
REQUESTS_IN_FLIGHT = 2


class AnalysisChain:
    def __init__(self, stream: str, *, mix_vad: bool, max_blocks: int) -> None:
        """``mix_vad``: Silero analyses the mix too (each block's Pending.mix16)."""
        self.stream = stream
        self._mix_vad = mix_vad
        self._max_blocks = max_blocks
        self._queue: deque[Pending] = deque()
        self.inflight: deque[tuple[int, int, list[Pending]]] = deque()  # (id, sent_ns, group)
        self.vad_state = initial_vad_state()  # after the last request answered
        self.mix_state = initial_vad_state() if mix_vad else EMPTY

    def add(self, p: Pending) -> None:
        self._queue.append(p)

    def take(self) -> list[Pending] | None:
        """The next group of up to ``max_blocks`` blocks (with the markers between and
        after them), or markers alone; None when nothing can go now. Markers behind a
        request in flight ride with it, so that they complete in order."""
        if not self._queue or len(self.inflight) >= REQUESTS_IN_FLIGHT:
            return None
        group: list[Pending] = []
        blocks = 0
        while self._queue:
            if self._queue[0].block is not None:
                if blocks == self._max_blocks:
                    break
                blocks += 1
            group.append(self._queue.popleft())
        if not blocks and self.inflight:
            self.inflight[-1][2].extend(group)
            return None
        return group

    def request(self, group: list[Pending], req_id: int, sent_ns: int) -> Request:
        """The ANALYSE request for a group from :meth:`take` (now in flight)."""
        blocks = [p.block for p in group if p.block is not None]
        audio = np.concatenate([blocks[0].samples16] + [b.samples16[HOP_SAMPLES:]
                                                        for b in blocks[1:]])
        mix = (np.concatenate([p.mix16 for p in group if p.block is not None
                               and p.mix16 is not None]) if self._mix_vad else EMPTY)
        prev = self.inflight[-1][0] if self.inflight else 0
        self.inflight.append((req_id, sent_ns, group))
        return Request(kind=Kind.ANALYSE, stream=self.stream, id=req_id,
                       index=blocks[0].index, audio=audio,
                       lengths=tuple(b.length16 for b in blocks), mix=mix,
                       vad_state=EMPTY if prev else self.vad_state,
                       mix_state=EMPTY if prev else self.mix_state,
                       state_from=prev, last=blocks[-1].is_last)

    def complete(self, res: Result) -> tuple[list[Analysed], int]:
        """Split the oldest request's result per entry and take its end state; also
        when that request was sent (CLOCK_MONOTONIC ns)."""
        req_id, sent_ns, group = self.inflight.popleft()
        assert req_id == res.id, f"result {res.id} out of order (expected {req_id})"
        self.vad_state = res.vad_state
        self.mix_state = res.mix_state
        out = []
        f = h = 0
        for p in group:
            if p.block is None:
                out.append(Analysed(p, EMPTY, None, EMPTY))
                continue
            nf, nh = frames_per_block(p.block.length16), hops_per_block(p.block.length16)
            out.append(Analysed(p, res.probs[f : f + nf],
                                res.probs_mix[f : f + nf] if self._mix_vad else None,
                                res.energy_db[h : h + nh]))
            f, h = f + nf, h + nh
        return out, sent_ns


def detect_block(
    state: DetectorState, params: DetectorParams, a: Analysed,
    voice_net: voice.VoiceNet | None = None, voice_state: voice.VoiceState | None = None,
) -> tuple[DetectorState, tuple[DetectorEvent, ...], voice.VoiceState | None]:
    """One step of the detector fold over an analysed block (the last one finishes),
    with SONG mode's voice detector first when it runs (its state goes in and out)."""
    b = a.pending.block
    assert b is not None
    n_hops = hops_per_block(b.length16)
    frame_idx = (HOP_SAMPLES * np.arange(n_hops)) // VAD_FRAME_SAMPLES
    probs = a.probs[frame_idx]
    probs_mix = None if a.probs_mix is None else a.probs_mix[frame_idx]
    q = None
    mix16 = a.pending.mix16
    if voice_net is not None and voice_state is not None and probs_mix is not None:
        assert mix16 is not None
        q, voice_state = voice.run(voice_net, voice_state, b.samples16, mix16, probs,
                                   probs_mix)
    state, events = detect_step(state, params, BlockInput(
        start_hop=b.start16 // HOP_SAMPLES,
        probs=probs,
        probs_mix=probs_mix,
        energy_db=a.energy_db,
        client_start=b.client_start,
        client=b.client,
        is_last=b.is_last,
        voice=q,
    ))
    if b.is_last:
        state, tail = detect_finish(state, params, b.client_start + int(b.client.shape[0]))
        events = events + tail
    return state, tuple(events), voice_state
