"""Decoding interleaved PCM bytes into float32 frames, and downmixing."""

from __future__ import annotations

import numpy as np
from seamcut.server.config import AudioFormat, Encoding
from seamcut.server.errors import InvalidAudio

# Float input beyond this magnitude is almost surely int16 bytes declared as F32LE.
MAX_FLOAT_MAGNITUDE = 64.0
_INT16_SCALE = np.float32(1.0 / 32768.0)


def decode(data: bytes, fmt: AudioFormat) -> np.ndarray:
    """Decode ``data`` into float32 frames of shape [frames, channels].

    int16 is scaled by 1/32768 so that the same audio sent as PCM_S16LE or F32LE
    (x / 32768) decodes to identical floats. Raises InvalidAudio for a partial frame,
    NaN/Inf, or float samples whose magnitude exceeds MAX_FLOAT_MAGNITUDE.
    """
    if len(data) % fmt.frame_bytes:
        raise InvalidAudio(
            f"audio.data: {len(data)} bytes is not a whole number of frames "
            f"({fmt.frame_bytes} bytes per frame = {fmt.channels} channel(s) x "
            f"{fmt.encoding.bytes_per_sample} bytes of {fmt.encoding.name})"
        )
    if fmt.encoding is Encoding.PCM_S16LE:
        ints = np.frombuffer(data, dtype="<i2")
        out = ints.astype(np.float32) * _INT16_SCALE
    else:
        out = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if out.size:
            if not np.isfinite(out).all():
                bad = int(np.flatnonzero(~np.isfinite(out))[0]) // fmt.channels
                raise InvalidAudio(f"audio.data: NaN or Inf sample at frame {bad} of the chunk")
            peak = float(np.abs(out).max())
            if peak > MAX_FLOAT_MAGNITUDE:
                raise InvalidAudio(
                    f"audio.data: float sample magnitude {peak:.3g} exceeds "
                    f"{MAX_FLOAT_MAGNITUDE:g} (F32LE is nominally [-1, 1]); is this int16 audio "
                    "declared as F32LE?"
                )
    return out.reshape(-1, fmt.channels)


def downmix(frames: np.ndarray) -> np.ndarray:
    """Mean over channels: [frames, channels] -> [frames] float32."""
    if frames.shape[1] == 1:
        return frames[:, 0].copy()
    return np.asarray(frames.mean(axis=1, dtype=np.float32), dtype=np.float32)
