"""What ``seamcut bench`` measures, exactly, and the per-stream meter that measures it.

Clock: ``time.monotonic()`` seconds everywhere (CLOCK_MONOTONIC: one clock for every
process on the host, so worker processes and the parent agree). Latencies are reported
in milliseconds. The meter itself never reads a clock: callers pass the times, so the
definitions are tested with a fake clock.

Definitions (per stream; a stream sends AudioChunks with seq 0, 1, 2, ...):

``t_send(seq)``
    The clock just before the chunk is handed to the SDK's ``send()``. Client-side
    queueing and server back-pressure therefore count in the latencies below.
``t_due(seq)`` (``--realtime FACTOR`` only)
    When a live source would have the chunk: ``origin + end_frame(seq) / (rate · FACTOR)``,
    ``origin`` being the stream's start. **Send lag** = ``t_send − t_due`` (ms): how far
    the client fell behind its schedule; large values mean the client is the bottleneck.
**Ack latency** of ``seq``
    ``t_recv(P) − t_send(seq)`` where ``P`` is the first Progress received whose
    ``last_seq >= seq`` (the server sends a Progress after each accepted AudioChunk and
    after each processed block; a Progress never precedes the first accepted chunk, so
    ``last_seq = 0`` is unambiguous). ``t_recv`` is the clock when the SDK's event
    iteration yields the message.
**Cut finalisation latency** of a CutPoint ``c`` (shown as "cut vs. look-ahead bound";
JSON ``cut_finalization_latency_ms``: the name is a stable key)
    ``t_recv(c) − t_ref(c)``, where ``t_ref(c)`` is when frames
    ``[0, c.sample + lookahead_samples)`` had all been sent: ``t_send`` of the first
    chunk whose end frame is ``>= c.sample + lookahead_samples`` (``lookahead_samples``
    from Ready, in the stream's rate). When the audio ended before that frame (the END
    cut, cuts decided in the tail) ``t_ref`` is ``t_send`` of the final chunk. Negative
    values mean the cut arrived before the server's worst-case bound; they are real and
    kept. Cuts that arrive before their reference frame was sent wait, unmeasured,
    until it is sent (or the audio ends).
**Processed audio**
    Increases of ``Progress.samples_processed``, divided by the stream's sample rate
    (audio seconds). **Throughput** = processed audio received in a window / the
    window's length (audio seconds per wall second, summed over streams).
**Stage times and batch sizes**
    Copied from each ChunkTrace (server clocks, ms): ``queue_wait_ms``, ``vad_ms``,
    ``features_ms``, ``ipc_ms``, ``total_ms`` and ``batch_size`` (streams sharing the VAD
    call).
**Errors**
    Streams that ended with a non-OK gRPC status, by status code name (a client-side
    failure counts as ``CLIENT_<ExceptionName>``; a stream that does not finish within
    the drain limit after its half-close counts as ``DRAIN_TIMEOUT``).

Window: a sample counts when its *reference time* lies in ``[t0 + warmup, t0 + warmup
+ duration)``: ``t_send`` for acks and send lag, ``t_ref`` for cuts, ``t_recv`` for
processed audio and traces. Ramps use one such window per step (see ``ramp``).

Imports nothing of seamcut; the stdlib only.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from enum import Enum


class CutKindCode(Enum):
    """Cut kinds as small integers, for compact sample arrays."""

    PAUSE = 0
    FORCED = 1
    END = 2

    @classmethod
    def from_name(cls, name: str) -> CutKindCode:
        return cls[name.upper()]


@dataclass(frozen=True, kw_only=True, slots=True)
class AckSample:
    """One acknowledged chunk: ``sent_at`` (s, monotonic), ``latency_ms``."""

    seq: int
    sent_at: float
    latency_ms: float


@dataclass(frozen=True, kw_only=True, slots=True)
class CutSample:
    """One measured cut: ``ref_at`` = t_ref (s), ``received_at`` (s), ``latency_ms``
    = received − ref (may be negative), ``clamped`` when t_ref is the final chunk's."""

    sample: int
    kind: CutKindCode
    ref_at: float
    received_at: float
    latency_ms: float
    clamped: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class _PendingCut:
    sample: int
    kind: CutKindCode
    target: int  # frames that must have been sent: sample + lookahead
    received_at: float


class StreamMeter:
    """Applies the definitions above to one stream's sends and events.

    Call :meth:`set_lookahead` once Ready arrives, :meth:`sent` for every chunk in seq
    order, :meth:`progress` and :meth:`cut` for events as they arrive, and
    :meth:`end_of_audio` after the final chunk. Every method returns the samples that
    became measurable by that call.
    """

    def __init__(self, *, start_sample: int = 0) -> None:
        self.start_sample = start_sample  # cuts are reported offset by it
        self.lookahead_samples: int | None = None
        self._ends: list[int] = []  # end frame (exclusive) of chunk seq, from stream start
        self._times: list[float] = []  # t_send of chunk seq
        self._unacked: deque[tuple[int, float]] = deque()  # (seq, t_send)
        self._pending: list[_PendingCut] = []
        self._ended = False
        self._last_processed = start_sample

    # ---------------------------------------------------------------- sending
    @property
    def frames_sent(self) -> int:
        return self._ends[-1] if self._ends else 0

    @property
    def chunks_sent(self) -> int:
        return len(self._ends)

    def oldest_unacked(self) -> float | None:
        """t_send of the oldest chunk not yet acknowledged (None if all are)."""
        return self._unacked[0][1] if self._unacked else None

    def set_lookahead(self, lookahead_samples: int) -> None:
        """The server's look-ahead in frames of the stream's rate (from Ready)."""
        if lookahead_samples < 0:
            raise ValueError(f"lookahead_samples must be >= 0, got {lookahead_samples}")
        self.lookahead_samples = lookahead_samples

    def sent(self, seq: int, frames: int, t: float) -> list[CutSample]:
        """Chunk ``seq`` of ``frames`` frames was handed to send() at ``t``.

        Returns pending cuts whose reference frame this chunk completes.
        """
        if seq != len(self._ends):
            raise ValueError(f"chunks must be recorded in seq order: expected {len(self._ends)}, "
                             f"got {seq}")
        if self._ended:
            raise ValueError("chunk recorded after end_of_audio()")
        self._ends.append(self.frames_sent + frames)
        self._times.append(t)
        self._unacked.append((seq, t))
        if not self._pending:
            return []
        ready = [p for p in self._pending if p.target <= self.frames_sent]
        if not ready:
            return []
        self._pending = [p for p in self._pending if p.target > self.frames_sent]
        return [self._measure(p) for p in ready]

    def end_of_audio(self) -> list[CutSample]:
        """The final chunk has been sent: cuts still waiting take its t_send as t_ref."""
        self._ended = True
        pending, self._pending = self._pending, []
        return [self._measure(p) for p in pending]

    # ---------------------------------------------------------------- receiving
    def progress(self, last_seq: int, samples_processed: int, t: float
                 ) -> tuple[list[AckSample], int]:
        """A Progress received at ``t``: the chunks it acknowledges first, and the
        processed frames it adds (``samples_processed`` minus the previous value)."""
        acks: list[AckSample] = []
        q = self._unacked
        while q and q[0][0] <= last_seq:
            seq, sent_at = q.popleft()
            acks.append(AckSample(seq=seq, sent_at=sent_at, latency_ms=(t - sent_at) * 1000))
        delta = max(0, samples_processed - self._last_processed)
        self._last_processed = max(self._last_processed, samples_processed)
        return acks, delta

    def cut(self, sample: int, kind: CutKindCode, t: float) -> list[CutSample]:
        """A CutPoint received at ``t``: measured now if its reference frame was sent (or
        the audio ended), otherwise kept until :meth:`sent` or :meth:`end_of_audio`.

        Raises ValueError before :meth:`set_lookahead` (Ready always precedes cuts).
        """
        if self.lookahead_samples is None:
            raise ValueError("cut before the look-ahead is known (Ready not seen)")
        if self._ended and not self._ends:
            return []  # no audio at all: there is no send time to measure from
        target = sample - self.start_sample + self.lookahead_samples
        p = _PendingCut(sample=sample, kind=kind, target=target, received_at=t)
        if target <= self.frames_sent or (self._ended and self._ends):
            return [self._measure(p)]
        self._pending.append(p)
        return []

    def _measure(self, p: _PendingCut) -> CutSample:
        if not self._ends:
            raise ValueError("no audio was sent")
        clamped = p.target > self.frames_sent
        if clamped:
            ref = self._times[-1]
        else:
            k = bisect.bisect_left(self._ends, max(p.target, 1))
            ref = self._times[k]
        return CutSample(sample=p.sample, kind=p.kind, ref_at=ref, received_at=p.received_at,
                         latency_ms=(p.received_at - ref) * 1000, clamped=clamped)
