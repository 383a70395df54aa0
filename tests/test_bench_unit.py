"""seamcut.bench's pure parts: statistics, latency definitions (fake clock), ramp, report."""

from __future__ import annotations

import argparse
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from seamcut.bench import cli as bench_cli
from seamcut.bench import render
from seamcut.bench.config import BenchConfig, BenchConfigError, Limits, RampSpec
from seamcut.bench.idle import IdleResult
from seamcut.bench.metrics import CutKindCode, StreamMeter
from seamcut.bench.ramp import Step, Verdict, judge, knee, knee_step, should_continue
from seamcut.bench.recording import (
    ErrorSample,
    Samples,
    SeriesPoint,
    StreamMark,
    WindowStats,
    series,
    window_stats,
)
from seamcut.bench.report import (
    PERCENTILE_KEYS,
    SUMMARY_KEYS,
    build_idle_report,
    build_report,
)
from seamcut.bench.runner import RunResult, ServerInfo, live_line
from seamcut.bench.source import LoopedAudio, stream_offset
from seamcut.bench.stats import distribution, nearest_rank
from seamcut.client.audio import AudioInfo

pytestmark = pytest.mark.unit

PAUSE, END = CutKindCode.PAUSE, CutKindCode.END


# ---------------------------------------------------------------- percentiles


def test_nearest_rank_percentiles_of_1_to_100() -> None:
    d = distribution(float(v) for v in range(100, 0, -1))  # unsorted input
    assert (d.count, d.p50, d.p90, d.p99, d.max, d.min, d.mean) == (
        100, 50.0, 90.0, 99.0, 100.0, 1.0, 50.5)


def test_percentiles_are_observed_values_never_interpolated() -> None:
    d = distribution([1.0, 2.0, 10.0])
    assert (d.p50, d.p90, d.p99, d.max) == (2.0, 10.0, 10.0, 10.0)
    one = distribution([7.5])
    assert (one.p50, one.p99, one.max, one.min) == (7.5, 7.5, 7.5, 7.5)
    # 1 outlier in 100 is the max only: p99 is the 99th smallest.
    d = distribution([1.0] * 99 + [1000.0])
    assert (d.p99, d.max) == (1.0, 1000.0)
    # ... 2 in 100 reach p99.
    assert distribution([1.0] * 98 + [1000.0] * 2).p99 == 1000.0


def test_nearest_rank_edges() -> None:
    s = np.array([1.0, 2.0, 3.0, 4.0])
    assert [nearest_rank(s, q) for q in (0, 25, 26, 50, 75, 100)] == [1, 1, 2, 2, 3, 4]
    assert nearest_rank(np.arange(1.0, 101.0), 29) == 29.0  # float rounding of 0.29 * 100
    with pytest.raises(ValueError):
        nearest_rank(np.array([]), 50)
    with pytest.raises(ValueError):
        nearest_rank(s, 101)


def test_empty_distribution_is_null_not_zero() -> None:
    d = distribution([])
    assert d.count == 0
    assert d.to_json() == {"count": 0, "p50": None, "p90": None, "p99": None, "max": None,
                           "min": None, "mean": None}
    with pytest.raises(ValueError):
        distribution([1.0, math.nan])


# ---------------------------------------------------------------- ack latency


def test_ack_latency_is_first_progress_with_last_seq_at_or_after_seq() -> None:
    m = StreamMeter()
    m.set_lookahead(0)
    for seq, t in enumerate((10.000, 10.020, 10.040)):
        assert m.sent(seq, 320, t) == []
    assert m.oldest_unacked() == 10.000
    acks, delta = m.progress(1, 0, 10.050)
    assert [(a.seq, round(a.latency_ms, 6)) for a in acks] == [(0, 50.0), (1, 30.0)]
    assert delta == 0
    # A later Progress for the same seq (e.g. after a block) acknowledges nothing again.
    assert m.progress(1, 0, 10.060)[0] == []
    acks, _ = m.progress(2, 0, 10.070)
    assert [(a.seq, round(a.latency_ms, 6), a.sent_at) for a in acks] == [(2, 30.0, 10.040)]
    assert m.oldest_unacked() is None


def test_progress_processed_delta_is_monotonic() -> None:
    m = StreamMeter()
    assert m.progress(0, 5120, 1.0)[1] == 5120
    assert m.progress(0, 5120, 1.1)[1] == 0
    assert m.progress(1, 10240, 1.2)[1] == 5120
    assert m.progress(1, 9000, 1.3)[1] == 0  # never negative


def test_chunks_must_be_recorded_in_order() -> None:
    m = StreamMeter()
    m.sent(0, 10, 0.0)
    with pytest.raises(ValueError):
        m.sent(2, 10, 0.1)
    m.end_of_audio()
    with pytest.raises(ValueError):
        m.sent(1, 10, 0.2)


# ---------------------------------------------------------------- finalisation latency


def _meter(lookahead: int = 100, chunk: int = 50, chunks: int = 0) -> StreamMeter:
    """Chunk k (frames [50k, 50k + 50)) is sent at t = k seconds."""
    m = StreamMeter()
    m.set_lookahead(lookahead)
    for k in range(chunks):
        m.sent(k, chunk, float(k))
    return m


def test_cut_latency_from_the_chunk_that_completes_cut_plus_lookahead() -> None:
    m = _meter(chunks=6)  # ends 50, 100, ..., 300
    (c,) = m.cut(120, PAUSE, 5.5)  # target 220 -> chunk 4 (ends at 250), sent at t=4
    assert (c.ref_at, round(c.latency_ms, 6), c.clamped, c.kind) == (4.0, 1500.0, False, PAUSE)
    (c,) = m.cut(150, PAUSE, 5.5)  # target 250 exactly: chunk 4 still completes it
    assert c.ref_at == 4.0
    (c,) = m.cut(151, PAUSE, 5.5)  # target 251: needs chunk 5
    assert c.ref_at == 5.0
    (c,) = m.cut(-100, PAUSE, 5.5)  # target 0: the first chunk
    assert c.ref_at == 0.0


def test_early_cut_waits_for_its_reference_chunk_and_is_negative() -> None:
    m = _meter(chunks=3)  # 150 frames sent by t=2
    assert m.cut(120, PAUSE, 2.5) == []  # target 220 not sent yet
    assert m.sent(3, 50, 3.0) == []  # 200 frames: still short
    (c,) = m.sent(4, 50, 4.0)  # 250 frames: completes 220
    assert (c.ref_at, c.received_at, round(c.latency_ms, 6), c.clamped) == (
        4.0, 2.5, -1500.0, False)


def test_end_cut_is_clamped_to_the_final_chunk() -> None:
    m = _meter(chunks=4)  # 200 frames, final chunk at t=3
    assert m.cut(200, END, 3.2) == []  # END at total frames: target 300 is never sent
    (c,) = m.end_of_audio()
    assert (c.kind, c.ref_at, round(c.latency_ms, 6), c.clamped) == (END, 3.0, 200.0, True)
    # Cuts arriving after the end of audio are measured at once, also clamped.
    (c,) = m.cut(180, PAUSE, 3.5)
    assert (c.ref_at, round(c.latency_ms, 6), c.clamped) == (3.0, 500.0, True)
    # An END cut can beat the final chunk's send time only by a clock error: negative kept.
    m2 = _meter(chunks=2)
    assert m2.cut(100, END, 0.5) == []
    (c,) = m2.end_of_audio()
    assert round(c.latency_ms, 6) == -500.0


def test_cut_needs_the_lookahead_and_start_sample_offsets_positions() -> None:
    with pytest.raises(ValueError):
        StreamMeter().cut(10, PAUSE, 0.0)
    m = StreamMeter(start_sample=1000)
    m.set_lookahead(100)
    for k in range(6):
        m.sent(k, 50, float(k))
    (c,) = m.cut(1120, PAUSE, 5.0)  # stream position 120 -> target 220 -> chunk 4
    assert c.ref_at == 4.0 and c.sample == 1120
    empty = StreamMeter()
    empty.set_lookahead(10)
    empty.end_of_audio()
    assert empty.cut(0, END, 1.0) == []  # no audio at all: nothing to measure from


# ---------------------------------------------------------------- windows


def _samples() -> Samples:
    s = Samples()
    m = _meter(lookahead=0, chunks=0)
    for k in range(10):  # one chunk per second, acked 5 ms later
        s.add_sent(float(k), 1.0)
        s.add_cuts(m.sent(k, 50, float(k)))
        acks, delta = m.progress(k, 50 * (k + 1), k + 0.005)
        s.add_acks(acks)
        s.add_processed(k + 0.005, delta / 1000)
        s.add_trace(k + 0.01, 1.0, 2.0, 0.5, 3.5, 4)
    s.add_cuts(m.cut(220, PAUSE, 5.5))  # ref chunk 4 (t=4): 1500 ms
    s.add_cuts(m.cut(260, PAUSE, 5.1))  # ref chunk 5 (t=5): 100 ms
    s.marks += [StreamMark(t=0.0, stream=0, what="open"), StreamMark(t=9.5, stream=0, what="end")]
    s.errors.append(ErrorSample(t=9.0, stream=0, code="UNAVAILABLE", details="x"))
    return s


def test_window_counts_samples_by_reference_time() -> None:
    s = _samples()
    w = window_stats(s, 2.0, 6.0, streams=1)  # chunks 2..5
    assert (w.messages, w.ack_ms.count, w.seconds) == (4, 4, 4.0)
    assert round(w.ack_ms.p99 or 0, 6) == 5.0
    assert w.cut_ms.count == 2 and round(w.cut_ms.max or 0, 6) == 1500.0
    assert w.cuts_by_kind == {"pause": 2, "forced": 0, "end": 0}
    assert round(w.audio_seconds, 9) == 0.2 and round(w.audio_seconds_per_second, 9) == 0.05
    assert w.stages_ms["vad"].p50 == 2.0 and w.batch_size.max == 4.0
    assert w.errors == 0  # the error at t=9 is outside ...
    w = window_stats(s, 2.0, 6.0, streams=1, errors_from=-math.inf, errors_to=math.inf)
    assert (w.errors, w.errors_by_code) == (1, {"UNAVAILABLE": 1})  # ... unless asked
    w = window_stats(s, 4.5, 5.0, streams=1)  # no cut's reference falls in here
    assert w.cut_ms.count == 0 and w.cut_ms.p99 is None


def test_samples_take_extend_and_pickle() -> None:
    s = _samples()
    shard = s.take()
    assert len(s.cols["sent_t"]) == 0 and not s.errors and len(shard.cols["sent_t"]) == 10
    copy = pickle.loads(pickle.dumps(shard))
    merged = Samples()
    merged.extend(copy)
    merged.extend(_samples())
    assert len(merged.cols["ack_ms"]) == 20 and len(merged.errors) == 2
    assert list(copy.cols["cut_kind"]) == list(shard.cols["cut_kind"])


def test_series_bins() -> None:
    pts = series(_samples(), 0.0, 10.0, 2.0)
    assert [p.t for p in pts] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert [p.messages_per_second for p in pts] == [1.0] * 5
    assert pts[0].streams == 1 and pts[0].ack_p99_ms == 5.0
    assert len(series(_samples(), 0.0, 9.9, 2.0)) == 4  # whole bins only


# ---------------------------------------------------------------- ramp


def _stats(ack_p99: float = 5.0, cut_p99: float | None = 200.0, errors: int = 0,
           streams: int = 8) -> WindowStats:
    s = Samples()
    for v in (1.0, ack_p99):
        s.add_sent(0.5, math.nan)
        s.cols["ack_t"].append(0.5)
        s.cols["ack_ms"].append(v)
    if cut_p99 is not None:
        s.cols["cut_t"].append(0.5)
        s.cols["cut_ms"].append(cut_p99)
        s.cols["cut_kind"].append(0)
        s.cols["cut_clamped"].append(0)
    s.errors += [ErrorSample(t=0.5, stream=i, code="RESOURCE_EXHAUSTED", details="")
                 for i in range(errors)]
    return window_stats(s, 0.0, 1.0, streams=streams)


def test_judge_applies_each_limit() -> None:
    lim = Limits()
    assert judge(_stats(), lookahead_ms=1048, limits=lim) == Verdict(passed=True, reasons=())
    v = judge(_stats(ack_p99=50.5), lookahead_ms=1048, limits=lim)
    assert not v.passed and v.reasons[0].startswith("p99 ack 50.5 ms > 50 ms")
    assert judge(_stats(ack_p99=50.0), lookahead_ms=1048, limits=lim).passed  # <= passes
    v = judge(_stats(cut_p99=1148.5), lookahead_ms=1048, limits=lim)
    assert not v.passed and "cut finalisation" in v.reasons[0]
    assert judge(_stats(cut_p99=1148.0), lookahead_ms=1048, limits=lim).passed
    assert judge(_stats(cut_p99=None), lookahead_ms=1048, limits=lim).passed
    v = judge(_stats(errors=2), lookahead_ms=1048, limits=lim)
    assert v.reasons == ("2 stream error(s): RESOURCE_EXHAUSTED x2",)
    v = judge(_stats(), lookahead_ms=1048, limits=lim, oldest_unacked_age_ms=900)
    assert not v.passed and "unacknowledged" in v.reasons[0]
    assert not judge(_stats(ack_p99=20), lookahead_ms=1048,
                     limits=Limits(ack_p99_ms=10)).passed


def _step(n: int, passed: bool) -> Step:
    return Step(streams=n, stats=_stats(streams=n),
                verdict=Verdict(passed=passed, reasons=() if passed else ("x",)))


def test_knee_is_the_last_passing_step_before_the_first_failure() -> None:
    steps = [_step(32, True), _step(64, True), _step(96, False), _step(128, True)]
    assert knee(steps) == 64
    assert knee_step(steps) is steps[1]
    assert knee([_step(32, False)]) == 0
    assert knee_step([_step(32, False), _step(64, True)]) is not None
    assert knee([_step(32, True), _step(64, True)]) == 64
    assert knee([]) == 0 and knee_step([]) is None
    counts = [32, 64, 96]
    assert should_continue([], counts)
    assert should_continue(steps[:2], counts)
    assert not should_continue(steps[:3], counts)
    assert not should_continue([_step(32, True), _step(64, True), _step(96, True)], counts)


def test_ramp_spec_parse_and_counts() -> None:
    r = RampSpec.parse("32:32:15")
    assert (r.start, r.step, r.every_s) == (32, 32, 15.0)
    assert r.counts(128) == [32, 64, 96, 128]
    assert r.counts(100) == [32, 64, 96, 100]
    assert RampSpec.parse("8:4:2.5").counts(8) == [8]
    for bad in ("32:32", "a:1:1", "0:1:1", "1:0:1", "1:1:0", "1:1:nan"):
        with pytest.raises(BenchConfigError):
            RampSpec.parse(bad)


# ---------------------------------------------------------------- config and CLI


def test_config_validation_names_the_option() -> None:
    cases = [
        ({"streams": 0}, "--streams"), ({"chunk_ms": 0}, "--chunk-ms"),
        ({"chunk_ms": 5001}, "--chunk-ms"), ({"duration_s": 0}, "--duration"),
        ({"realtime_factor": 0.0}, "--realtime"), ({"processes": 3, "streams": 2}, "--processes"),
        ({"ramp": RampSpec(start=8, step=1, every_s=5), "streams": 4}, "--ramp"),
        ({"ramp": RampSpec(start=1, step=1, every_s=2), "streams": 4, "warmup_s": 2},
         "--warmup"),
    ]
    for kwargs, option in cases:
        with pytest.raises(BenchConfigError, match=option):
            BenchConfig(**kwargs)  # type: ignore[arg-type]


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    bench_cli.add_arguments(p)
    return p.parse_args(list(argv))


def test_cli_arguments() -> None:
    cfg = bench_cli.config_from_args(_parse("a.wav", "b.flac", "--streams", "8", "--realtime"))
    assert (cfg.files, cfg.streams, cfg.realtime_factor, cfg.chunk_ms) == (
        ("a.wav", "b.flac"), 8, 1.0, 20)
    cfg = bench_cli.config_from_args(_parse("--realtime", "2.5", "--ramp", "1:1:3",
                                            "--streams", "4", "--max-p99-ms", "20"))
    assert cfg.realtime_factor == 2.5 and cfg.ramp is not None and cfg.limits.ack_p99_ms == 20
    assert not cfg.check_limits  # a ramp reports its knee instead of failing the run
    assert bench_cli.config_from_args(_parse("--max-p99-ms", "20")).check_limits
    assert bench_cli.config_from_args(_parse()).realtime_factor is None  # flood
    with pytest.raises(SystemExit):
        _parse("--realtime", "file.wav")  # the factor is taken: a clear error, not a file


def test_seamcut_cli_has_bench(capsys: pytest.CaptureFixture[str]) -> None:
    from seamcut.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    assert "--ramp START:STEP:EVERY_S" in capsys.readouterr().out


def test_cli_rejects_bad_options_with_exit_2(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_cli.main(["--streams", "0"]) == 2
    assert "--streams" in capsys.readouterr().err
    assert bench_cli.main([str(tmp_path / "missing.wav")]) == 2
    assert bench_cli.main(["--idle", "--streams", "2"]) == 2  # needs a server pid
    assert bench_cli.main(["--json", str(tmp_path / "no" / "r.json")]) == 2


# ---------------------------------------------------------------- sources


def test_looped_source_wraps_and_streams_differ() -> None:
    frames = np.arange(100, dtype=np.int16).reshape(-1, 1)
    info = AudioInfo(path=Path("x.wav"), format="WAV", subtype="PCM_16", sample_rate_hz=1000,
                     channels=1, frames=100)
    src = LoopedAudio.from_frames(frames, info, chunk_ms=30)
    assert src.chunk_frames == 30
    got = np.frombuffer(src.chunk(90, 0), "<i2")
    assert got.tolist() == [*range(90, 100), *range(0, 20)]
    assert np.frombuffer(src.chunk(90, 1), "<i2").tolist() == list(range(20, 50))
    offsets = [stream_offset(i, 100) for i in range(8)]
    assert len(set(offsets)) == 8 and all(0 <= o < 100 for o in offsets)
    x = src.mono_float(95, 10)
    assert np.allclose(x * 32768, [95, 96, 97, 98, 99, 0, 1, 2, 3, 4])
    long_chunk = LoopedAudio.from_frames(frames, info, chunk_ms=250)  # longer than the file
    assert np.frombuffer(long_chunk.chunk(50, 0), "<i2").tolist()[:60] == [
        *range(50, 100), *range(0, 10)]


# ---------------------------------------------------------------- report keys


def _result(**over: object) -> RunResult:
    w = _stats()
    kw: dict[str, object] = dict(
        cfg=BenchConfig(streams=8, realtime_factor=1.0), target="127.0.0.1:1", window=w,
        steps=(), knee_streams=None, series=(),
        server=ServerInfo(target="127.0.0.1:1", lookahead_ms=1048, lookahead_samples=16768,
                          device="cpu", version="0.1.0"),
        client_resources=(), server_resources=None, streams_opened=8, streams_connected=8,
        errors=(), chunks_per_stream={0: 10}, verdict=None, wall_seconds=3.0, t0=0.0,
    )
    kw.update(over)
    return RunResult(**kw)  # type: ignore[arg-type]


TOP_KEYS = {"schema", "summary", "date", "command", "command_line", "config", "machine",
            "software",
            "server", "window", "messages", "throughput", "cuts", "stages_ms", "batch_size",
            "errors", "streams", "resources", "ramp", "compare", "idle", "verdict",
            "wall_seconds", "definitions"}


def test_json_report_keys_are_stable() -> None:
    rep = build_report(_result(), argv=["seamcut", "bench", "--streams", "8"], date="d",
                       machine={"cpu_count": 2})
    json.dumps(rep, allow_nan=False)  # plain JSON: no NaN or Infinity anywhere
    assert set(rep) == TOP_KEYS
    assert SUMMARY_KEYS == ("streams", "errors", "audio_seconds_per_second", "lookahead_ms",
                            "ack_latency_ms", "cut_finalization_latency_ms")
    assert tuple(rep["summary"]) == SUMMARY_KEYS
    for key in ("ack_latency_ms", "cut_finalization_latency_ms"):
        assert set(PERCENTILE_KEYS) <= set(rep["summary"][key])
    s = rep["summary"]
    assert (s["streams"], s["errors"], s["lookahead_ms"]) == (8, 0, 1048)
    assert s["ack_latency_ms"]["p99"] == 5.0 and s["cut_finalization_latency_ms"]["max"] == 200
    assert rep["command_line"] == "seamcut bench --streams 8" and rep["schema"] == "seamcut.bench/1"
    ramp = build_report(
        _result(cfg=BenchConfig(streams=16, ramp=RampSpec(start=8, step=8, every_s=5)),
                steps=(_step(8, True), _step(16, False)), knee_streams=8),
        argv=["x"], date="d", machine={})
    assert ramp["summary"]["streams"] == 8 and ramp["ramp"]["knee_streams"] == 8
    assert [st["passed"] for st in ramp["ramp"]["steps"]] == [True, False]
    assert ramp["ramp"]["limits"] == {"ack_p99_ms": 50.0, "cut_p99_ms": 1148.0, "errors": 0}
    idle = build_idle_report(
        IdleResult(streams=4, opened=4, rss_before_mib=100, rss_open_mib=101,
                   rss_after_close_mib=100.5, errors_by_code={}),
        cfg_json={}, argv=["x"], date="d", machine={}, target="t")
    assert tuple(idle["summary"]) == SUMMARY_KEYS
    assert idle["idle"]["server_rss_per_idle_stream_kib"] == 256.0


def test_table_and_markdown_show_the_figures() -> None:
    rep = build_report(_result(), argv=["seamcut", "bench"], date="2026-11-26",
                       machine={"cpu_count": 2, "cpu_model": "X", "ram_gib": 1, "python": "3",
                                "platform": "p"})
    table = render.terminal_table(rep)
    assert "ack latency (ms)" in table and "1048" in table
    # Paced x1 with 8 streams offers 8 audio s/s; the figure can be negative, so it is
    # named for what it is, not "latency".
    assert "offered 8" in table and "cut vs. look-ahead bound (ms)" in table
    assert "finalisation latency" not in table
    md = render.markdown(rep)
    assert md.startswith("# seamcut bench") and "| ack latency (ms) | 1.0 | 5.0 | 5.0 |" in md
    assert "| cut vs. look-ahead bound (ms) |" in md and "negative = before it" in md
    line = live_line(12.3, _stats(), 0)
    assert "streams    8" in line and "ack p99 5.0 ms" in line
    assert "cut vs bound p99 200.0 ms" in line


def test_partly_connected_run_reports_the_streams_that_never_got_ready() -> None:
    errs = tuple(ErrorSample(t=0.1, stream=i, code="RESOURCE_EXHAUSTED", details="full")
                 for i in (5, 6, 7))
    rep = build_report(_result(streams_connected=5, errors=errs), argv=["x"], date="d",
                       machine={})
    assert rep["streams"] == {"opened": 8, "failed": 3, "connected": 5}
    assert rep["summary"]["errors"] == 3
    table = render.terminal_table(rep)
    assert "8 (5 of 8 got Ready)" in table and "RESOURCE_EXHAUSTED" in table


# ---------------------------------------------------------------- plots


def _series(rates: list[float], streams: list[int]) -> tuple[SeriesPoint, ...]:
    return tuple(SeriesPoint(t=float(i), streams=n, messages_per_second=50.0 * n,
                             audio_seconds_per_second=r, ack_p50_ms=2.0 + i % 2,
                             ack_p99_ms=9.0 + i % 3)
                 for i, (r, n) in enumerate(zip(rates, streams, strict=True)))


def _report(**over: object) -> dict[str, object]:
    return build_report(_result(**over), argv=["x"], date="d", machine={})


def _hlines(ax: object) -> dict[str, float]:
    """Labelled ``axhline``s of ``ax`` (x spans the axes, 0 .. 1): label -> y."""
    out = {}
    for line in ax.get_lines():  # type: ignore[attr-defined]
        x, y = list(line.get_xdata()), list(line.get_ydata())
        if x == [0, 1] and y[0] == y[1] and not line.get_label().startswith("_"):
            out[line.get_label()] = float(y[0])
    return out


def test_throughput_plot_starts_at_zero_and_draws_the_offered_load() -> None:
    from seamcut.bench import plots

    # A steady 4 paced streams: 3.84 .. 4.16 audio s/s from block granularity.
    rep = _report(cfg=BenchConfig(streams=4, realtime_factor=1.0),
                  series=_series([3.84, 4.16, 3.84, 4.16, 4.0], [4] * 5))
    fig = plots.throughput_figure(rep)
    assert fig is not None
    ax, ax2 = fig.axes
    bottom, top = ax.get_ylim()
    assert bottom == 0.0 and top == pytest.approx(4.16 * plots.HEADROOM)
    assert _hlines(ax) == {"offered: 4 streams × 1 real time": 4.0}
    # Streams on the twin axis are scaled by the factor: 4 streams sit on the offer.
    assert ax2.get_ylim() == pytest.approx((0.0, top))
    # Paced at x2: the offer is 8 audio s/s, above the data, and stays on the axis.
    rep2 = _report(cfg=BenchConfig(streams=4, realtime_factor=2.0),
                   series=_series([3.0, 3.0], [4, 4]))
    fig2 = plots.throughput_figure(rep2)
    assert fig2 is not None
    assert fig2.axes[0].get_ylim() == pytest.approx((0.0, 8.0 * plots.HEADROOM))
    assert fig2.axes[1].get_ylim() == pytest.approx((0.0, 4.0 * plots.HEADROOM))
    # Flooding offers no rate: no target line, both axes still from 0.
    flood = plots.throughput_figure(_report(cfg=BenchConfig(streams=4),
                                            series=_series([50.0, 60.0], [4, 4])))
    assert flood is not None and _hlines(flood.axes[0]) == {}
    assert [a.get_ylim()[0] for a in flood.axes] == [0.0, 0.0]
    assert plots.throughput_figure(_report(series=())) is None


def test_latency_plots_start_at_zero_and_show_applied_limits() -> None:
    from seamcut.bench import plots

    pts = _series([4.0] * 3, [4] * 3)
    fig = plots.latency_over_time_figure(_report(series=pts))
    assert fig is not None
    ax = fig.axes[0]
    assert ax.get_ylim() == pytest.approx((0.0, 11.0 * plots.HEADROOM))  # p99 max 11
    assert _hlines(ax) == {}  # no limit applied on a plain fixed run
    limited = plots.latency_over_time_figure(_report(
        series=pts, cfg=BenchConfig(streams=8, realtime_factor=1.0, check_limits=True,
                                    limits=Limits(ack_p99_ms=20.0))))
    assert limited is not None
    assert _hlines(limited.axes[0]) == {"ack p99 limit": 20.0}
    assert limited.axes[0].get_ylim() == pytest.approx((0.0, 20.0 * plots.HEADROOM))


def test_ramp_plot_acks_from_zero_and_cuts_around_the_look_ahead_bound() -> None:
    from seamcut.bench import plots

    early = Samples()  # cuts before the bound: -700 and -300 ms
    for v in (-700.0, -300.0):
        early.cols["cut_t"].append(0.5)
        early.cols["cut_ms"].append(v)
        early.cols["cut_kind"].append(0)
        early.cols["cut_clamped"].append(0)
        early.add_sent(0.5, math.nan)
        early.cols["ack_t"].append(0.5)
        early.cols["ack_ms"].append(12.0)
    w = window_stats(early, 0.0, 1.0, streams=4)
    steps = (Step(streams=4, stats=w, verdict=Verdict(passed=True, reasons=())),
             Step(streams=8, stats=w, verdict=Verdict(passed=True, reasons=())))
    rep = _report(cfg=BenchConfig(streams=8, realtime_factor=1.0,
                                  ramp=RampSpec(start=4, step=4, every_s=5)),
                  steps=steps, knee_streams=8, series=_series([4.0, 8.0], [4, 8]))
    fig = plots.latency_vs_streams_figure(rep)
    assert fig is not None
    ack_ax, cut_ax = fig.axes
    assert ack_ax.get_ylim() == pytest.approx((0.0, 50.0 * plots.HEADROOM))  # the limit
    lo, hi = cut_ax.get_ylim()
    assert lo < -700.0 and hi > 1148.0  # the early cuts and the limit are both on it
    assert _hlines(cut_ax) == {"look-ahead bound": 0.0, "cut p99 limit": 1148.0}
    assert cut_ax.get_xlim()[0] == 0.0
    assert "look-ahead" in cut_ax.get_ylabel()
    # A paced ramp offers streams x FACTOR per bin: drawn as stairs, not one line.
    tp = plots.throughput_figure(rep)
    assert tp is not None and tp.axes[0].get_ylim()[0] == 0.0
    assert plots.offered_load(rep) is None


def test_stage_and_resource_plots_start_at_zero(tmp_path: Path) -> None:
    from seamcut.bench import plots
    from seamcut.bench.sysmon import ResourcePoint

    res = tuple(ResourcePoint(t=float(t), cpu_percent=80.0 + t, rss_mib=300.0 + t)
                for t in range(4))
    rep = _report(client_resources=res, server_resources=res,
                  window=window_stats(_samples(), 0.0, 10.0, streams=1),  # with traces
                  series=_series([4.0] * 2, [4] * 2))
    stages = plots.stages_figure(rep)
    assert stages is not None and stages.axes[0].get_xlim()[0] == 0.0
    resources = plots.resources_figure(rep)
    assert resources is not None
    cpu, rss = resources.axes
    assert cpu.get_ylim() == pytest.approx((0.0, 83.0 * plots.HEADROOM))
    assert rss.get_ylim() == pytest.approx((0.0, 303.0 * plots.HEADROOM))
    made = plots.write_plots(rep, tmp_path / "p")
    assert sorted(p.name for p in made) == ["latency_over_time.png", "resources.png",
                                            "stages.png", "throughput.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in made)


# ---------------------------------------------------------------- connecting


def test_security_flags_match_split_and_reach_the_clients(tmp_path: Path) -> None:
    import pickle as pk

    from seamcut.bench.load import SecureTransport, make_client, security_kwargs

    token = tmp_path / "token.txt"
    token.write_text("# a comment\nt0ken\n")
    cfg = bench_cli.config_from_args(_parse("--server", "h:1", "--token-file", str(token),
                                            "--tls"))
    assert isinstance(cfg.transport, SecureTransport)
    assert security_kwargs(cfg.transport) == {"tls": True, "tls_ca": None, "tls_cert": None,
                                              "tls_key": None, "token": "t0ken",
                                              "tls_server_name": None}
    assert cfg.to_json()["transport"]["token"] == "***"  # never written out
    # Worker processes get the config pickled: the extra fields travel with it.
    assert pk.loads(pk.dumps(cfg)).transport == cfg.transport
    client = make_client(cfg.transport)
    assert client.metadata == (("authorization", "Bearer t0ken"),)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    pinned = bench_cli.config_from_args(_parse("--tls-ca", str(ca)))
    assert pinned.to_json()["transport"]["tls_ca"] == str(ca)  # the path, never the PEM
    plain = bench_cli.config_from_args(_parse())
    assert security_kwargs(plain.transport)["tls"] is False
    assert make_client(plain.transport).metadata == ()


@pytest.mark.parametrize(("argv", "says"), [
    (("--token", "a", "--token-file", "t.txt"), "error: give --token or --token-file"),
    (("--tls-cert", "c.pem"), "error: "),  # the SDK's wording: the two go together
    (("--tls-ca", "missing.pem"), "error: "),
    (("--token", "two words"), "error: token: must be non-empty"),
])
def test_bad_security_flags_exit_2_with_one_line(argv: tuple[str, ...], says: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_cli.main(list(argv)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(says) and err.count("\n") == 1, err
    assert "Traceback" not in err and ("tls" in err or "token" in err)


def _err(code: str, details: str) -> ErrorSample:
    return ErrorSample(t=0.0, stream=0, code=code, details=details)


def test_connect_error_names_the_cause_in_one_line() -> None:
    refused = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
               "Failed to connect to remote host: Connection refused")
    msg, code = bench_cli.connect_error(_err("UNAVAILABLE", refused), "127.0.0.1:1")
    assert code == 4 and msg.startswith("error: cannot connect to 127.0.0.1:1 — is `seamcut "
                                        "serve` running there?")
    assert "Connection refused" in msg
    msg, code = bench_cli.connect_error(_err("UNAUTHENTICATED", "missing bearer\ntoken"),
                                        "h:1")
    assert code == 1 and msg.startswith("error: the server refused the credentials "
                                        "(UNAUTHENTICATED): missing bearer token")
    assert msg.endswith("give --token or --token-file")
    tls, code = bench_cli.connect_error(
        _err("UNAVAILABLE", "Ssl handshake failed: CERTIFICATE_VERIFY_FAILED"), "h:1")
    assert code == 4 and tls.startswith("error: TLS handshake with h:1 failed") and (
        "--tls-ca" in tls)
    full, code = bench_cli.connect_error(_err("RESOURCE_EXHAUSTED", "server full"), "h:1")
    assert code == 1 and "server full" in full
    odd, code = bench_cli.connect_error(_err("DRAIN_TIMEOUT", "no end"), "h:1")
    assert code == 1 and odd == "error: no stream got Ready from h:1 (DRAIN_TIMEOUT): no end"
    assert bench_cli.connect_error(None, "h:1")[0].startswith("error:")
    assert all("\n" not in m for m in (msg, tls, full, odd))


def test_help_documents_exit_codes_and_the_cut_figure(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_cli.main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes" in out and "no stream got Ready" in out and "130" in out
    assert "\n  4    no stream got Ready because no connection was made" in out
    assert "cut vs. look-ahead bound (ms)" in out and "Negative values are normal" in out
    assert "--token-file" in out and "--tls-cert" in out


def test_runner_gives_up_when_every_stream_ended_without_ready() -> None:
    from seamcut.bench.runner import Runner

    r = Runner(BenchConfig(streams=2), [], target="t", server_pid=None, live=None)
    assert not r.unreachable()  # nothing scheduled yet
    r._scheduled = 2
    r.rec.marks += [StreamMark(t=0.0, stream=i, what=w) for i in (0, 1) for w in ("open",)]
    assert not r.unreachable()  # still open
    r.rec.marks.append(StreamMark(t=0.1, stream=0, what="end"))
    assert not r.unreachable()
    r.rec.marks.append(StreamMark(t=0.1, stream=1, what="end"))
    assert r.unreachable()
    r.rec.marks.append(StreamMark(t=0.05, stream=1, what="ready"))
    assert not r.unreachable()  # one got Ready: a real (if failed) run, reported
