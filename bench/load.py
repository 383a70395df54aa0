"""The load generator of one process: its share of the streams, on one event loop.

Stream ``i`` belongs to worker ``i mod processes``. The driver (the parent's runner,
directly or over a pipe) calls :meth:`LoadGenerator.scale` to open streams,
:meth:`LoadGenerator.stop` to end the audio, and :meth:`LoadGenerator.report` every
report interval to collect the samples gathered since the previous report.

A stream opens at its planned time, sends chunk ``k`` of its looped source (see
``source``) when due — ``origin + end_frame(k) / (rate · FACTOR)`` with
``--realtime FACTOR``, computed from the absolute schedule so sleeps never drift — or
as fast as the server takes them when flooding, and half-closes at the stop time,
through the SDK's ``stream_cuts`` (audio in, events out), as an application would.
Stream ``i`` opens ``frac(i · φ) · chunk`` after the scale time, so streams do not all
send in the same instant. Every event is measured by a ``metrics.StreamMeter``.

Imports the SDK (``seamcut.client``) and the bench's ``config``, ``metrics``,
``recording`` and ``source`` modules; never ``seamcut.server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from seamcut.bench.config import DRAIN_LIMIT_S, BenchConfig, TransportOptions
from seamcut.bench.metrics import CutKindCode, StreamMeter
from seamcut.bench.recording import ErrorSample, Samples, StreamMark
from seamcut.bench.source import GOLDEN, LoopedAudio, stream_offset
from seamcut.client import (
    AsyncClient,
    CutEvent,
    Event,
    ProgressEvent,
    ReadyEvent,
    SeamcutRpcError,
    StreamOptions,
    TraceEvent,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerReport:
    """What a worker hands the parent each report interval."""

    worker: int
    samples: Samples
    active: int  # streams open now
    oldest_unacked: float | None  # t_send of the oldest unacknowledged chunk (monotonic s)
    done: bool  # stopped and every stream has ended


@dataclass(frozen=True, kw_only=True, slots=True)
class SecureTransport(TransportOptions):
    """``TransportOptions`` with the rest of ``seamcut split``'s security flags (``--tls``
    for the system's roots, ``--tls-cert``/``--tls-key`` for mTLS). A subclass so that it
    travels inside ``BenchConfig`` to worker processes (pickled) like the base fields."""

    tls: bool = False
    tls_cert: str | None = None  # PEM file: client certificate for mTLS
    tls_key: str | None = None  # PEM file: its private key
    tls_server_name: str | None = None  # the name the server certificate carries


def security_kwargs(transport: TransportOptions) -> dict[str, Any]:
    """AsyncClient keyword arguments for ``transport``'s TLS, mTLS and token settings."""
    extra = transport if isinstance(transport, SecureTransport) else SecureTransport()
    return {"tls": extra.tls, "tls_ca": transport.tls_ca, "tls_cert": extra.tls_cert,
            "tls_key": extra.tls_key, "token": transport.token,
            "tls_server_name": extra.tls_server_name}


def make_client(transport: TransportOptions) -> AsyncClient:
    """An SDK client for ``transport`` (TLS, mTLS, bearer token: ``security_kwargs``)."""
    # A local subchannel pool: otherwise channels with equal arguments share one
    # connection, and --streams-per-connection would not hold.
    return AsyncClient(transport.target, **security_kwargs(transport),
                       options=(("grpc.use_local_subchannel_pool", 1),))


class LoadGenerator:
    """Runs streams ``worker, worker + processes, ...`` of a bench run."""

    def __init__(self, cfg: BenchConfig, sources: list[LoopedAudio], *, worker: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.sources = sources
        self.worker = worker
        self.samples = Samples()
        self._clock = clock
        self._clients: list[AsyncClient] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._meters: dict[int, StreamMeter] = {}
        self._opened = 0  # streams of this worker opened so far
        self._stop_at = math.inf

    # ---------------------------------------------------------------- control
    def scale(self, total: int, at: float) -> None:
        """Run this worker's share of ``total`` streams; new ones open from ``at``."""
        if at >= self._stop_at:
            return
        chunk_s = self.cfg.chunk_s
        for i in range(self.worker, total, self.cfg.processes):
            if i in self._tasks:
                continue
            start_at = at + (i * GOLDEN % 1.0) * chunk_s
            self._tasks[i] = asyncio.create_task(self._stream(i, start_at),
                                                 name=f"bench-stream-{i}")

    def stop(self, at: float) -> None:
        """Send no chunk due at or after ``at``; then half-close and drain every stream."""
        self._stop_at = min(self._stop_at, at)

    def report(self) -> WorkerReport:
        """The samples gathered since the previous report, and the current state."""
        pending = [t for m in self._meters.values() if (t := m.oldest_unacked()) is not None]
        return WorkerReport(
            worker=self.worker, samples=self.samples.take(), active=len(self._meters),
            oldest_unacked=min(pending) if pending else None,
            done=self._clock() >= self._stop_at and all(t.done() for t in self._tasks.values()),
        )

    async def wait_done(self) -> None:
        """Wait for every stream to end, then close the connections."""
        if self._tasks:
            await asyncio.wait(set(self._tasks.values()))
        await self.aclose()

    async def aclose(self) -> None:
        for t in self._tasks.values():
            t.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks.values()))
        for c in self._clients:
            await c.close()
        self._clients.clear()

    # ---------------------------------------------------------------- streams
    def _client_for(self, n: int) -> AsyncClient:
        k = n // self.cfg.transport.streams_per_connection
        while len(self._clients) <= k:
            self._clients.append(make_client(self.cfg.transport))
        return self._clients[k]

    async def _sleep_until(self, t: float) -> None:
        delay = t - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _stream(self, index: int, start_at: float) -> None:
        await self._sleep_until(start_at)
        if self._clock() >= self._stop_at:
            return
        src = self.sources[index % len(self.sources)]
        offset = stream_offset(index, src.frames)
        opts = StreamOptions(sample_rate_hz=src.sample_rate_hz, channels=src.channels,
                             encoding=src.encoding, mode=self.cfg.mode, chunk_traces=True,
                             progress=True, request_id=f"seamcut-bench-{index}")
        meter = StreamMeter()
        client = self._client_for(self._opened)
        self._opened += 1
        self._meters[index] = meter
        s = self.samples
        s.marks.append(StreamMark(t=self._clock(), stream=index, what="open"))
        try:
            async with asyncio.timeout(None) as deadline, contextlib.aclosing(
                    client.stream_cuts(
                        opts, self._audio(meter, src, offset, start_at, deadline),
                        finish_on_drain=False)) as events:
                await self._receive(events, meter, index, src.sample_rate_hz)
        except TimeoutError:
            self._error(index, "DRAIN_TIMEOUT",
                        f"no end of stream {DRAIN_LIMIT_S} s after the half-close")
        except SeamcutRpcError as exc:
            self._error(index, exc.code.name, exc.details)
        except Exception as exc:  # a client-side failure is a measured error, not a crash
            self._error(index, f"CLIENT_{type(exc).__name__}", str(exc))
        finally:
            self._meters.pop(index, None)
            s.marks.append(StreamMark(t=self._clock(), stream=index, what="end",
                                      chunks=meter.chunks_sent))

    def _error(self, index: int, code: str, details: str) -> None:
        self.samples.errors.append(
            ErrorSample(t=self._clock(), stream=index, code=code, details=details[:300]))

    async def _audio(self, meter: StreamMeter, src: LoopedAudio, offset: int, origin: float,
                     deadline: asyncio.Timeout) -> AsyncIterator[bytes]:
        """The stream's chunks, paced (or flooding) until the run's end. The SDK asks
        for the next chunk once the previous one is handed to the transport, so send
        times are taken here, just before each chunk goes."""
        factor = self.cfg.realtime_factor
        rate_per_s = src.sample_rate_hz * (factor or 1.0)
        s, clock, cf = self.samples, self._clock, src.chunk_frames
        k = 0
        while True:
            if factor is not None:
                due = origin + (k + 1) * cf / rate_per_s
                if due >= self._stop_at:
                    break
                await self._sleep_until(due)
            else:
                due = math.nan
            t = clock()
            if t >= self._stop_at:
                # A late wake-up past the run's end: the chunk would fall outside the
                # measured window, and so would the END cut referenced to it.
                break
            data = src.chunk(offset, k)
            s.add_sent(t, (t - due) * 1000)
            s.add_cuts(meter.sent(k, cf, t))
            yield data
            k += 1
        s.add_cuts(meter.end_of_audio())
        # The SDK half-closes as soon as this returns.
        la_s = (meter.lookahead_samples or 0) / src.sample_rate_hz
        deadline.reschedule(asyncio.get_running_loop().time() + la_s + DRAIN_LIMIT_S)

    async def _receive(self, events: AsyncIterator[Event], meter: StreamMeter, index: int,
                       rate: int) -> None:
        s, clock = self.samples, self._clock
        async for ev in events:
            t = clock()
            if isinstance(ev, ProgressEvent):
                acks, delta = meter.progress(ev.last_seq, ev.samples_processed, t)
                s.add_acks(acks)
                if delta:
                    s.add_processed(t, delta / rate)
            elif isinstance(ev, TraceEvent):
                s.add_trace(t, ev.queue_wait_ms, ev.vad_ms, ev.features_ms, ev.total_ms,
                            ev.batch_size, ev.ipc_ms)
            elif isinstance(ev, CutEvent):
                s.add_cuts(meter.cut(ev.sample, CutKindCode.from_name(ev.kind), t))
            elif isinstance(ev, ReadyEvent):
                meter.set_lookahead(ev.lookahead_samples)
                s.marks.append(StreamMark(
                    t=t, stream=index, what="ready", lookahead_ms=ev.lookahead_ms,
                    lookahead_samples=ev.lookahead_samples, device=ev.device,
                    server_version=ev.server_version))
