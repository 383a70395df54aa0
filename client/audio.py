"""Audio I/O for the client: read files, encode frames for the wire, write segments.

Arrays are ``[frames, channels]`` (a 1-D array is one channel). On the wire, samples
are interleaved little-endian int16 (``pcm_s16le``) or float32 (``f32le``, nominal
range [-1, 1]); int16 and float relate by a factor of 32768, as on the server.

Files are read and written with soundfile (libsndfile: WAV, FLAC, ...). Splitting is
lossless: every file is read in its *native* dtype (int16 for 16-bit PCM, float32 for
FLOAT, ...) and the segments are written with the same subtype, so nothing is
rescaled and concatenating the segments gives back the input sample for sample.

Imports numpy, soundfile and the SDK's ``stream`` module (for AudioError) only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
from seamcut.client.stream import AudioError, EncodingName

# Subtypes that round-trip exactly through these dtypes: libsndfile shifts 8- and
# 24-bit PCM into the high bits of int16/int32 on read and back on write.
NATIVE_DTYPES: dict[str, str] = {
    "PCM_S8": "int16", "PCM_U8": "int16", "PCM_16": "int16",
    "PCM_24": "int32", "PCM_32": "int32",
    "FLOAT": "float32", "DOUBLE": "float64",
}
_SUBTYPE_FOR_DTYPE = {"int16": "PCM_16", "int32": "PCM_32", "float32": "FLOAT", "float64": "DOUBLE"}
_EXTENSIONS = {"WAV": ".wav", "WAVEX": ".wav", "RF64": ".wav", "FLAC": ".flac", "AIFF": ".aiff",
               "W64": ".w64", "CAF": ".caf"}
_INT16_SCALE = 32768.0

# What AsyncStream.send takes: wire bytes, or frames to encode.
Audio = bytes | bytearray | memoryview | npt.ArrayLike


@dataclass(frozen=True, kw_only=True, slots=True)
class AudioInfo:
    """What a file holds: container ``format`` and sample ``subtype`` as libsndfile names
    them (e.g. "FLAC", "PCM_16"), rate in Hz, channels, and length in frames."""

    path: Path
    format: str
    subtype: str
    sample_rate_hz: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate_hz

    @property
    def native_dtype(self) -> str:
        """The dtype that holds this file's samples exactly (see NATIVE_DTYPES)."""
        try:
            return NATIVE_DTYPES[self.subtype]
        except KeyError:
            raise AudioError(
                f"{self.path}: sample format {self.subtype} is not supported (lossy or "
                f"unusual); convert to 16-bit PCM or float WAV/FLAC first"
            ) from None

    @property
    def wire_encoding(self) -> EncodingName:
        """How to send this file: 16-bit and narrower as pcm_s16le, everything else as
        f32le (exact for 24-bit PCM and float)."""
        return "pcm_s16le" if self.native_dtype == "int16" else "f32le"


def probe(path: str | Path) -> AudioInfo:
    """Read a file's header. Raises AudioError if it is missing, not audio, or a WAV
    whose header promises more audio than the file holds (a truncated copy)."""
    p = Path(path)
    if p.is_dir():
        raise AudioError(f"{p}: is a directory; give an audio file (WAV or FLAC)")
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if not p.is_file():
        raise AudioError(f"{p}: not a regular file; give an audio file (WAV or FLAC)")
    try:
        info = sf.info(str(p))
    except sf.LibsndfileError as exc:
        raise AudioError(f"{p}: not an audio file this client reads (WAV, FLAC, ...): "
                         f"{exc.error_string}") from exc
    except (sf.SoundFileError, OSError) as exc:
        raise AudioError(f"{p}: cannot read audio ({exc})") from exc
    short = _TRUNCATED.search(info.extra_info or "")
    if short is not None:
        raise AudioError(
            f"{p}: truncated: its header promises {short.group(1)} bytes of audio but the "
            f"file holds {short.group(2)}; the copy is incomplete"
        )
    return AudioInfo(
        path=p, format=info.format, subtype=info.subtype, sample_rate_hz=info.samplerate,
        channels=info.channels, frames=info.frames,
    )


# libsndfile notes a WAV/RIFF data chunk longer than the file in the header dump it
# keeps (e.g. "data : 32000 (should be 15978)") and then reads what is there, silently.
_TRUNCATED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _whole(data: npt.NDArray[np.generic], info: AudioInfo) -> npt.NDArray[np.generic]:
    if len(data) != info.frames:
        raise AudioError(f"{info.path}: truncated: the header says {info.frames} frames, "
                         f"only {len(data)} could be read")
    return data


def read_native(path: str | Path) -> tuple[npt.NDArray[np.generic], AudioInfo]:
    """Read a whole file in its native dtype: ``([frames, channels] array, info)``."""
    info = probe(path)
    try:
        data, _ = sf.read(str(info.path), dtype=info.native_dtype, always_2d=True)
    except (sf.SoundFileError, OSError) as exc:
        raise AudioError(f"{info.path}: cannot read audio; the file may be damaged or "
                         f"truncated ({exc})") from exc
    return _whole(np.asarray(data), info), info


def read_for_wire(path: str | Path) -> tuple[npt.NDArray[np.generic], AudioInfo]:
    """Read a whole file in the dtype it is sent in: int16 for files sent as pcm_s16le,
    float32 otherwise (exact for 24-bit PCM and float; 32-bit PCM is rounded)."""
    info = probe(path)
    dtype = "int16" if info.wire_encoding == "pcm_s16le" else "float32"
    try:
        data, _ = sf.read(str(info.path), dtype=dtype, always_2d=True)
    except (sf.SoundFileError, OSError) as exc:
        raise AudioError(f"{info.path}: cannot read audio; the file may be damaged or "
                         f"truncated ({exc})") from exc
    return _whole(np.asarray(data), info), info


def read_audio(path: str | Path) -> tuple[npt.NDArray[np.float32], int, str]:
    """Read a file as float32 ``[frames, channels]`` in [-1, 1].

    Returns ``(frames, sample_rate_hz, subtype)``; ``subtype`` is libsndfile's name
    for the stored sample format (e.g. "PCM_16", "FLOAT").
    """
    info = probe(path)
    try:
        data, rate = sf.read(str(info.path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, OSError) as exc:
        raise AudioError(f"{info.path}: cannot read audio; the file may be damaged or "
                         f"truncated ({exc})") from exc
    return np.asarray(data, dtype=np.float32), int(rate), info.subtype


def _as_frames(frames: npt.ArrayLike) -> npt.NDArray[np.generic]:
    a = np.asarray(frames)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise AudioError(f"audio must be [frames] or [frames, channels], got shape {a.shape}")
    return a


def encode(frames: npt.ArrayLike, encoding: EncodingName) -> bytes:
    """Interleave ``frames`` ([frames, channels] or [frames]) into wire bytes.

    int16 input is sent as is (pcm_s16le) or divided by 32768 (f32le, exact). Float
    input is sent as float32 (f32le) or scaled by 32768, rounded and clipped to the
    int16 range (pcm_s16le). Raises AudioError for other dtypes (whose scale is
    ambiguous) and for NaN/Inf when converting to int16.
    """
    a = _as_frames(frames)
    kind = a.dtype.kind
    if not (a.dtype == np.int16 or kind == "f"):
        raise AudioError(f"audio dtype must be int16 or floating point, got {a.dtype}")
    if encoding == "pcm_s16le":
        if kind == "f":
            if a.size and not np.isfinite(a).all():
                raise AudioError("audio contains NaN or Inf; cannot encode as pcm_s16le")
            a = np.clip(np.rint(np.multiply(a, _INT16_SCALE)), -32768, 32767)
        return np.ascontiguousarray(a, dtype="<i2").tobytes()
    if encoding == "f32le":
        if kind != "f":
            # Dividing by a power of two is exact in float32.
            a = a.astype(np.float32) * np.float32(1.0 / _INT16_SCALE)
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    raise AudioError(f"unknown encoding {encoding!r}; expected pcm_s16le or f32le")


def to_wire(audio: Audio, encoding: EncodingName, channels: int) -> bytes:
    """Bytes for an AudioChunk: ``audio`` is bytes already in ``encoding`` (checked to
    hold whole frames) or an array ``[frames, channels]`` (``[frames]`` for mono),
    encoded with :func:`encode`. Raises AudioError if it does not fit ``channels``."""
    frame_bytes = channels * (2 if encoding == "pcm_s16le" else 4)
    if isinstance(audio, (bytes, bytearray, memoryview)):
        data = bytes(audio)
        if len(data) % frame_bytes:
            raise AudioError(
                f"{len(data)} bytes is not a whole number of frames ({frame_bytes} bytes "
                f"per frame: {channels} channel(s) of {encoding})"
            )
        return data
    frames = np.asarray(audio)
    if frames.ndim not in (1, 2) or (1 if frames.ndim == 1 else frames.shape[1]) != channels:
        raise AudioError(
            f"audio shape {frames.shape} does not match the stream's {channels} channel(s): "
            "pass [frames, channels] (or [frames] for mono)"
        )
    return encode(frames, encoding)


def decode(data: bytes, encoding: EncodingName, channels: int) -> npt.NDArray[np.generic]:
    """Wire bytes -> ``[frames, channels]``: int16 for pcm_s16le, float32 for f32le."""
    dtype = "<i2" if encoding == "pcm_s16le" else "<f4"
    frame_bytes = channels * np.dtype(dtype).itemsize
    if len(data) % frame_bytes:
        raise AudioError(f"{len(data)} bytes is not a whole number of {frame_bytes}-byte frames")
    native = np.int16 if encoding == "pcm_s16le" else np.float32
    return np.frombuffer(data, dtype=dtype).astype(native).reshape(-1, channels)


def segment_bounds(
    cuts: Iterable[int], frames: int, *, start_sample: int = 0
) -> list[tuple[int, int]]:
    """Half-open frame ranges ``[start, end)`` between consecutive cuts; they tile
    ``[0, frames)`` exactly.

    ``cuts`` are absolute frame indices (as the server reports them, i.e. including
    ``start_sample``), in any order; duplicates and cuts at 0 or at ``frames`` (the
    END cut) add no empty segment. A cut outside ``[0, frames]`` raises AudioError.
    """
    edges = {frames}
    for cut in cuts:
        pos = int(cut) - start_sample
        if not 0 <= pos <= frames:
            raise AudioError(f"cut at sample {cut} is outside the audio (0 ..= {frames} frames)")
        if pos > 0:
            edges.add(pos)
    if frames == 0:
        return []
    ends = sorted(edges)
    return list(zip([0, *ends[:-1]], ends, strict=True))


def write_segments(
    source: str | Path | npt.ArrayLike,
    cuts: Iterable[int],
    out_dir: str | Path,
    *,
    sample_rate_hz: int | None = None,
    format: str | None = None,
    subtype: str | None = None,
    start_sample: int = 0,
) -> list[Path]:
    """Write the segments between ``cuts`` as ``0000.<ext>``, ``0001.<ext>``, ... in ``out_dir``.

    ``source`` is a file path (segments keep its container and subtype; it is read one
    segment at a time in its native dtype) or an array ``[frames, channels]`` with
    ``sample_rate_hz`` (then ``format`` defaults to "WAV" and ``subtype`` follows the
    dtype: int16 -> PCM_16, float32 -> FLOAT, ...). Concatenating the files in order
    gives back the source exactly. Returns the paths written. Raises AudioError.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if isinstance(source, (str, Path)):
        info = probe(source)
        ext = info.path.suffix.lower() or _EXTENSIONS.get(info.format, ".wav")
        try:
            with sf.SoundFile(str(info.path)) as f:
                for index, (start, end) in enumerate(
                    segment_bounds(cuts, info.frames, start_sample=start_sample)
                ):
                    data = f.read(end - start, dtype=info.native_dtype, always_2d=True)
                    if len(data) != end - start:
                        raise AudioError(
                            f"{info.path}: file ended early at frame {start + len(data)}"
                        )
                    path = out / f"{index:04d}{ext}"
                    sf.write(str(path), data, info.sample_rate_hz, subtype=info.subtype,
                             format=info.format)
                    written.append(path)
        except (sf.SoundFileError, OSError, TypeError, ValueError) as exc:
            raise AudioError(f"writing segments of {info.path} to {out}: {exc}") from exc
        return written

    frames = _as_frames(source)
    if sample_rate_hz is None:
        raise AudioError("write_segments: sample_rate_hz is required for array input")
    sub = subtype or _SUBTYPE_FOR_DTYPE.get(frames.dtype.name)
    if sub is None:
        raise AudioError(f"write_segments: no lossless subtype for dtype {frames.dtype}")
    fmt = (format or "WAV").upper()
    ext = _EXTENSIONS.get(fmt, "." + fmt.lower())
    try:
        for index, (start, end) in enumerate(
            segment_bounds(cuts, len(frames), start_sample=start_sample)
        ):
            path = out / f"{index:04d}{ext}"
            sf.write(str(path), frames[start:end], sample_rate_hz, subtype=sub, format=fmt)
            written.append(path)
    except (sf.SoundFileError, OSError, TypeError, ValueError) as exc:
        raise AudioError(f"writing segments to {out}: {exc}") from exc
    return written
