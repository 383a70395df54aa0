"""Raw samples of a bench run and the figures of a time window.

A worker appends every measurement to a :class:`Samples` (compact ``array`` columns,
cheap to append on the hot path and to pickle); every report interval it hands the
new ones to the parent with :meth:`Samples.take`, and the parent merges them with
:meth:`Samples.extend`. :func:`window_stats` then applies the window rule of
``metrics`` (a sample counts when its reference time lies in ``[start, end)``).

Times are ``time.monotonic()`` seconds; latencies ms. Imports numpy and the bench's
``metrics`` and ``stats`` modules.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from seamcut.bench.metrics import AckSample, CutKindCode, CutSample
from seamcut.bench.stats import Distribution, FloatArray, distribution

# column -> array typecode. Grouped columns have equal lengths.
COLUMNS: dict[str, str] = {
    "sent_t": "d", "lag_ms": "d",  # per chunk: t_send, send lag (NaN when flooding)
    "ack_t": "d", "ack_ms": "d",  # per acknowledged chunk: t_send, ack latency
    "cut_t": "d", "cut_ms": "d", "cut_kind": "b", "cut_clamped": "b",  # per cut: t_ref, ...
    "proc_t": "d", "proc_s": "d",  # per Progress that advanced: t_recv, audio seconds
    "trace_t": "d", "queue_ms": "d", "vad_ms": "d", "features_ms": "d", "ipc_ms": "d",
    "total_ms": "d", "batch": "d",  # per ChunkTrace: t_recv, stage times, VAD batch size
}
STAGES = ("queue_ms", "vad_ms", "features_ms", "ipc_ms", "total_ms")


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorSample:
    """A stream that failed at ``t``: gRPC status code name (or CLIENT_..., DRAIN_TIMEOUT)."""

    t: float
    stream: int
    code: str
    details: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamMark:
    """A stream's life: ``what`` is "open", "ready" or "end" (ended, OK or not) at ``t``.

    Ready marks carry the server's look-ahead (ms and frames), device and version; end
    marks the chunks the stream sent.
    """

    t: float
    stream: int
    what: str
    chunks: int = 0
    lookahead_ms: int = 0
    lookahead_samples: int = 0
    device: str = ""
    server_version: str = ""


class Samples:
    """Columns of raw samples plus errors and stream marks (see COLUMNS)."""

    __slots__ = ("cols", "errors", "marks")

    def __init__(self) -> None:
        self.cols: dict[str, array[Any]] = {
            name: array(code) for name, code in COLUMNS.items()
        }
        self.errors: list[ErrorSample] = []
        self.marks: list[StreamMark] = []

    # ---------------------------------------------------------------- appending
    def add_sent(self, t: float, lag_ms: float) -> None:
        self.cols["sent_t"].append(t)
        self.cols["lag_ms"].append(lag_ms)

    def add_acks(self, acks: list[AckSample]) -> None:
        for a in acks:
            self.cols["ack_t"].append(a.sent_at)
            self.cols["ack_ms"].append(a.latency_ms)

    def add_cuts(self, cuts: list[CutSample]) -> None:
        for c in cuts:
            self.cols["cut_t"].append(c.ref_at)
            self.cols["cut_ms"].append(c.latency_ms)
            self.cols["cut_kind"].append(c.kind.value)
            self.cols["cut_clamped"].append(int(c.clamped))

    def add_processed(self, t: float, audio_seconds: float) -> None:
        self.cols["proc_t"].append(t)
        self.cols["proc_s"].append(audio_seconds)

    def add_trace(self, t: float, queue_ms: float, vad_ms: float, features_ms: float,
                  total_ms: float, batch: int, ipc_ms: float = 0.0) -> None:
        for name, v in (("trace_t", t), ("queue_ms", queue_ms), ("vad_ms", vad_ms),
                        ("features_ms", features_ms), ("ipc_ms", ipc_ms),
                        ("total_ms", total_ms), ("batch", float(batch))):
            self.cols[name].append(v)

    # ---------------------------------------------------------------- moving
    def take(self) -> Samples:
        """Everything gathered so far, as a new object; this one starts empty."""
        out = Samples()
        out.cols, self.cols = self.cols, out.cols
        out.errors, self.errors = self.errors, []
        out.marks, self.marks = self.marks, []
        return out

    def extend(self, other: Samples) -> None:
        for name, col in other.cols.items():
            self.cols[name].extend(col)
        self.errors.extend(other.errors)
        self.marks.extend(other.marks)

    def col(self, name: str) -> FloatArray:
        """A column as float64 numpy (a copy, safe to keep)."""
        return np.asarray(self.cols[name], dtype=np.float64)

    def __getstate__(self) -> tuple[dict[str, bytes], list[ErrorSample], list[StreamMark]]:
        # arrays pickle as bytes: a shard of thousands of samples costs one memcpy.
        return ({k: v.tobytes() for k, v in self.cols.items()}, self.errors, self.marks)

    def __setstate__(self, state: tuple[dict[str, bytes], list[ErrorSample],
                                        list[StreamMark]]) -> None:
        raw, self.errors, self.marks = state
        self.cols = {}
        for name, code in COLUMNS.items():
            col = array(code)
            col.frombytes(raw[name])
            self.cols[name] = col


@dataclass(frozen=True, kw_only=True, slots=True)
class WindowStats:
    """The figures of one window ``[start, end)`` (monotonic s) with ``streams`` open."""

    start: float
    end: float
    streams: int
    ack_ms: Distribution
    cut_ms: Distribution
    send_lag_ms: Distribution
    messages: int
    audio_seconds: float
    cuts_by_kind: dict[str, int]
    cuts_negative: int
    cuts_clamped: int
    stages_ms: dict[str, Distribution]
    batch_size: Distribution
    errors: int
    errors_by_code: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def _mask(t: FloatArray, start: float, end: float) -> np.ndarray:
    return (t >= start) & (t < end)


def window_stats(s: Samples, start: float, end: float, *, streams: int,
                 errors_from: float | None = None, errors_to: float | None = None
                 ) -> WindowStats:
    """Figures of the samples whose reference time lies in ``[start, end)``.

    Errors are counted over ``[errors_from, errors_to)`` (default: the same window), so
    a run can count every error while measuring latencies after the warm-up only.
    """
    ack = s.col("ack_ms")[_mask(s.col("ack_t"), start, end)]
    cm = _mask(s.col("cut_t"), start, end)
    cut = s.col("cut_ms")[cm]
    kinds = s.col("cut_kind")[cm].astype(np.int64)
    sm = _mask(s.col("sent_t"), start, end)
    lag = s.col("lag_ms")[sm]
    lag = lag[~np.isnan(lag)]
    proc = s.col("proc_s")[_mask(s.col("proc_t"), start, end)]
    tm = _mask(s.col("trace_t"), start, end)
    e0 = start if errors_from is None else errors_from
    e1 = end if errors_to is None else errors_to
    errs = [e for e in s.errors if e0 <= e.t < e1]
    return WindowStats(
        start=start, end=end, streams=streams,
        ack_ms=distribution(ack), cut_ms=distribution(cut), send_lag_ms=distribution(lag),
        messages=int(sm.sum()), audio_seconds=float(proc.sum()),
        cuts_by_kind={k.name.lower(): int((kinds == k.value).sum()) for k in CutKindCode},
        cuts_negative=int((cut < 0).sum()),
        cuts_clamped=int(s.col("cut_clamped")[cm].sum()),
        stages_ms={name.removesuffix("_ms"): distribution(s.col(name)[tm]) for name in STAGES},
        batch_size=distribution(s.col("batch")[tm]),
        errors=len(errs), errors_by_code=dict(Counter(e.code for e in errs)),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class SeriesPoint:
    """One bin of the time series: ``t`` = bin start relative to t0 (s)."""

    t: float
    streams: int
    messages_per_second: float
    audio_seconds_per_second: float
    ack_p50_ms: float | None
    ack_p99_ms: float | None


def active_streams(marks: list[StreamMark], t: float) -> int:
    """Streams opened at or before ``t`` and not yet ended."""
    opened = sum(1 for m in marks if m.what == "open" and m.t <= t)
    ended = sum(1 for m in marks if m.what == "end" and m.t <= t)
    return opened - ended


def series(s: Samples, t0: float, end: float, bin_s: float = 1.0) -> list[SeriesPoint]:
    """Per-bin rates and ack percentiles over the whole bins in ``[t0, end)`` (for plots
    and JSON). ``streams`` is the count open at the bin's midpoint."""
    out: list[SeriesPoint] = []
    sent_t, ack_t, ack_ms = s.col("sent_t"), s.col("ack_t"), s.col("ack_ms")
    proc_t, proc_s = s.col("proc_t"), s.col("proc_s")
    n = max(0, int(np.floor((end - t0) / bin_s + 1e-9)))
    for i in range(n):
        a, b = t0 + i * bin_s, t0 + (i + 1) * bin_s
        acks = distribution(ack_ms[_mask(ack_t, a, b)])
        out.append(SeriesPoint(
            t=round(i * bin_s, 6), streams=active_streams(s.marks, (a + b) / 2),
            messages_per_second=round(float(_mask(sent_t, a, b).sum()) / bin_s, 2),
            audio_seconds_per_second=round(float(proc_s[_mask(proc_t, a, b)].sum()) / bin_s, 3),
            ack_p50_ms=None if acks.p50 is None else round(acks.p50, 3),
            ack_p99_ms=None if acks.p99 is None else round(acks.p99, 3),
        ))
    return out
