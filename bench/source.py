"""Looped audio sources: every stream plays a file in a loop from its own offset.

Stream ``i`` plays file ``i mod len(files)`` starting at frame
``floor(frac(i · φ) · frames)`` (φ = golden ratio conjugate): offsets spread evenly for
any stream count, so concurrent streams reach their pauses (and cuts) at different
times instead of in lock-step. Its chunk ``k`` holds frames ``[k·C, (k+1)·C)`` of that
loop (``C`` = chunk frames), already encoded for the wire.

Imports numpy, importlib.resources and the SDK's ``audio`` module.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
from seamcut.client.audio import AudioInfo, encode, read_for_wire
from seamcut.client.stream import EncodingName

GOLDEN = 0.6180339887498949
SAMPLE_FILES = {"speech": "speech_en.flac", "song": "song_en.flac"}


def bundled_sample(mode: str = "speech") -> Path:
    """Path of the bundled sample for ``mode`` (``seamcut/samples/speech_en.flac`` or
    ``song_en.flac``)."""
    return Path(str(resources.files("seamcut.samples") / SAMPLE_FILES[mode]))


def stream_offset(stream: int, frames: int) -> int:
    """First frame of stream ``stream`` in a file of ``frames`` frames."""
    return int((stream * GOLDEN % 1.0) * frames) % max(frames, 1)


@dataclass(frozen=True, kw_only=True, slots=True)
class LoopedAudio:
    """One file, encoded once, playable in a loop from any offset.

    ``data`` holds the encoded file followed by enough of its start that any chunk of
    ``chunk_frames`` beginning inside the file is one contiguous slice.
    """

    path: str
    sample_rate_hz: int
    channels: int
    encoding: EncodingName
    frames: int
    frame_bytes: int
    chunk_frames: int
    data: bytes

    @classmethod
    def load(cls, path: str | Path, chunk_ms: int) -> LoopedAudio:
        """Read ``path`` (WAV/FLAC) and prepare ``chunk_ms`` chunks.

        Raises the SDK's AudioError for a missing or unreadable file.
        """
        frames, info = read_for_wire(path)
        return cls.from_frames(frames, info, chunk_ms)

    @classmethod
    def from_frames(cls, frames: npt.NDArray[np.generic], info: AudioInfo,
                    chunk_ms: int) -> LoopedAudio:
        """Prepare already-read ``[frames, channels]`` samples (in their wire dtype)."""
        n = len(frames)
        if n == 0:
            from seamcut.client.stream import AudioError

            raise AudioError(f"{info.path}: no audio frames")
        chunk = max(1, round(info.sample_rate_hz * chunk_ms / 1000))
        reps = 1 + -(-chunk // n)  # enough copies that [offset, offset + chunk) fits
        tiled = np.concatenate([frames] * reps) if reps > 1 else frames
        encoding = info.wire_encoding
        data = encode(tiled, encoding)
        frame_bytes = len(data) // len(tiled)
        return cls(path=str(info.path), sample_rate_hz=info.sample_rate_hz,
                   channels=info.channels, encoding=encoding, frames=n,
                   frame_bytes=frame_bytes, chunk_frames=chunk, data=data)

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate_hz

    def chunk(self, offset: int, k: int) -> bytes:
        """Encoded chunk ``k`` of the loop that starts at frame ``offset``."""
        start = (offset + k * self.chunk_frames) % self.frames
        fb = self.frame_bytes
        return self.data[start * fb:(start + self.chunk_frames) * fb]

    def chunks(self, offset: int, count: int) -> list[bytes]:
        """The first ``count`` chunks of the loop from ``offset`` (for in-process runs)."""
        return [self.chunk(offset, k) for k in range(count)]

    def mono_float(self, offset: int, frames: int) -> npt.NDArray[np.float32]:
        """``frames`` frames of the loop from ``offset`` as float32 mono in [-1, 1]
        (channel mean), for baselines that take plain audio."""
        dtype = "<i2" if self.encoding == "pcm_s16le" else "<f4"
        one = np.frombuffer(self.data, dtype=dtype)[:self.frames * self.channels]
        loop = one.reshape(self.frames, self.channels)
        idx = (offset + np.arange(frames)) % self.frames
        x: npt.NDArray[np.float32] = loop[idx].astype(np.float32).mean(axis=1)
        return x / np.float32(32768.0) if self.encoding == "pcm_s16le" else x


def load_sources(files: tuple[str, ...], chunk_ms: int,
                 mode: str = "speech") -> list[LoopedAudio]:
    """The files to play (the mode's bundled sample when ``files`` is empty)."""
    paths = files or (str(bundled_sample(mode)),)
    return [LoopedAudio.load(p, chunk_ms) for p in paths]
