"""OpenTelemetry for one transport worker: metrics, a span per stream, trace context.

Telemetry lives in the transport, the top layer, because that is where everything it
reports meets: gRPC metadata (``traceparent``), the status a stream ends with (the
table in ``status.py``), the servicer's counters, and the session's per-block stage
times, which reach it through :class:`~seamcut.server.session.session.SessionObserver`
(an interface the session defines, so nothing below the transport imports
OpenTelemetry; engine processes and ``--offline`` never load it).

Metrics (names as Prometheus shows them; labels are status, mode and stage only):

* through the OpenTelemetry metrics API: streams opened, admitted, rejected (by
  status) and ended (by status and mode), errors by status, open streams
  (``seamcut_streams_open``), audio seconds processed, cut finalisation latency,
  blocks and engine requests in flight, queue depths, engine replays, GPU fallbacks,
  GPU memory (the last three only where the engine has them: no zero series);
* per block, the stage-latency and batch-size histograms are counted here in plain
  Python (:class:`FastHistogram`) and exported as Prometheus histograms: an
  OpenTelemetry ``Histogram.record`` costs 6-15 us on this machine and a block has
  up to ten values, so at a flood's ~2,000 blocks/s it alone would have taken 10 % of
  a core (docs/DESIGN.md, "Telemetry").

Export: :mod:`.metrics_export` (Prometheus; across worker processes).
"""

from __future__ import annotations

import bisect
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace import StatusCode as SpanStatus  # not grpc.StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from seamcut.server.config import AppConfig, StreamSpec
from seamcut.server.errors import ConfigError
from seamcut.server.events import ChunkTrace
from seamcut.server.transport.convert import instance_id

from seamcut import __version__

if TYPE_CHECKING:
    from seamcut.server.engine.client import EngineClient
    from seamcut.server.transport.servicer import SeamcutServicer

log = logging.getLogger(__name__)
SCOPE = "seamcut.server"
SHUTDOWN_S = 2.0  # the most a server's stop waits for its telemetry to be exported
STAGE_BOUNDS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                  2.5, 5.0, 10.0)
BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CUT_BOUNDS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
# ChunkTrace stage times, in the order the block passes through them (block spans
# lay their children out in this order). h2d/d2h/separation/ipc are 0 where they do
# not apply (CPU, SPEECH, in-process engine) and are then not recorded.
STAGES = ("queue_wait", "h2d", "separation", "vad", "features", "d2h", "ipc")
_OPTIONAL = frozenset(("h2d", "separation", "d2h", "ipc"))
_propagator = TraceContextTextMapPropagator()


class FastHistogram:
    """Cumulative fixed-bucket histograms keyed by label values, for the hot path.

    Written from the event loop only; read (``collect``) from the scrape thread. One
    writer, and ints and floats replaced whole, so a reader sees each bucket either
    before or after an update (a scrape may see a value in a bucket but not yet in
    the sum: harmless)."""

    def __init__(self, name: str, doc: str, labels: Sequence[str],
                 bounds: Sequence[float]) -> None:
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.bounds = tuple(float(b) for b in bounds)
        self.series: dict[tuple[str, ...], _Series] = {}

    def series_for(self, *values: str) -> _Series:
        s = self.series.get(values)
        if s is None:
            s = self.series[values] = _Series(self.bounds)
        return s

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for values, s in list(self.series.items()):
            counts, total = list(s.counts), s.sum
            if not any(counts):
                continue  # created for a stream, never recorded (no zero series)
            cum, buckets = 0, []
            for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
                cum += n
                buckets.append((_le(bound), float(cum)))
            fam.add_metric(list(values), buckets, total)
        return fam


class _Series:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def add(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le is <=).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class _BlockCollector:
    """prometheus_client collector for the hot-path histograms."""

    def __init__(self, hists: Sequence[FastHistogram]) -> None:
        self._hists = hists

    def describe(self) -> list[Any]:
        return []  # registering must not collect (nothing is there yet anyway)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        for h in self._hists:
            if h.series:
                yield h.family()


def _otlp(endpoint: str) -> tuple[SpanProcessor, MetricReader]:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigError(
            "telemetry.otlp_endpoint: needs the opentelemetry-exporter-otlp-proto-grpc "
            "package (pip install opentelemetry-exporter-otlp-proto-grpc)") from exc
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    insecure = not endpoint.startswith("https://")
    return (BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=insecure)),
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint,
                                                             insecure=insecure)))


class Telemetry:
    """One worker's meter and tracer providers and its instruments.

    ``metric_readers`` and ``span_processors`` are added to what the config asks for
    (tests pass in-memory ones). The Prometheus registry :attr:`registry` is this
    object's own, so several servers in one process do not share series.
    """

    def __init__(self, cfg: AppConfig, *, metric_readers: Sequence[MetricReader] = (),
                 span_processors: Sequence[SpanProcessor] = ()) -> None:
        t = cfg.telemetry
        self.cfg = cfg
        self.enabled = t.enabled
        self.registry = CollectorRegistry()
        resource = Resource.create({"service.name": "seamcut", "service.version": __version__,
                                    "service.instance.id": instance_id()})
        readers: list[MetricReader] = [
            PrometheusMetricReader(registry=self.registry, disable_target_info=True,
                                   scope_info_enabled=False), *metric_readers]
        processors: list[SpanProcessor] = list(span_processors)
        if t.otlp_endpoint:
            span_proc, reader = _otlp(t.otlp_endpoint)
            processors.append(span_proc)
            readers.append(reader)
        if t.trace_console:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

            processors.append(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
        self.meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        self.tracer_provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(t.trace_sample_ratio)))
        for p in processors:
            self.tracer_provider.add_span_processor(p)
        self.tracer = self.tracer_provider.get_tracer(SCOPE, __version__)
        self._instance = instance_id()
        m = self.meter_provider.get_meter(SCOPE, __version__)
        self.opened = m.create_counter(
            "seamcut.streams.opened", unit="{stream}",
            description="StreamCuts calls, before admission")
        self.admitted = m.create_counter(
            "seamcut.streams.admitted", unit="{stream}", description="streams admitted")
        self.rejected = m.create_counter(
            "seamcut.streams.rejected", unit="{stream}",
            description="streams refused at admission, by status")
        self.ended = m.create_counter(
            "seamcut.streams.ended", unit="{stream}",
            description="admitted streams that ended, by status (CANCELLED: the client "
                        "went away) and mode (unknown: ended before its config)")
        self.errors = m.create_counter(
            "seamcut.errors", unit="{stream}",
            description="non-OK statuses the server ended a stream with, refusals included")
        self.cut_latency = m.create_histogram(
            "seamcut.cut.final_latency", unit="s",
            description="from the receipt of the audio message that completed the block "
                        "whose analysis made a cut final to the cut being queued for the "
                        "client (END cuts excluded)",
            explicit_bucket_boundaries_advisory=CUT_BOUNDS_S)
        self.fallbacks = m.create_counter(
            "seamcut.gpu.fallbacks", unit="{stream}",
            description="streams moved to the CPU path after a GPU pipeline fault")
        self.stage = FastHistogram(
            "seamcut_stage_duration_seconds",
            "per-block time in each stage (ChunkTrace times; total = hand-over to the "
            "engine until the detector is done)", ("mode", "stage"), STAGE_BOUNDS_S)
        self.batch = FastHistogram(
            "seamcut_batch_size", "streams sharing a block's model call, per stage",
            ("mode", "stage"), BATCH_BOUNDS)
        self.registry.register(_BlockCollector((self.stage, self.batch)))
        self.audio_s: dict[str, float] = {}  # mode -> audio seconds analysed
        m.create_observable_counter(
            "seamcut.audio.processed", unit="s", callbacks=[self._observe_audio],
            description="audio analysed, seconds of the client's stream")
        self._servicer: SeamcutServicer | None = None
        self._engine: EngineClient | None = None
        m.create_observable_up_down_counter(
            "seamcut.streams.open", unit="{stream}", callbacks=[self._observe_open],
            description="admitted streams not yet ended (the HPA's metric)")
        m.create_observable_up_down_counter(
            "seamcut.blocks.in_flight", unit="{block}", callbacks=[self._observe_blocks],
            description="units of audio (blocks, SONG windows) between sessions and results")
        m.create_observable_up_down_counter(
            "seamcut.engine.requests_in_flight", unit="{request}",
            callbacks=[self._observe_requests],
            description="engine requests submitted and not yet answered")
        m.create_observable_up_down_counter(
            "seamcut.queue.depth", unit="{item}", callbacks=[self._observe_queues],
            description="outbox: events waiting to be written to clients; engine_backlog: "
                        "requests waiting for an engine process's credits")
        m.create_observable_counter(
            "seamcut.engine.replays", unit="{request}", callbacks=[self._observe_replays],
            description="requests replayed to a restarted engine process")
        m.create_observable_gauge(
            "seamcut.gpu.memory_allocated", unit="By", callbacks=[self._observe_gpu],
            description="torch CUDA memory allocated by this worker's in-process engine")

    def bind(self, servicer: SeamcutServicer, engine: EngineClient) -> None:
        """Where the observable instruments read from (nowhere with telemetry off)."""
        if self.enabled:
            self._servicer, self._engine = servicer, engine

    def error(self, status: str) -> None:
        if self.enabled:
            self.errors.add(1, {"status": status})

    def shutdown(self) -> None:
        """Flush and stop the providers, waiting at most SHUTDOWN_S: an OTLP exporter
        whose collector is down retries for up to 30 s, which a pod's termination
        grace (docs/DEPLOY.md) has no room for. What is unsent then is dropped."""
        def stop() -> None:
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown()

        t = threading.Thread(target=stop, name="seamcut-telemetry-shutdown", daemon=True)
        t.start()
        t.join(SHUTDOWN_S)
        if t.is_alive():
            log.warning("telemetry: export did not finish within %g s at shutdown; the "
                        "unsent spans and metrics are dropped", SHUTDOWN_S)

    # ------------------------------------------------------------ streams
    def open_stream(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> StreamTelemetry:
        """A StreamCuts call began: its span, a child of the caller's ``traceparent``."""
        if not self.enabled:
            return StreamTelemetry(self, trace.INVALID_SPAN)
        self.opened.add(1)
        carrier = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
        parent = _propagator.extract(carrier) if "traceparent" in carrier else None
        span = self.tracer.start_span(
            "seamcut.v1.Seamcut/StreamCuts", context=parent, kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": "seamcut.v1.Seamcut",
                        "rpc.method": "StreamCuts", "seamcut.instance_id": self._instance})
        return StreamTelemetry(self, span)

    # ------------------------------------------------------------ observable callbacks
    # Called on the scrape (or export) thread: they only read ints and copy containers
    # in one C call (list(set), dict.items()), which the event loop cannot interleave.
    def _observe_audio(self, _o: CallbackOptions) -> list[Observation]:
        return [Observation(v, {"mode": k}) for k, v in list(self.audio_s.items())]

    def _observe_open(self, _o: CallbackOptions) -> list[Observation]:
        s = self._servicer
        return [] if s is None else [Observation(s.counters.sessions_open)]

    def _observe_blocks(self, _o: CallbackOptions) -> list[Observation]:
        s = self._servicer
        return [] if s is None else [Observation(sum(x.inflight for x in list(s.sessions)))]

    def _observe_requests(self, _o: CallbackOptions) -> list[Observation]:
        e = self._engine
        return [] if e is None else [Observation(e.in_flight)]

    def _observe_queues(self, _o: CallbackOptions) -> list[Observation]:
        s, e = self._servicer, self._engine
        out = []
        if s is not None:
            depth = sum(x.events.qsize() for x in list(s.sessions))
            out.append(Observation(depth, {"queue": "outbox"}))
        backlog = getattr(e, "backlog", None)  # engine processes only
        if isinstance(backlog, int):
            out.append(Observation(backlog, {"queue": "engine_backlog"}))
        return out

    def _observe_replays(self, _o: CallbackOptions) -> list[Observation]:
        replayed = getattr(self._engine, "replayed", None)  # engine processes only
        return [Observation(replayed)] if isinstance(replayed, int) else []

    def _observe_gpu(self, _o: CallbackOptions) -> list[Observation]:
        e = self._engine
        torch = sys.modules.get("torch")  # loaded by an in-process engine; never here
        if (e is None or torch is None or getattr(e, "pipeline", None) is None
                or not e.info.device.startswith("cuda")):
            return []
        return [Observation(int(torch.cuda.memory_allocated(e.info.device)),
                            {"device": e.info.device})]


class StreamTelemetry:
    """One stream's span and its share of the metrics; the session's observer."""

    __slots__ = ("_audio_key", "_batch", "_batch_sep", "_ctx", "_cut_attrs", "_rate",
                 "_series", "_tel", "ended", "mode", "span", "trace_id")

    def __init__(self, tel: Telemetry, span: Span) -> None:
        self._tel = tel
        self.span = span
        ctx = span.get_span_context()
        self.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else ""
        # Children only for a recorded (sampled) stream: an unsampled one costs one
        # non-recording span.
        self._ctx = trace.set_span_in_context(span) if span.is_recording() else None
        self.mode = "unknown"
        self.ended = False
        self._rate = 1
        self._series: list[tuple[str, Any]] = []
        self._batch: Any = None
        self._batch_sep: Any = None
        self._cut_attrs: dict[str, str] = {}
        self._audio_key = ""

    @property
    def observer(self) -> StreamTelemetry | None:
        """What the session reports to (None with telemetry off)."""
        return self if self._tel.enabled else None

    def admitted(self) -> None:
        if self._tel.enabled:
            self._tel.admitted.add(1)

    def configured(self, spec: StreamSpec, session_id: str, device: str,
                   request_id: str) -> None:
        """The stream's config is known: label its metrics, describe its span."""
        if not self._tel.enabled:
            return
        self.mode = spec.mode.value
        self._rate = spec.format.sample_rate_hz
        stage, batch = self._tel.stage, self._tel.batch
        self._series = [(name, stage.series_for(self.mode, name)) for name in STAGES]
        self._series.append(("total", stage.series_for(self.mode, "total")))
        self._batch = batch.series_for(self.mode, "vad")
        self._batch_sep = batch.series_for(self.mode, "separation")
        self._cut_attrs = {"mode": self.mode}
        self._audio_key = self.mode
        self._tel.audio_s.setdefault(self.mode, 0.0)
        if self._ctx is not None:
            f = spec.format
            self.span.set_attributes({
                "seamcut.session_id": session_id, "seamcut.request_id": request_id,
                "seamcut.mode": self.mode, "seamcut.format.encoding": f.encoding.value,
                "seamcut.format.sample_rate_hz": f.sample_rate_hz,
                "seamcut.format.channels": f.channels, "seamcut.device": device})

    def rejected(self, status: str, message: str) -> None:
        """Refused at admission: counted, and the span ends with the status."""
        if self._tel.enabled:
            self._tel.rejected.add(1, {"status": status})
        self._finish(status, message, "")

    def end(self, status: str, message: str, engine_id: str) -> None:
        """An admitted stream ended (once; further calls do nothing)."""
        if self.ended:
            return
        if self._tel.enabled:
            self._tel.ended.add(1, {"status": status, "mode": self.mode})
        self._finish(status, message, engine_id)

    def _finish(self, status: str, message: str, engine_id: str) -> None:
        self.ended = True
        if self._ctx is not None:
            self.span.set_attribute("seamcut.end_reason", status)
            if engine_id:
                self.span.set_attribute("seamcut.engine_id", engine_id)
            if status != "OK":
                self.span.set_status(SpanStatus.ERROR, f"{status}: {message}"[:300])
        self.span.end()

    # ------------------------------------------------------------ SessionObserver
    def block(self, trace_ev: ChunkTrace) -> None:
        t = trace_ev.times
        values = (t.queue_wait_ms, t.h2d_ms, t.separation_ms, t.vad_ms, t.features_ms,
                  t.d2h_ms, t.ipc_ms, t.total_ms)
        for (name, series), ms in zip(self._series, values, strict=True):
            if ms > 0 or name not in _OPTIONAL:
                series.add(ms / 1000)
        self._batch.add(trace_ev.batch_size)
        if trace_ev.separation_batch_size:
            self._batch_sep.add(trace_ev.separation_batch_size)
        audio = self._tel.audio_s
        audio[self._audio_key] += (trace_ev.end_sample - trace_ev.start_sample) / self._rate
        if self._ctx is not None:
            self._block_spans(trace_ev, values)

    def _block_spans(self, ev: ChunkTrace, values: tuple[float, ...]) -> None:
        """A span for the block with a child per stage. The stages' start times are not
        measured, only their durations: the children are laid end to end from the
        block's start in pipeline order, so their lengths are exact and their
        positions approximate."""
        tracer = self._tel.tracer
        end = time.time_ns()
        start = end - int(values[-1] * 1e6)
        block = tracer.start_span("block", context=self._ctx, start_time=start, attributes={
            "seamcut.block_index": ev.block_index, "seamcut.start_sample": ev.start_sample,
            "seamcut.end_sample": ev.end_sample, "seamcut.batch_size": ev.batch_size,
            "seamcut.device": ev.device, "seamcut.gpu_pipeline_used": ev.gpu_pipeline_used})
        ctx = trace.set_span_in_context(block)
        at = start
        for name, ms in zip(STAGES, values, strict=False):
            if ms <= 0:
                continue
            d = int(ms * 1e6)
            tracer.start_span(name, context=ctx, start_time=at).end(end_time=min(at + d, end))
            at = min(at + d, end)
        block.end(end_time=end)

    def cut(self, latency_s: float) -> None:
        self._tel.cut_latency.record(latency_s, self._cut_attrs)

    def fallback(self) -> None:
        self._tel.fallbacks.add(1, {"mode": self.mode})


def make_telemetry(cfg: AppConfig) -> Telemetry:
    """The worker's telemetry as configured (tests replace this to add readers)."""
    return Telemetry(cfg)
