"""``--plots DIR``: small PNGs drawn from the JSON report with matplotlib's Agg backend.

Files: ``latency_vs_streams.png`` (ramps: ack and cut percentiles per step),
``latency_over_time.png`` (ack p50/p99 per second), ``throughput.png`` (audio seconds
per second and open streams over time), ``stages.png`` (server per-stage p50/p99 from
ChunkTraces), ``resources.png`` (client/server CPU and RSS over time).

Axes do not mislead: every axis of a duration, a rate, CPU or memory starts at 0 (an
autoscaled axis turns a steady 4.0 ± 0.1 audio s/s into a jagged line); the cut axis,
whose values are measured against the look-ahead bound and may be negative, always
shows 0 and draws it as the bound. Where the run had a target (the offered load of a
paced run, a limit that was applied) it is a labelled horizontal line. Time series are
drawn as stairs over their 1 s bins, which is what they are.

Each ``*_figure`` function returns a ``matplotlib.figure.Figure`` (no pyplot, no global
state; None when the report has no data for it), so tests read the axes back;
:func:`write_plots` saves them at 90 dpi, a few tens of KB each. Imports matplotlib
lazily (only when plotting).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SIZE = (6.4, 3.4)  # inches
DPI = 90
HEADROOM = 1.15  # top of a zero-based axis: the largest value (or target) + 15 %
TARGET: dict[str, Any] = {"color": "red", "lw": 0.8, "ls": "--"}  # offered load, limits
BOUND: dict[str, Any] = {"color": "black", "lw": 0.8, "ls": "-"}  # the cut axis at 0


def _figure(rows: int = 1) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(SIZE[0], SIZE[1] * (1 if rows == 1 else 1.6)), dpi=DPI,
                  layout="constrained")


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _nan(values: Iterable[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _from_zero(ax: Axes, *values: Iterable[float | None]) -> None:
    """y from 0 to the largest of ``values`` (data and targets) plus headroom."""
    top = max((v for vs in values for v in _finite(vs)), default=0.0)
    ax.set_ylim(0.0, top * HEADROOM if top > 0 else 1.0)


def _around_zero(ax: Axes, *values: Iterable[float | None]) -> None:
    """y spanning 0 and every value (which may be negative), plus headroom."""
    vals = [v for vs in values for v in _finite(vs)]
    lo, hi = min([0.0, *vals]), max([0.0, *vals])
    pad = (hi - lo) * (HEADROOM - 1) or 1.0
    ax.set_ylim(lo - pad if lo < 0 else 0.0, hi + pad)


def _edges(ts: list[float]) -> list[float]:
    """Bin edges for series points whose ``t`` is the bin start (bins of equal width)."""
    width = ts[1] - ts[0] if len(ts) > 1 else 1.0
    return [*ts, ts[-1] + width]


def _title(report: dict[str, Any]) -> str:
    cfg = report["config"]
    rt = cfg.get("realtime_factor")
    pace = "flood" if rt is None else f"paced x{rt:g}"
    return f"seamcut bench: {cfg['mode']}, {cfg['chunk_ms']} ms chunks, {pace}"


def _ack_limit(report: dict[str, Any]) -> float | None:
    """The p99 ack limit, when the run applied one (a ramp, or ``--max-p99-ms``)."""
    cfg = report["config"]
    if cfg.get("ramp") is None and not cfg.get("check_limits"):
        return None
    return float(cfg["limits"]["ack_p99_ms"])


def latency_vs_streams_figure(report: dict[str, Any]) -> Figure | None:
    """Ramps: ack p50/p99 and cut p50/p99 against concurrent streams, with the limits."""
    ramp = report.get("ramp")
    if not ramp or not ramp["steps"]:
        return None
    steps = ramp["steps"]
    n = [s["streams"] for s in steps]
    fig = _figure(2)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    acks, cuts = [], []
    for key, style in (("p50", "o-"), ("p99", "s-")):
        a = _nan(s["ack_latency_ms"][key] for s in steps)
        c = _nan(s["cut_finalization_latency_ms"][key] for s in steps)
        ax1.plot(n, a, style, label=f"ack {key}")
        ax2.plot(n, c, style, label=f"cut {key}")
        acks += a
        cuts += c
    limits = ramp["limits"]
    ax1.axhline(limits["ack_p99_ms"], **TARGET, label="ack p99 limit")
    ax2.axhline(0.0, **BOUND, label="look-ahead bound")
    cut_limit = limits["cut_p99_ms"]
    if cut_limit is not None:
        ax2.axhline(cut_limit, **TARGET, label="cut p99 limit")
    if ramp["knee_streams"]:
        for ax in (ax1, ax2):
            ax.axvline(ramp["knee_streams"], color="gray", lw=0.8, ls=":")
    _from_zero(ax1, acks, [limits["ack_p99_ms"]])
    _around_zero(ax2, cuts, [cut_limit])
    ax2.set_xlim(0, max(n) * HEADROOM)
    ax1.set_ylabel("ack latency (ms)")
    ax2.set_ylabel("cut vs. look-ahead\nbound (ms)")
    ax2.set_xlabel("concurrent streams")
    ax1.set_title(_title(report) + f" — knee {ramp['knee_streams']}", fontsize=9)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def latency_over_time_figure(report: dict[str, Any]) -> Figure | None:
    """Ack p50/p99 per 1 s bin (by receive time), the warm-up's end, the applied limit."""
    pts = report["throughput"]["series"]
    if not pts:
        return None
    fig = _figure()
    ax = fig.subplots()
    edges = _edges([p["t"] for p in pts])
    p50, p99 = _nan(p["ack_p50_ms"] for p in pts), _nan(p["ack_p99_ms"] for p in pts)
    ax.stairs(p50, edges, baseline=None, label="ack p50", color="C0")
    ax.stairs(p99, edges, baseline=None, label="ack p99", color="C1")
    limit = _ack_limit(report)
    if limit is not None:
        ax.axhline(limit, **TARGET, label="ack p99 limit")
    ax.axvline(report["window"]["start_s"], color="gray", lw=0.8, ls=":", label="warm-up end")
    _from_zero(ax, p50, p99, [limit])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ack latency (ms)")
    ax.set_title(_title(report), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def offered_load(report: dict[str, Any]) -> float | None:
    """Audio s per wall s a paced fixed run offers (streams × FACTOR); None when flooding
    (no rate was offered) or ramping (the offer changes per step: see the stairs)."""
    cfg = report["config"]
    rt = cfg.get("realtime_factor")
    if rt is None or cfg.get("ramp") is not None:
        return None
    return float(cfg["streams"]) * float(rt)


def throughput_figure(report: dict[str, Any]) -> Figure | None:
    """Audio s processed per wall s per 1 s bin, the offered load, and open streams."""
    pts = report["throughput"]["series"]
    if not pts:
        return None
    cfg = report["config"]
    rt = cfg.get("realtime_factor")
    fig = _figure()
    ax = fig.subplots()
    edges = _edges([p["t"] for p in pts])
    rate = _nan(p["audio_seconds_per_second"] for p in pts)
    streams = [float(p["streams"]) for p in pts]
    ax.stairs(rate, edges, baseline=None, color="C0", label="processed", zorder=2)
    offered = offered_load(report)
    targets: list[float] = []
    if offered is not None:
        ax.axhline(offered, **TARGET, zorder=3,
                   label=f"offered: {cfg['streams']} streams × {rt:g} real time")
        targets = [offered]
    elif rt is not None:  # a paced ramp: the offer is the open streams × FACTOR
        offer = [s * rt for s in streams]
        ax.stairs(offer, edges, baseline=None, **TARGET, zorder=3,
                  label=f"offered: open streams × {rt:g}")
        targets = offer
    _from_zero(ax, rate, targets)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("audio s / wall s", color="C0")
    ax2 = ax.twinx()
    ax2.stairs(streams, edges, baseline=None, color="C1", lw=0.8, alpha=0.6)
    ax2.set_ylabel("open streams", color="C1")
    if rt is not None:
        # Paced: streams × FACTOR is the offer, so this scale puts the streams line on
        # the offered line and a shortfall shows as a gap, not as a second curve.
        bottom, top = ax.get_ylim()
        ax2.set_ylim(bottom / rt, top / rt)
    else:
        _from_zero(ax2, streams)
    ax.set_title(_title(report), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def stages_figure(report: dict[str, Any]) -> Figure | None:
    """Server per-stage p50/p99 (ms per block) as bars from 0."""
    stages = {k: v for k, v in (report.get("stages_ms") or {}).items() if v["count"]}
    if not stages:
        return None
    fig = _figure()
    ax = fig.subplots()
    names = list(stages)
    y = range(len(names))
    p50 = _nan(stages[n]["p50"] for n in names)
    p99 = _nan(stages[n]["p99"] for n in names)
    ax.barh([i + 0.2 for i in y], p50, height=0.4, label="p50")
    ax.barh([i - 0.2 for i in y], p99, height=0.4, label="p99")
    ax.set_yticks(list(y), names)
    top = max(_finite([*p50, *p99]), default=0.0)
    ax.set_xlim(0.0, top * HEADROOM if top > 0 else 1.0)
    ax.set_xlabel("ms per block (server ChunkTrace)")
    batch = report.get("batch_size") or {}
    ax.set_title(_title(report) + f" — VAD batch p50 {batch.get('p50')}, max "
                 f"{batch.get('max')}", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7)
    return fig


def resources_figure(report: dict[str, Any]) -> Figure | None:
    """Client and server CPU (% of a core) and RSS (MiB) over time, both from 0."""
    res = report.get("resources") or {}
    groups = {k: v["series"] for k, v in res.items() if v and v["series"]}
    if not groups:
        return None
    fig = _figure(2)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    cpu: list[float | None] = []
    rss: list[float | None] = []
    for who, pts in groups.items():
        t = [p["t"] for p in pts]
        c, r = [p["cpu_percent"] for p in pts], [p["rss_mib"] for p in pts]
        ax1.plot(t, _nan(c), label=who)
        ax2.plot(t, _nan(r), label=who)
        cpu += c
        rss += r
    _from_zero(ax1, cpu)
    _from_zero(ax2, rss)
    ax1.set_ylabel("CPU % of a core")
    ax2.set_ylabel("RSS (MiB)")
    ax2.set_xlabel("time (s)")
    ax1.set_title(_title(report), fontsize=9)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


FIGURES: dict[str, Callable[[dict[str, Any]], Figure | None]] = {
    "latency_vs_streams.png": latency_vs_streams_figure,
    "latency_over_time.png": latency_over_time_figure,
    "throughput.png": throughput_figure,
    "stages.png": stages_figure,
    "resources.png": resources_figure,
}


def write_plots(report: dict[str, Any], directory: str | Path) -> list[Path]:
    """Draw every plot that the report has data for into ``directory``; the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if "throughput" not in report:  # an --idle report has no time series
        return []
    made = []
    for name, build in FIGURES.items():
        fig = build(report)
        if fig is not None:
            fig.savefig(out / name, dpi=DPI, format="png", metadata={"Software": None})
            made.append(out / name)
    return made
