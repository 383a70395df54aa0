"""``--plots DIR``: small PNGs drawn from the JSON report with matplotlib's Agg backend.

Files: ``latency_vs_streams.png`` (ramps: ack and cut-finalisation percentiles per
step), ``latency_over_time.png`` (ack p50/p99 per second), ``throughput.png`` (audio
seconds per second and open streams over time), ``stages.png`` (server per-stage
p50/p99 from ChunkTraces), ``resources.png`` (client/server CPU and RSS over time).
Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global state) at
90 dpi, a few tens of KB each. Imports matplotlib lazily (only when plotting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SIZE = (6.4, 3.4)  # inches
DPI = 90


def _figure(rows: int = 1) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(SIZE[0], SIZE[1] * (1 if rows == 1 else 1.6)), dpi=DPI,
                 layout="constrained")
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    return path


def _title(report: dict[str, Any]) -> str:
    cfg = report["config"]
    rt = cfg.get("realtime_factor")
    pace = "flood" if rt is None else f"paced x{rt:g}"
    return f"seamcut bench: {cfg['mode']}, {cfg['chunk_ms']} ms chunks, {pace}"


def plot_latency_vs_streams(report: dict[str, Any], path: Path) -> Path | None:
    ramp = report.get("ramp")
    if not ramp or not ramp["steps"]:
        return None
    steps = ramp["steps"]
    n = [s["streams"] for s in steps]
    fig = _figure(2)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    for key, style in (("p50", "o-"), ("p99", "s-")):
        ax1.plot(n, [s["ack_latency_ms"][key] for s in steps], style, label=f"ack {key}")
        ax2.plot(n, [s["cut_finalization_latency_ms"][key] for s in steps], style,
                 label=f"cut {key}")
    limits = ramp["limits"]
    ax1.axhline(limits["ack_p99_ms"], color="red", lw=0.8, ls="--", label="ack p99 limit")
    if limits["cut_p99_ms"] is not None:
        ax2.axhline(limits["cut_p99_ms"], color="red", lw=0.8, ls="--", label="cut p99 limit")
    if ramp["knee_streams"]:
        for ax in (ax1, ax2):
            ax.axvline(ramp["knee_streams"], color="gray", lw=0.8, ls=":")
    ax1.set_ylabel("ack latency (ms)")
    ax2.set_ylabel("cut finalisation (ms)")
    ax2.set_xlabel("concurrent streams")
    ax1.set_title(_title(report) + f" — knee {ramp['knee_streams']}", fontsize=9)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_latency_over_time(report: dict[str, Any], path: Path) -> Path | None:
    pts = report["throughput"]["series"]
    if not pts:
        return None
    fig = _figure()
    ax = fig.subplots()
    t = [p["t"] for p in pts]
    ax.plot(t, [p["ack_p50_ms"] for p in pts], label="ack p50")
    ax.plot(t, [p["ack_p99_ms"] for p in pts], label="ack p99")
    ax.axvline(report["window"]["start_s"], color="gray", lw=0.8, ls=":", label="warm-up end")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ms")
    ax.set_title(_title(report), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_throughput(report: dict[str, Any], path: Path) -> Path | None:
    pts = report["throughput"]["series"]
    if not pts:
        return None
    fig = _figure()
    ax = fig.subplots()
    t = [p["t"] for p in pts]
    ax.plot(t, [p["audio_seconds_per_second"] for p in pts], color="C0")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("audio s / wall s", color="C0")
    ax2 = ax.twinx()
    ax2.step(t, [p["streams"] for p in pts], where="post", color="C1")
    ax2.set_ylabel("open streams", color="C1")
    ax.set_title(_title(report), fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_stages(report: dict[str, Any], path: Path) -> Path | None:
    stages = {k: v for k, v in (report.get("stages_ms") or {}).items() if v["count"]}
    if not stages:
        return None
    fig = _figure()
    ax = fig.subplots()
    names = list(stages)
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], [stages[n]["p50"] for n in names], height=0.4, label="p50")
    ax.barh([i - 0.2 for i in y], [stages[n]["p99"] for n in names], height=0.4, label="p99")
    ax.set_yticks(list(y), names)
    ax.set_xlabel("ms per block (server ChunkTrace)")
    batch = report.get("batch_size") or {}
    ax.set_title(_title(report) + f" — VAD batch p50 {batch.get('p50')}, max "
                 f"{batch.get('max')}", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_resources(report: dict[str, Any], path: Path) -> Path | None:
    res = report.get("resources") or {}
    groups = {k: v["series"] for k, v in res.items() if v and v["series"]}
    if not groups:
        return None
    fig = _figure(2)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    for who, pts in groups.items():
        t = [p["t"] for p in pts]
        ax1.plot(t, [p["cpu_percent"] for p in pts], label=who)
        ax2.plot(t, [p["rss_mib"] for p in pts], label=who)
    ax1.set_ylabel("CPU % of a core")
    ax2.set_ylabel("RSS (MiB)")
    ax2.set_xlabel("time (s)")
    ax1.set_title(_title(report), fontsize=9)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def write_plots(report: dict[str, Any], directory: str | Path) -> list[Path]:
    """Draw every plot that the report has data for into ``directory``; the paths."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if "throughput" not in report:  # an --idle report has no time series
        return []
    made = [
        plot_latency_vs_streams(report, out / "latency_vs_streams.png"),
        plot_latency_over_time(report, out / "latency_over_time.png"),
        plot_throughput(report, out / "throughput.png"),
        plot_stages(report, out / "stages.png"),
        plot_resources(report, out / "resources.png"),
    ]
    return [p for p in made if p is not None]
