"""Resume tokens: where a stream's analysis stands, as bytes its client keeps.

A checkpoint is taken at the end of an analysed block (position W). What re-analysis
from earlier audio cannot reproduce travels in the token: both Silero states (the
recurrent state does not converge on music) and the detector's state (the last cut,
running levels, the open pause, the history its decisions still look at). What the
audio does reproduce does not: a resumed stream starts ``resume_from`` frames before
W on the same block grid and runs that pre-roll through its front end only, which
settles the resamplers, fills the separation windows over W (laid on the grid of the
stream's origin) and refills the detector's ring of client audio for the snap.
docs/DESIGN.md, "Replicas and resume", has the measurements behind the split.

The token is msgpack (msgspec) in a versioned, typed layout, bound by a digest to
the server version and the stream's effective config: another config would analyse
differently, so its token is refused rather than silently misread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from seamcut.server.config import (
    ANALYSIS_RATE_HZ,
    HOP_SAMPLES,
    MAX_RESUME_TOKEN_BYTES,
    AppConfig,
    StreamSpec,
)
from seamcut.server.dsp.detector import Candidate, DetectorState
from seamcut.server.dsp.voice import VoiceState
from seamcut.server.engine.protocol import VAD_STATE_FLOATS, SeparatorInfo
from seamcut.server.errors import ConfigError

from seamcut import __version__

TOKEN_VERSION = 1
# Pre-roll for the resamplers (soxr HQ): the 16 kHz audio of a stream started a second
# earlier agrees with the first stream's within 2e-7 (measured, docs/DESIGN.md).
SETTLE_S = 1.0


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """A checkpoint, in the stream's local frames (counted from ``origin``)."""

    origin: int  # absolute client frame of the grid's origin (the first stream's start)
    block: int  # the first block analysed after it; W is its start
    sample: int  # W in client frames
    resume_from: int  # the first frame a resumed stream must send (on the grid, <= W)
    cuts: int  # cuts emitted before W
    vad_state: np.ndarray
    mix_state: np.ndarray  # SONG with separation; empty otherwise
    detector: DetectorState  # its ring empty: the pre-roll refills it
    voice: VoiceState | None = None  # SONG with a separator: the voice detector's state


class _Detector(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    next_hop: int
    in_speech: bool
    seen_speech: bool
    silence_start: int
    pause_decided: bool
    segment_start: int
    segment_prob_sum: float
    segment_hops: int
    last_cut: int
    last_cut_client: int
    pending: tuple[int, float, int, int] | None
    hist_start: int
    hist_e: bytes  # float32
    hist_p: bytes  # float32
    ring_start: int
    final_client: int
    speech_level_db: float
    voice_level_db: float
    recent_power: bytes  # float64
    short_pause_start: int
    short_pause_hops: int


class _Token(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    version: int
    digest: bytes
    origin: int
    block: int
    sample: int
    resume_from: int
    cuts: int
    vad_state: bytes  # float32
    mix_state: bytes
    detector: _Detector
    voice_hidden: bytes  # float32; empty without the voice detector
    voice_level: float
    voice_started: bool
    voice_tail: bytes  # float32


def config_digest(cfg: AppConfig, spec: StreamSpec, sep: SeparatorInfo | None) -> bytes:
    """What decides the analysis of a stream, hashed: the server version, the block
    length, the detector's constants, and the stream's effective config (its start,
    request id, events and token aside)."""
    key = repr((__version__, TOKEN_VERSION, cfg.engine.block_ms, cfg.detector, spec.format,
                spec.mode, spec.policy, spec.separator, spec.vocal_stem_channels,
                spec.window_hop_ms, sep))
    return hashlib.sha256(key.encode()).digest()[:16]


def grid_step(cfg: AppConfig, rate_hz: int, sep: SeparatorInfo | None) -> int:
    """The restart step in client frames: a whole number of blocks that is a whole
    number of client frames and, with a separator, of its samples."""
    block = cfg.engine.block_samples
    rates = [rate_hz] + ([sep.rate_hz] if sep is not None else [])
    blocks = 1
    for r in rates:
        need = ANALYSIS_RATE_HZ // math.gcd(block * r, ANALYSIS_RATE_HZ)
        blocks = blocks * need // math.gcd(blocks, need)
    return blocks * block * rate_hz // ANALYSIS_RATE_HZ


def preroll_frames(cfg: AppConfig, rate_hz: int, sep: SeparatorInfo | None) -> int:
    """Client frames a resumed stream must run before W besides the detector's ring:
    one block (the halo of the first analysed one), the resamplers' settling, and with
    a separator its whole window (every window over W must read real audio)."""
    frames = cfg.engine.block_samples * rate_hz // ANALYSIS_RATE_HZ + int(SETTLE_S * rate_hz)
    if sep is not None:
        frames += -(-sep.window_samples * rate_hz // sep.rate_hz)
    return frames


def encode(p: ResumePoint, digest: bytes) -> bytes:
    d, v = p.detector, p.voice
    pend = d.pending
    det = _Detector(**{**_fields(d, _ARRAYS), "pending": None if pend is None else (
        pend.hop, pend.score, pend.pause_start, pend.pause_end),
        "hist_e": _f32(d.hist_e), "hist_p": _f32(d.hist_p),
        "recent_power": np.ascontiguousarray(d.recent_power, np.float64).tobytes()})
    return msgspec.msgpack.encode(_Token(
        version=TOKEN_VERSION, digest=digest, origin=p.origin, block=p.block,
        sample=p.sample, resume_from=p.resume_from, cuts=p.cuts,
        vad_state=_f32(p.vad_state), mix_state=_f32(p.mix_state), detector=det,
        voice_hidden=b"" if v is None else _f32(v.hidden),
        voice_level=0.0 if v is None else v.level,
        voice_started=v is not None and v.started,
        voice_tail=b"" if v is None else _f32(v.mix_tail)))


def decode(token: bytes, digest: bytes, *, mix_vad: bool, block_samples: int,
           rate_hz: int, voice_shape: tuple[int, int] = (0, 0)) -> ResumePoint:
    """The checkpoint in ``token``; ConfigError (INVALID_ARGUMENT) saying why when it
    does not parse, was made for another server version or config, or does not add
    up. ``mix_vad``: the stream analyses the mix too (its VAD state is in the token);
    ``voice_shape``: the voice detector's state shape ((0, 0): it does not run)."""
    voice_hidden = voice_shape[0] * voice_shape[1]
    where = "config.resume_token"
    if len(token) > MAX_RESUME_TOKEN_BYTES:
        raise ConfigError(f"{where}: {len(token)} bytes, more than any token")
    try:
        t = msgspec.msgpack.decode(token, type=_Token)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{where}: not a resume token ({exc}); pass Checkpoint.token "
                          "as the server sent it") from None
    if t.version != TOKEN_VERSION or t.digest != digest:
        raise ConfigError(
            f"{where}: made by another server version or for another config (format, "
            f"mode, policy or separation), so this stream would analyse differently; "
            f"resume on a replica of server {__version__} with the first stream's "
            "config, or start over")
    d = t.detector
    hist = len(d.hist_e) // 4
    hops_per_block = block_samples // HOP_SAMPLES
    w = t.block * block_samples * rate_hz // ANALYSIS_RATE_HZ
    vad_bytes = 4 * VAD_STATE_FLOATS
    checks = [
        (t.origin >= 0 and t.block >= 1 and t.cuts >= 0, "negative position"),
        (t.sample == w and 0 <= t.resume_from <= d.ring_start <= w, "positions disagree"),
        (d.next_hop == t.block * hops_per_block, "the detector is not at the checkpoint"),
        (len(d.hist_e) == len(d.hist_p) and len(d.hist_e) % 4 == 0
         and d.hist_start + hist == d.next_hop and d.hist_start >= 0, "history"),
        (len(d.recent_power) % 8 == 0, "levels"),
        (len(t.vad_state) == vad_bytes and len(t.mix_state) == (vad_bytes if mix_vad else 0),
         "VAD state"),
        (d.final_client <= w and d.last_cut_client <= w, "watermarks"),
        (len(t.voice_hidden) == 4 * voice_hidden and len(t.voice_tail) == (
            4 * HOP_SAMPLES if voice_hidden else 0) and math.isfinite(t.voice_level),
         "voice detector state"),
    ]
    bad = [what for ok, what in checks if not ok]
    if bad:
        raise ConfigError(f"{where}: does not add up ({', '.join(bad)}); pass "
                          "Checkpoint.token as the server sent it")
    pend = d.pending
    state = DetectorState(**{
        **_fields(d, _ARRAYS), "pending": None if pend is None else Candidate(
            hop=pend[0], score=pend[1], pause_start=pend[2], pause_end=pend[3]),
        "hist_e": _arr(d.hist_e, np.float32), "hist_p": _arr(d.hist_p, np.float32),
        "recent_power": _arr(d.recent_power, np.float64)})
    voice = None if not voice_hidden else VoiceState(
        hidden=_arr(t.voice_hidden, np.float32).reshape(voice_shape),
        level=t.voice_level, started=t.voice_started,
        mix_tail=_arr(t.voice_tail, np.float32))
    return ResumePoint(origin=t.origin, block=t.block, sample=t.sample,
                       resume_from=t.resume_from, cuts=t.cuts,
                       vad_state=_arr(t.vad_state, np.float32),
                       mix_state=_arr(t.mix_state, np.float32), detector=state, voice=voice)


# The detector fields a token stores in another form; the rest are copied as they are.
_ARRAYS = ("pending", "hist_e", "hist_p", "recent_power")


def _fields(obj: object, besides: tuple[str, ...]) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in _Detector.__struct_fields__ if f not in besides}


def without_ring(state: DetectorState) -> DetectorState:
    return dataclasses.replace(state, ring=np.zeros(0, np.float32))


def _f32(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, np.float32).tobytes()


def _arr(b: bytes, dtype: type[np.floating]) -> np.ndarray:
    return np.frombuffer(b, dtype).copy()  # writable, owned: the state outlives the token
