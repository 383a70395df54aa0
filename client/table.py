"""Output of ``seamcut split``: the cut table, the summary line and the JSON report.

Pure functions over client events (no I/O), so the online and offline paths and the
tests share them. Imports the SDK's ``stream`` module only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from seamcut.client.stream import CutEvent, Event, ReadyEvent


@dataclass(frozen=True, kw_only=True, slots=True)
class CutRow:
    """A cut and, when streaming at real time, its finalisation latency in ms: wall time
    from sending the audio up to ``sample + lookahead`` to receiving the cut."""

    cut: CutEvent
    latency_ms: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SplitReport:
    """Everything ``split`` reports about one file. Positions in frames, times in s."""

    file: str
    sample_rate_hz: int
    channels: int
    frames: int
    mode: str
    session_id: str
    lookahead_ms: int
    cuts: tuple[CutRow, ...]
    wall_seconds: float
    realtime: bool = False

    @property
    def audio_seconds(self) -> float:
        return self.frames / self.sample_rate_hz


def format_time(seconds: float) -> str:
    """``hh:mm:ss.mmm`` (rounded to the millisecond)."""
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def format_ready(ready: ReadyEvent, *, file: str, sample_rate_hz: int, channels: int,
                 encoding: str) -> str:
    """One line naming the file, format and session, printed before the table."""
    mode = ready.config.mode if ready.config is not None and ready.config.mode else "default"
    return (
        f"{file}: {sample_rate_hz} Hz, {channels} ch, {encoding}, mode {mode} | "
        f"session {ready.session_id} on {ready.device or '?'}, "
        f"look-ahead {ready.lookahead_ms} ms"
    )


def table_header(*, realtime: bool) -> str:
    head = f"{'#':>5}  {'time':<12}  {'sample':>12}  {'kind':<6}  {'score':>5}"
    return head + (f"  {'latency':>10}" if realtime else "")


def format_row(row: CutRow, *, realtime: bool) -> str:
    """One table line: index, hh:mm:ss.mmm, sample, kind, score[, latency]."""
    c = row.cut
    line = (
        f"{c.index:>5}  {format_time(c.seconds):<12}  {c.sample:>12}  {c.kind:<6}  "
        f"{c.score:>5.3f}"
    )
    if realtime:
        latency = "-" if row.latency_ms is None else f"{row.latency_ms:.0f} ms"
        line += f"  {latency:>10}"
    return line


def summary_line(report: SplitReport) -> str:
    """Cut counts by kind, audio and wall seconds, and audio seconds per wall second."""
    kinds = [r.cut.kind for r in report.cuts]
    counts = ", ".join(f"{kinds.count(k)} {k}" for k in ("pause", "forced", "end"))
    speed = report.audio_seconds / report.wall_seconds if report.wall_seconds > 0 else 0.0
    return (
        f"{len(kinds)} cuts ({counts}) in {report.audio_seconds:.3f} s of audio; "
        f"wall {report.wall_seconds:.3f} s; {speed:.1f} audio-s/s"
    )


def report_json(report: SplitReport) -> dict[str, Any]:
    """The ``--json`` document. ``cuts`` includes the END cut; per-cut
    ``finalization_latency_ms`` only for real-time runs."""
    cuts: list[dict[str, Any]] = []
    for row in report.cuts:
        item: dict[str, Any] = {
            "sample": row.cut.sample,
            "seconds": row.cut.seconds,
            "kind": row.cut.kind,
            "score": round(row.cut.score, 6),
        }
        if report.realtime:
            item["finalization_latency_ms"] = (
                None if row.latency_ms is None else round(row.latency_ms, 3)
            )
        cuts.append(item)
    return {
        "file": report.file,
        "sample_rate": report.sample_rate_hz,
        "channels": report.channels,
        "frames": report.frames,
        "mode": report.mode,
        "session_id": report.session_id,
        "lookahead_ms": report.lookahead_ms,
        "cuts": cuts,
    }


def build_report(
    events: Iterable[Event],
    *,
    file: str,
    sample_rate_hz: int,
    channels: int,
    frames: int,
    wall_seconds: float,
    mode: str = "",
    realtime: bool = False,
    latencies_ms: Mapping[int, float] | None = None,
) -> SplitReport:
    """Collect a stream's events into a report.

    ``mode`` is used only when the Ready event carries no config; ``latencies_ms``
    maps a cut's index to its finalisation latency.
    """
    ready: ReadyEvent | None = None
    rows: list[CutRow] = []
    for ev in events:
        if isinstance(ev, ReadyEvent):
            ready = ev
        elif isinstance(ev, CutEvent):
            rows.append(CutRow(cut=ev, latency_ms=(latencies_ms or {}).get(ev.index)))
    if ready is not None and ready.config is not None and ready.config.mode:
        mode = ready.config.mode
    return SplitReport(
        file=file, sample_rate_hz=sample_rate_hz, channels=channels, frames=frames,
        mode=mode, session_id=ready.session_id if ready else "",
        lookahead_ms=ready.lookahead_ms if ready else 0, cuts=tuple(rows),
        wall_seconds=wall_seconds, realtime=realtime,
    )
