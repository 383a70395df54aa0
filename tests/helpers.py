"""Shared test helpers: an in-process server on a thread, raw-protocol streaming."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import grpc
import numpy as np
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
            **server: Any) -> Iterator[ServerThread]:
    """A :class:`ServerThread` with these ``server`` (and ``security``, ``engine``) settings."""
    cfg = load_config(env={}, overrides={
        "server": {"host": "127.0.0.1", "port": 0, **server}, "security": security or {},
        "engine": engine or {}})
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
