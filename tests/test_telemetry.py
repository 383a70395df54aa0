"""Telemetry: metrics, spans and trace context read back through the OpenTelemetry SDK's
in-memory readers; the Prometheus endpoint of a real ``seamcut serve`` (one process and
``--workers 2``); the JSON log format."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from importlib import resources
from typing import Any

import grpc
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from seamcut.bench.localserver import LocalServer
from seamcut.client import (
    AsyncClient,
    Client,
    CutEvent,
    ReadyEvent,
    StreamOptions,
    SummaryEvent,
    TraceEvent,
    read_audio,
)
from seamcut.server.config import AppConfig, TelemetryConfig
from seamcut.server.transport import app, metrics_export
from seamcut.server.transport.logs import JsonFormatter
from seamcut.server.transport.telemetry import Telemetry

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.helpers import serving

SAMPLE = str(resources.files("seamcut.samples") / "speech_en.flac")
HEX32 = re.compile(r"[0-9a-f]{32}")


@dataclasses.dataclass
class Captured:
    metrics: InMemoryMetricReader
    spans: InMemorySpanExporter
    telemetry: list[Telemetry]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    """In-process servers started in this test record into in-memory readers."""
    cap = Captured(InMemoryMetricReader(), InMemorySpanExporter(), [])
    ratio = 1.0

    def make(cfg: AppConfig) -> Telemetry:
        cfg = dataclasses.replace(cfg, telemetry=TelemetryConfig(trace_sample_ratio=ratio))
        tel = Telemetry(cfg, metric_readers=[cap.metrics],
                        span_processors=[SimpleSpanProcessor(cap.spans)])
        cap.telemetry.append(tel)
        return tel

    monkeypatch.setattr(app, "make_telemetry", make)
    return cap


def _speech(seconds: float) -> tuple[np.ndarray, int]:
    audio, rate, _ = read_audio(SAMPLE)
    return audio[: int(seconds * rate)], rate


def _blocks(audio: np.ndarray, rate: int, ms: int = 500) -> Iterator[np.ndarray]:
    step = rate * ms // 1000
    for i in range(0, len(audio), step):
        yield audio[i : i + step]


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Metric name -> its data points (attributes, value / count), one collection."""
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = list(m.data.data_points)
    return out


def _value(points: dict[str, list[Any]], name: str, **attrs: str) -> float:
    """The value (or histogram count) of the one point of ``name`` with ``attrs``."""
    found = [p for p in points.get(name, []) if dict(p.attributes) == attrs]
    assert len(found) == 1, (name, attrs, points.get(name))
    p = found[0]
    return float(p.count if hasattr(p, "count") else p.value)


def _stream_file(target: str, seconds: float) -> list[Any]:
    audio, rate = _speech(seconds)
    with Client(target) as client:
        return list(client.stream_cuts(
            StreamOptions(sample_rate_hz=rate, channels=audio.shape[1], request_id="t-1"),
            _blocks(audio, rate)))


@pytest.mark.integration
def test_stream_metrics_and_spans_in_process(captured: Captured) -> None:
    with serving() as srv:
        events = _stream_file(srv.target, 12.0)
        ready = next(e for e in events if isinstance(e, ReadyEvent))
        summary = events[-1]
        assert isinstance(summary, SummaryEvent) and summary.end_reason == "completed"
        traces = [e for e in events if isinstance(e, TraceEvent)]
        cuts = [e for e in events if isinstance(e, CutEvent) and e.kind != "end"]
        assert len(traces) == summary.blocks > 10 and cuts
        pts = _points(captured.metrics)
        text = generate_latest(captured.telemetry[0].registry).decode()

    assert _value(pts, "seamcut.streams.opened") == 1
    assert _value(pts, "seamcut.streams.admitted") == 1
    assert _value(pts, "seamcut.streams.ended", status="OK", mode="speech") == 1
    assert _value(pts, "seamcut.streams.open") == 0
    assert _value(pts, "seamcut.blocks.in_flight") == 0
    assert _value(pts, "seamcut.cut.final_latency", mode="speech") == len(cuts)
    # The client's own stream, in seconds of its audio.
    processed = _value(pts, "seamcut.audio.processed", mode="speech")
    assert processed == pytest.approx(summary.samples_processed / ready.config.sample_rate_hz)
    assert "seamcut.errors" not in pts and "seamcut.streams.rejected" not in pts
    # No engine processes, no GPU: no such series at all (not a fake zero).
    for absent in ("seamcut.engine.replays", "seamcut.gpu.memory_allocated",
                   "seamcut.gpu.fallbacks"):
        assert absent not in pts
    # The per-block histograms on the Prometheus registry: one value per block.
    for stage in ("queue_wait", "vad", "features", "total"):
        assert (f'seamcut_stage_duration_seconds_count{{mode="speech",stage="{stage}"}} '
                f"{float(summary.blocks)}") in text
    assert 'seamcut_stage_duration_seconds_count{mode="speech",stage="separation"}' not in text
    assert f'seamcut_batch_size_count{{mode="speech",stage="vad"}} {float(summary.blocks)}' in text
    assert "seamcut_streams_open 0.0" in text

    spans = captured.spans.get_finished_spans()
    (stream,) = [s for s in spans if s.name == "seamcut.v1.Seamcut/StreamCuts"]
    attrs = dict(stream.attributes or {})
    assert attrs["seamcut.session_id"] == ready.session_id
    assert attrs["seamcut.request_id"] == "t-1"
    assert attrs["seamcut.mode"] == "speech" and attrs["seamcut.device"] == "cpu"
    assert attrs["seamcut.format.sample_rate_hz"] == ready.config.sample_rate_hz
    assert attrs["seamcut.end_reason"] == "OK" and attrs["seamcut.engine_id"] == "inline"
    assert attrs["seamcut.instance_id"] == summary.instance_id
    assert stream.parent is None  # no traceparent: a new trace
    assert ready.trace_id == format(stream.context.trace_id, "032x")
    blocks = [s for s in spans if s.name == "block"]
    assert len(blocks) == summary.blocks
    assert all(b.parent is not None and b.parent.span_id == stream.context.span_id
               for b in blocks)
    stages = [s for s in spans if s.parent is not None and s.parent.span_id
              == blocks[0].context.span_id]
    assert {"queue_wait", "vad", "features"} <= {s.name for s in stages}
    assert all(_within(s, blocks[0]) for s in stages)


def _within(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.start_time is not None and child.end_time is not None
    assert parent.start_time is not None and parent.end_time is not None
    return parent.start_time <= child.start_time <= child.end_time <= parent.end_time


@pytest.mark.integration
def test_traceparent_round_trip(captured: Captured) -> None:
    # The caller's own SDK tracer, separate from the server's providers.
    client_exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(client_exporter))
    tracer = provider.get_tracer("test-client")
    audio, rate = _speech(3.0)

    async def run(target: str) -> list[Any]:
        async with AsyncClient(target) as client:
            with tracer.start_as_current_span("caller"):
                return [ev async for ev in client.stream_cuts(
                    StreamOptions(sample_rate_hz=rate, channels=audio.shape[1]),
                    list(_blocks(audio, rate)))]

    with serving() as srv:
        events = asyncio.run(run(srv.target))
        # The sync client too: its loop thread's tasks start in a copy of the
        # caller's context (call_soon_threadsafe), so they see the current span.
        with Client(srv.target) as sync_client, tracer.start_as_current_span("sync") as sp:
            sync_ready = next(iter(sync_client.stream_cuts(
                StreamOptions(sample_rate_hz=rate, channels=audio.shape[1]),
                list(_blocks(audio, rate)))))
            assert isinstance(sync_ready, ReadyEvent)
            assert sync_ready.trace_id == format(sp.get_span_context().trace_id, "032x")
    caller = next(s for s in client_exporter.get_finished_spans() if s.name == "caller")
    ready = events[0]
    assert isinstance(ready, ReadyEvent)
    (stream,) = [s for s in captured.spans.get_finished_spans()
                 if s.name == "seamcut.v1.Seamcut/StreamCuts"
                 and s.context.trace_id == caller.context.trace_id]
    assert stream.parent is not None and stream.parent.is_remote
    assert stream.parent.span_id == caller.context.span_id
    assert stream.context.trace_id == caller.context.trace_id
    assert ready.trace_id == format(caller.context.trace_id, "032x")
    # Outside a span the client sends no traceparent: a trace of the server's own.
    assert not trace.get_current_span().get_span_context().is_valid


@pytest.mark.integration
def test_refused_and_failed_streams_count_by_status(captured: Captured,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with serving() as srv, grpc.insecure_channel(srv.target) as ch:
        stub = pb_grpc.SeamcutStub(ch)
        bad = pb.ClientMessage(config=pb.StreamConfig(format=pb.AudioFormat(
            encoding=pb.PCM_S16LE, sample_rate_hz=1, channels=1)))
        with pytest.raises(grpc.RpcError) as err:
            list(stub.StreamCuts(iter([bad])))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        srv.running.servicer.draining = True  # refused at admission from now on
        with pytest.raises(grpc.RpcError) as err:
            list(stub.StreamCuts(iter([bad])))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        srv.running.servicer.draining = False
        pts = _points(captured.metrics)
    assert _value(pts, "seamcut.streams.opened") == 2
    assert _value(pts, "seamcut.streams.admitted") == 1
    assert _value(pts, "seamcut.streams.rejected", status="UNAVAILABLE") == 1
    assert _value(pts, "seamcut.streams.ended", status="INVALID_ARGUMENT", mode="unknown") == 1
    assert _value(pts, "seamcut.errors", status="INVALID_ARGUMENT") == 1
    assert _value(pts, "seamcut.errors", status="UNAVAILABLE") == 1
    spans = captured.spans.get_finished_spans()
    ends = sorted(str((s.attributes or {})["seamcut.end_reason"]) for s in spans)
    assert ends == ["INVALID_ARGUMENT", "UNAVAILABLE"]
    assert all(s.status.status_code is trace.StatusCode.ERROR for s in spans)


@pytest.mark.integration
def test_unsampled_stream_records_no_span_but_returns_its_trace_id(
        monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    monkeypatch.setattr(app, "make_telemetry", lambda cfg: Telemetry(
        dataclasses.replace(cfg, telemetry=TelemetryConfig(trace_sample_ratio=0.0)),
        span_processors=[SimpleSpanProcessor(exporter)]))
    with serving() as srv:
        events = _stream_file(srv.target, 2.0)
    assert isinstance(events[0], ReadyEvent) and HEX32.fullmatch(events[0].trace_id)
    assert exporter.get_finished_spans() == ()


# ---------------------------------------------------------------- real servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (labels exactly these)."""
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no {name}{labels} in:\n{text}")


@pytest.mark.integration
def test_prometheus_endpoint_and_json_logs_of_a_real_server() -> None:
    port = _free_port()
    with LocalServer(("--metrics-port", str(port), "--log-format", "json")) as srv:
        events = _stream_file(srv.target, 4.0)
        summary = events[-1]
        assert isinstance(summary, SummaryEvent)
        text = _scrape(port)
        log_text = srv.log_path.read_text()
    assert _sample(text, "seamcut_streams_ended_total", status="OK", mode="speech") == 1
    assert _sample(text, "seamcut_streams_open") == 0
    assert _sample(text, "seamcut_stage_duration_seconds_count", mode="speech",
                   stage="vad") == summary.blocks
    assert _sample(text, "seamcut_audio_processed_seconds_total", mode="speech") == \
        pytest.approx(summary.samples_processed / _speech(0)[1])
    # One JSON object per log line; the stream's own lines carry its ids.
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    assert lines and all({"timestamp", "level", "logger", "message"} <= set(r) for r in lines)
    (ended,) = [r for r in lines if r["message"].startswith("stream ended: OK")]
    ready = events[0]
    assert isinstance(ready, ReadyEvent)
    assert ended["session_id"] == ready.session_id and ended["request_id"] == "t-1"
    assert ended["trace_id"] == ready.trace_id and ended["level"] == "INFO"


@pytest.mark.integration
def test_one_scrape_shows_every_worker() -> None:
    port = _free_port()
    with LocalServer(("--workers", "2", "--metrics-port", str(port)), listeners=2) as srv:
        audio, rate = _speech(1.0)
        workers: dict[str, int] = {}
        deadline = time.monotonic() + 60
        # SO_REUSEPORT spreads connections: a new client (connection) per stream until
        # both workers served some.
        while (len(workers) < 2 or sum(workers.values()) < 4) and time.monotonic() < deadline:
            with Client(srv.target) as client:
                evs = list(client.stream_cuts(StreamOptions(sample_rate_hz=rate), _blocks(
                    audio[:, 0], rate)))
            summary = evs[-1]
            assert isinstance(summary, SummaryEvent)
            workers[summary.instance_id] = workers.get(summary.instance_id, 0) + 1
        assert len(workers) == 2, workers
        text = _scrape(port)
    total = sum(workers.values())
    assert _sample(text, "seamcut_streams_ended_total", status="OK", mode="speech") == total
    assert _sample(text, "seamcut_streams_opened_total") == total
    assert _sample(text, "seamcut_streams_open") == 0
    assert _sample(text, "seamcut_audio_processed_seconds_total", mode="speech") == \
        pytest.approx(total * 1.0, abs=0.2 * total)


# ---------------------------------------------------------------- units


@pytest.mark.unit
def test_aggregator_keeps_a_restarted_workers_counts() -> None:
    reads: dict[str, tuple[int, str]] = {}

    class Fake(metrics_export.WorkerAggregator):
        def _read(self, path: str) -> tuple[int, str]:
            if path not in reads:
                raise ConnectionRefusedError(path)
            return reads[path]

    def text(opened: float, open_now: float) -> str:
        return ("# TYPE seamcut_streams_opened_total counter\n"
                f"seamcut_streams_opened_total {opened}\n"
                "# TYPE seamcut_streams_open gauge\n"
                f"seamcut_streams_open {open_now}\n")

    agg = Fake(["w0", "w1"], CollectorRegistry())

    def now() -> tuple[float, float]:
        snap = agg.snapshot()
        return (snap["seamcut_streams_opened"].values[("seamcut_streams_opened_total", ())],
                snap["seamcut_streams_open"].values[("seamcut_streams_open", ())])

    reads.update(w0=(100, text(5, 2)), w1=(101, text(3, 1)))
    assert now() == (8, 3)
    del reads["w1"]  # worker 1 died: its counts stay, its open streams do not
    assert now() == (8, 2)
    reads["w1"] = (102, text(1, 1))  # ... and was restarted
    assert now() == (9, 3)
    reads["w0"] = (100, text(6, 0))  # a slow read of a live worker is not a death
    assert now() == (10, 1)


@pytest.mark.unit
def test_json_log_line() -> None:
    rec = logging.LogRecord("seamcut.x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    rec.session_id, rec.request_id, rec.trace_id = "s1", "r1", "0" * 32
    out = json.loads(JsonFormatter().format(rec))
    assert out["message"] == "a b" and out["level"] == "WARNING" and out["logger"] == "seamcut.x"
    assert (out["session_id"], out["request_id"], out["trace_id"]) == ("s1", "r1", "0" * 32)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", out["timestamp"])
    plain = json.loads(JsonFormatter().format(logging.LogRecord(
        "x", logging.INFO, __file__, 1, "no stream", (), None)))
    assert set(plain) == {"timestamp", "level", "logger", "message"}
