"""Cutting a file into messages, and when each one went out (``seamcut split``)."""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from seamcut.client.audio import encode
from seamcut.client.stream import EncodingName

REALTIME_CHUNK_MS = 100
FILE_CHUNK_MS = 1000
# Stay under the server's default 1 MiB message limit whatever the format (1 s of
# 192 kHz, 8-channel float32 is 6 MB), leaving room for the message's other fields.
MAX_CHUNK_BYTES = 1_000_000


def chunk_frames_for(sample_rate_hz: int, chunk_ms: int, frame_bytes: int = 0) -> int:
    """Frames per chunk of ``chunk_ms`` milliseconds (at least one), and at most
    ``MAX_CHUNK_BYTES`` of ``frame_bytes``-byte frames when that is given."""
    frames = max(1, round(sample_rate_hz * chunk_ms / 1000))
    return min(frames, max(1, MAX_CHUNK_BYTES // frame_bytes)) if frame_bytes else frames


def chunk_ends(frames: int, chunk_frames: int) -> list[int]:
    """End frame (exclusive) of each chunk that :func:`iter_chunks` yields."""
    return [min(start + chunk_frames, frames) for start in range(0, frames, chunk_frames)]


def iter_chunks(
    frames: npt.NDArray[np.generic], encoding: EncodingName, chunk_frames: int
) -> Iterator[tuple[int, bytes]]:
    """``(end_frame, bytes)`` per chunk of ``chunk_frames`` frames (the last may be shorter)."""
    for start in range(0, len(frames), chunk_frames):
        end = min(start + chunk_frames, len(frames))
        yield end, encode(frames[start:end], encoding)


class SendLog:
    """When the audio went out, for finalisation latency (``time.monotonic`` seconds).

    With ``--realtime`` a chunk is due when a live source would have it: at
    ``t0 + end_frame / rate`` (sleeping to this schedule, not per chunk, so it never
    drifts). ``sent_at`` gives the recorded send time of the chunk holding a sample, or
    its due time if it has not gone out yet (a cut final earlier than the worst case).
    """

    def __init__(self, ends: Sequence[int], sample_rate_hz: int) -> None:
        self.ends = list(ends)
        self.rate = sample_rate_hz
        self.t0 = time.monotonic()
        self.sent: list[float] = []

    def due(self, end: int) -> float:
        return self.t0 + end / self.rate

    def record(self, t: float) -> None:
        self.sent.append(t)

    def sent_at(self, sample: int) -> float | None:
        """When the audio up to ``sample`` (exclusive) had been sent; None if no audio."""
        if not self.ends:
            return None
        k = bisect.bisect_left(self.ends, min(max(sample, 1), self.ends[-1]))
        return self.sent[k] if k < len(self.sent) else self.due(self.ends[k])
