"""Baselines measured in the same run: the engine in-process, and Silero's own VAD loop.

``--compare inprocess`` feeds every stream's exact chunks (same file, offset, chunk
size and count as it sent over gRPC) through :func:`seamcut.server.offline.run_session`
on one in-process engine (:class:`~seamcut.server.engine.client.InprocEngine`) — no gRPC, no
pacing (flood), all streams concurrently — and times it from the first chunk to the
last event. For SPEECH it also times the ``silero-vad`` package's own
``get_speech_timestamps`` (ONNX model) on stream 0's audio.

Throughput = audio seconds / wall seconds. Engine start-up and model warm-up are not
timed. Imports ``seamcut.server`` (and ``silero_vad``, torch, soxr) lazily: the bench
itself runs against a remote server without them, and ``import silero_vad`` sets
torch's thread count for the whole process, so it is imported last and only here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from seamcut.bench.source import LoopedAudio, stream_offset

SILERO_MIN_S = 60.0  # Silero's loop is timed on at least this much audio (looped) ...
SILERO_MAX_S = 600.0  # ... and at most this much
SILERO_RATE_HZ = 16_000


@dataclass(frozen=True, kw_only=True, slots=True)
class Throughput:
    """``audio_seconds`` of audio analysed in ``wall_seconds`` by ``streams`` streams."""

    name: str
    streams: int
    audio_seconds: float
    wall_seconds: float

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "streams": self.streams,
                "audio_seconds": round(self.audio_seconds, 3),
                "wall_seconds": round(self.wall_seconds, 4),
                "audio_seconds_per_second": round(self.audio_seconds_per_second, 2)}


def inprocess(sources: list[LoopedAudio], chunks_per_stream: dict[int, int],
              mode: str) -> Throughput:
    """Run stream ``i`` for ``chunks_per_stream[i]`` chunks through the engine, all at once.

    Raises the server's SeamcutError (e.g. ConfigError for an unsupported mode).
    """
    from seamcut.server.config import AudioFormat, Encoding, Mode, load_config, stream_spec
    from seamcut.server.engine.client import InprocEngine
    from seamcut.server.offline import run_session

    cfg = load_config()
    engine = InprocEngine(cfg)
    # The engine starts (and warms up) on the run's loop, before the clock.
    jobs = []
    audio_s = 0.0
    for i, n in sorted(chunks_per_stream.items()):
        src = sources[i % len(sources)]
        spec = stream_spec(
            cfg, format=AudioFormat(encoding=Encoding(src.encoding),
                                    sample_rate_hz=src.sample_rate_hz,
                                    channels=src.channels),
            mode=Mode(mode), policy_overrides={}, event_overrides={},
        )
        off = stream_offset(i, src.frames)
        jobs.append((spec, (src.chunk(off, k) for k in range(n))))
        audio_s += n * src.chunk_frames / src.sample_rate_hz

    async def run_all() -> float:
        await engine.start()
        try:
            t = time.perf_counter()
            await asyncio.gather(*(run_session(engine, cfg, spec, gen)
                                   for spec, gen in jobs))
            return time.perf_counter() - t
        finally:
            await engine.close()

    wall = asyncio.run(run_all())
    return Throughput(name="inprocess", streams=len(jobs), audio_seconds=audio_s,
                      wall_seconds=wall)


def silero_vad(src: LoopedAudio, audio_seconds: float) -> Throughput:
    """Time ``silero_vad.get_speech_timestamps`` (ONNX) on ``audio_seconds`` (clipped to
    [60, 600] s) of stream 0's audio, resampled to 16 kHz mono if needed."""
    import soxr
    import torch

    seconds = min(max(audio_seconds, SILERO_MIN_S), SILERO_MAX_S)
    x = src.mono_float(stream_offset(0, src.frames), round(seconds * src.sample_rate_hz))
    if src.sample_rate_hz != SILERO_RATE_HZ:
        x = soxr.resample(x, src.sample_rate_hz, SILERO_RATE_HZ).astype("float32")
    threads = torch.get_num_threads()
    from silero_vad import get_speech_timestamps, load_silero_vad

    try:
        model = load_silero_vad(onnx=True)
        wav = torch.from_numpy(x)
        get_speech_timestamps(wav[:SILERO_RATE_HZ], model, sampling_rate=SILERO_RATE_HZ)
        t = time.perf_counter()
        get_speech_timestamps(wav, model, sampling_rate=SILERO_RATE_HZ)
        wall = time.perf_counter() - t
    finally:
        torch.set_num_threads(threads)  # undo the package's import-time setting
    return Throughput(name="silero_vad.get_speech_timestamps", streams=1,
                      audio_seconds=len(x) / SILERO_RATE_HZ, wall_seconds=wall)
