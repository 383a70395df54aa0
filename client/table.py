"""Output of ``seamcut split``: the cut table, the summary line and the JSON report.

Pure functions over client events (no I/O), so the online and offline paths and the
tests share them. Imports the SDK's ``stream`` module only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from seamcut.client.stream import CutEvent, Event, ReadyEvent, SummaryEvent

LATENCY_HELP = """\
the "vs bound" column (--realtime; "final_vs_bound_ms" in --json): when a cut became
final, against the server's promise. The server promises every cut at or before
sample S once the audio up to S + look-ahead has arrived; the column is the wall time
from sending that audio to receiving the cut, in ms. Negative is normal and good: the
cut was final before the worst case (a pause ends a phrase early). Positive is the
time the network and the server took beyond the bound."""
MIN_PAUSE_FLOOR_S = 0.1  # the server's lowest policy.min_pause_ms


@dataclass(frozen=True, kw_only=True, slots=True)
class CutRow:
    """A cut and, when streaming at real time, when it became final against the
    look-ahead bound, ms (see LATENCY_HELP; negative = before the bound)."""

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
    return head + (f"  {'vs bound':>10}" if realtime else "")


def format_row(row: CutRow, *, realtime: bool) -> str:
    """One table line: index, hh:mm:ss.mmm, sample, kind, score[, vs bound]."""
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
    ``final_vs_bound_ms`` only for real-time runs (explained in ``notes``)."""
    cuts: list[dict[str, Any]] = []
    for row in report.cuts:
        item: dict[str, Any] = {
            "sample": row.cut.sample,
            "seconds": row.cut.seconds,
            "kind": row.cut.kind,
            "score": round(row.cut.score, 6),
        }
        if report.realtime:
            item["final_vs_bound_ms"] = (
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
        **({"notes": {"final_vs_bound_ms": " ".join(LATENCY_HELP.split())}}
           if report.realtime else {}),
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


def no_pause_hint(events: Iterable[Event], *, sample_rate_hz: int) -> str | None:
    """Why a stream got no pause cut, and the ``--min-pause`` that would cut one.

    From the Summary's longest too-short silence (the one a lower ``min_pause`` cuts
    first). None if a pause was cut, or the server did not say.
    """
    ready: ReadyEvent | None = None
    summary: SummaryEvent | None = None
    for ev in events:
        if isinstance(ev, CutEvent) and ev.kind == "pause":
            return None
        if isinstance(ev, ReadyEvent):
            ready = ev
        elif isinstance(ev, SummaryEvent):
            summary = ev
    if summary is None or ready is None or ready.config is None:
        return None
    min_pause = ready.config.min_pause_ms
    now = f"--min-pause {min_pause / 1000:g} s" if min_pause else "--min-pause"
    if summary.longest_short_pause_ms <= 0:
        return (f"hint: no pause was cut; the server reported no silence between speech "
                f"shorter than {now}")
    seconds = summary.longest_short_pause_ms / 1000
    where = format_time(summary.longest_short_pause_sample / sample_rate_hz)
    head = (f"hint: no pause was cut; the longest silence between speech shorter than {now} "
            f"lasted {seconds:.2f} s (at {where})")
    # Round down to 10 ms, so the suggestion is at most the silence itself.
    suggest = int(seconds * 100) / 100
    if suggest < MIN_PAUSE_FLOOR_S:
        return f"{head}, less than any --min-pause allows ({MIN_PAUSE_FLOOR_S:g} s)"
    # "count as a pause", not "be cut": --min-segment and --min-gap still apply.
    return f"{head}; --min-pause {suggest:g} would count it as a pause"
