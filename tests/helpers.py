"""Shared test helpers: an in-process server on a thread, raw-protocol streaming, and
the programs the resume tests stream (tests/test_resume.py, test_resume_processes.py)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from seamcut.client import (
    CheckpointEvent,
    Client,
    CutEvent,
    Event,
    ProgressEvent,
    ReadyEvent,
    ResumedEvent,
    StreamOptions,
)
from seamcut.server.config import (
    AppConfig,
    AudioFormat,
    Encoding,
    Mode,
    StreamSpec,
    load_config,
    stream_spec,
)
from seamcut.server.transport.app import ResourceCounts, Running, start_server

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc


class ServerThread:
    """A real grpc.aio server on 127.0.0.1:<free port>, its event loop on a thread."""

    def __init__(self, cfg: AppConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.running: Running = self.call(start_server(cfg))
        self.target = f"127.0.0.1:{self.running.port}"

    def call(self, coro):  # type: ignore[no-untyped-def]
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[type-arg]
        return fut.result(timeout=60)

    def kill(self) -> None:
        """Stop the transport at once, with no drain and no notice: open streams end as
        they do when the server's process dies (the client sees the connection go).
        :meth:`stop` still releases the rest."""
        self.call(self.running.server.stop(None))

    def stop(self) -> None:
        self.call(self.running.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            # An unclosed loop's self-pipe is collected later, in whichever test runs
            # then, as a ResourceWarning (an error under -W error): it failed a CI run.
            self.loop.close()


@contextmanager
def serving(*, security: dict[str, Any] | None = None, engine: dict[str, Any] | None = None,
            policy: dict[str, Any] | None = None, **server: Any) -> Iterator[ServerThread]:
    """A :class:`ServerThread` with these ``server`` (and ``security``, ``engine``,
    ``policy``) settings."""
    cfg = load_config(env={}, overrides={
        "server": {"host": "127.0.0.1", "port": 0, **server}, "security": security or {},
        "engine": engine or {}, "policy": policy or {}})
    srv = ServerThread(cfg)
    try:
        yield srv
    finally:
        srv.stop()


def wait_released(srv: ServerThread, timeout_s: float = 5.0) -> tuple[ResourceCounts, float]:
    """Poll until the server holds no per-stream resource; (last counts, seconds taken)."""
    t0 = time.monotonic()
    counts = srv.running.resources()
    while not counts.idle and time.monotonic() - t0 < timeout_s:
        time.sleep(0.02)
        counts = srv.running.resources()
    return counts, time.monotonic() - t0


def encode(audio: np.ndarray, encoding: Encoding) -> bytes:
    """float32 [frames, channels] -> interleaved little-endian bytes."""
    if encoding is Encoding.PCM_S16LE:
        return np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2").tobytes()
    return audio.astype("<f4").tobytes()


def slice_bytes(data: bytes, frame_bytes: int, sizes: Iterable[int]) -> list[bytes]:
    """Cut ``data`` into messages of the given frame counts (cycled until done)."""
    out, pos, sizes = [], 0, list(sizes)
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)] * frame_bytes
        out.append(data[pos : pos + n])
        pos += n
        i += 1
    return out


def config_msg(
    *, encoding: int = pb.PCM_S16LE, rate: int = 16000, channels: int = 1, **policy: int
) -> pb.ClientMessage:
    return pb.ClientMessage(config=pb.StreamConfig(
        format=pb.AudioFormat(encoding=encoding, sample_rate_hz=rate, channels=channels),
        mode=pb.SPEECH, policy=pb.CutPolicy(**policy),
    ))


def audio_msgs(chunks: Sequence[bytes], start_seq: int = 0) -> Iterator[pb.ClientMessage]:
    for i, c in enumerate(chunks):
        yield pb.ClientMessage(audio=pb.AudioChunk(seq=start_seq + i, data=c))


def run_stream(target: str, messages: Iterable[pb.ClientMessage],
               timeout: float = 120) -> list[pb.ServerMessage]:
    """Send ``messages`` over a real channel; return every response (raises RpcError)."""
    with grpc.insecure_channel(target) as ch:
        stub = pb_grpc.SeamcutStub(ch)
        return list(stub.StreamCuts(iter(messages), timeout=timeout))


def cut_samples(msgs: Iterable[pb.ServerMessage]) -> list[int]:
    return [m.cut.sample for m in msgs if m.WhichOneof("msg") == "cut"]


def speech_spec(cfg: AppConfig, rate: int, channels: int = 1,
                encoding: Encoding = Encoding.PCM_S16LE, **policy: int) -> StreamSpec:
    return stream_spec(
        cfg, format=AudioFormat(encoding=encoding, sample_rate_hz=rate, channels=channels),
        mode=Mode.SPEECH, policy_overrides=policy, event_overrides={},
    )


# --- Resume: the long programs streamed, and the uninterrupted run's cuts ---------------

SPEECH_CLIPS = ("en_us_f5_snr10", "de_m3_clean", "pt_m5_clean")  # 48 kHz, 35 s
SONG_CLIPS = ("strings_reverb_44k", "organ_44k")  # 44.1 kHz, 26 s
Cut = tuple[int, str, int]


@dataclass(frozen=True)
class Program:
    """A long clip (several corpus clips end to end, so that cuts lie further than the
    warm-up from the start) and the options it is streamed with."""

    name: str
    audio: np.ndarray
    options: StreamOptions
    pace: float  # audio seconds sent per wall second, so kills land while audio flows


@functools.cache
def program(name: str) -> Program:
    """``speech`` (35 s), ``speech_long`` (the same five times), ``speech_forced``
    (max_segment 3 s) or ``song``."""
    # Imported here: the corpora are only for the tests that stream these programs.
    from tests.corpus import default_corpus
    from tests.song_corpus import default_song_corpus

    if name.startswith("speech"):
        clips = {c.name: c for c in default_corpus()}
        audio = np.concatenate([clips[n].audio[:, :1] for n in SPEECH_CLIPS])
        if name == "speech_long":  # 175 s: longer than the replay buffer
            audio = np.concatenate([audio] * 5)
        # max_segment 3 s: FORCED cuts between the pauses, whose chain counts from the
        # last cut (the policy state a resume must reproduce).
        policy = {"max_segment_ms": 3000} if name == "speech_forced" else {}
        return Program(name, audio, StreamOptions(
            sample_rate_hz=48_000, chunk_traces=False, checkpoint_interval_ms=1000,
            **policy), pace=20.0)  # type: ignore[arg-type]
    songs = {c.name: c for c in default_song_corpus()}
    return Program(name, np.concatenate([songs[n].mix for n in SONG_CLIPS]), StreamOptions(
        sample_rate_hz=44_100, channels=2, mode="song", chunk_traces=False,
        checkpoint_interval_ms=1000), pace=20.0)


def cut_tuples(events: list[Event]) -> list[Cut]:
    return [(e.sample, e.kind, e.index) for e in events if isinstance(e, CutEvent)]


@functools.cache
def solo(name: str) -> tuple[Cut, ...]:
    """The uninterrupted run of :func:`program` ``name``, on a server of its own (no
    resume involved)."""
    prog = program(name)
    with serving() as srv, Client(srv.target) as client:
        return tuple(cut_tuples(list(client.stream_cuts(prog.options, [prog.audio]))))


def expected_restart(events: list[Event]) -> int:
    """The frame the first ResumedEvent in ``events`` must name: the resume_from of the
    newest checkpoint ahead of it (the stream's first sample when none came; the
    programs ask for checkpoints themselves, so that they are seen here)."""
    ready = events[0]
    assert isinstance(ready, ReadyEvent) and ready.config is not None
    first = next(i for i, e in enumerate(events) if isinstance(e, ResumedEvent))
    cps = [e.resume_from for e in events[:first] if isinstance(e, CheckpointEvent)]
    return cps[-1] if cps else ready.config.start_sample


def check_watermarks(events: list[Event]) -> None:
    """samples_final never goes back, and no cut comes before one delivered earlier
    (a cut at the watermark itself is allowed: "no cut before it")."""
    promised = -1
    for ev in events:
        if isinstance(ev, ProgressEvent):
            assert ev.samples_final >= promised, (ev, promised)
            promised = ev.samples_final
        elif isinstance(ev, CutEvent):
            assert ev.sample >= promised, f"cut {ev.sample} after samples_final {promised}"
