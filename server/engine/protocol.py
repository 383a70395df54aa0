"""What a transport worker asks of an engine, and what it gets back.

Plain data only: ints, strings, enums and float32 numpy arrays, no callbacks, no live
objects, nothing that needs pickle. Over IPC the scalars travel as one msgpack
header and every array as its own frame (:mod:`seamcut.server.engine.wire`); in
process the same objects are passed by reference. The engine is a pure function of
a :class:`Request`: the same request gives the same :class:`Result`, which is what
makes replay after an engine restart exact.

Everything sequential per stream stays with the caller: the block grid, resampling,
overlap-add, the detector fold, the zero-crossing snap, sequence numbers and trace
bookkeeping. A request carries the recurrent model state in and its result carries
the new state out. So that a stream's next request need not wait for the previous
result (the VAD would idle for a round trip per request), an ANALYSE request may
instead name the previous request of its stream in ``state_from``: the engine then
starts from the state that request ended in, which it keeps until the stream's next
request or ``last`` (one entry per stream, like a cache reference). A caller that
replays requests to a new engine resolves such a reference from the results it
already has, so a request always means one exact computation.

A leaf of the engine package: imports numpy and the grid constants of ``config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from seamcut.server.config import HOP_SAMPLES, VAD_FRAME_SAMPLES

# Silero's recurrent state packed as one array: LSTM state [2, 128] then the last
# 64 samples of context (1,280 bytes). Opaque to callers.
VAD_STATE_FLOATS = 2 * 128 + 64
EMPTY = np.zeros(0, np.float32)


# The block layout both sides count with: a block of n analysis samples has one VAD
# probability per 512-sample frame (the last one zero-padded) and one band energy per
# 160-sample hop.
def frames_per_block(length16: int) -> int:
    return -(-length16 // VAD_FRAME_SAMPLES)


def hops_per_block(length16: int) -> int:
    return -(-length16 // HOP_SAMPLES)


def initial_vad_state() -> np.ndarray:
    """The state of a stream that has not been analysed yet (Silero starts at zeros)."""
    return np.zeros(VAD_STATE_FLOATS, np.float32)


class Kind(IntEnum):
    ANALYSE = 1  # consecutive 16 kHz blocks of one stream -> VAD probabilities, energy
    SEPARATE = 2  # separation windows of one stream -> vocal windows


class ErrorCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a stage failed on this request; the message says which and why
    BAD_REQUEST = 2  # the request names something the engine does not have
    UNAVAILABLE = 3  # the engine is down and the request could not be replayed
    CANCELLED = 4  # the stream was cancelled before the request ran


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    """One unit of engine work for one stream.

    ANALYSE: ``audio`` is [HOP + sum(lengths)] analysis samples (160 samples of left
    context, then the blocks back to back), ``lengths`` the 16 kHz length of each
    block (all but the stream's last are whole blocks), ``mix`` the mix over the same
    span (SONG streams; empty otherwise), ``vad_state``/``mix_state`` the states
    before the first block.
    SEPARATE: ``audio`` is [m, 2, window] stereo windows at the backend's rate,
    ``backend`` the separator's name, ``index`` the first window's number.
    """

    kind: Kind
    stream: str  # stream key, unique per server
    id: int  # unique per submitting client: matches the result, orders replay
    index: int  # first block (ANALYSE) or first window (SEPARATE) of the stream
    audio: np.ndarray
    lengths: tuple[int, ...] = ()
    mix: np.ndarray = field(default_factory=lambda: EMPTY)
    vad_state: np.ndarray = field(default_factory=lambda: EMPTY)
    mix_state: np.ndarray = field(default_factory=lambda: EMPTY)
    state_from: int = 0  # ANALYSE: id of the request whose end state to start from (0: given)
    last: bool = False  # ANALYSE: the stream's final request (the engine forgets the stream)
    backend: str = ""

    @property
    def cost(self) -> int:
        """Credits the request holds while in flight: blocks or windows (at least 1)."""
        n = len(self.lengths) if self.kind is Kind.ANALYSE else int(self.audio.shape[0])
        return max(1, n)


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    """The engine's answer to one :class:`Request` (same ``stream``, ``id``, ``index``).

    ANALYSE: ``probs`` has one Silero probability per 512-sample frame of each block
    (a block's last frame zero-padded), ``probs_mix`` the same for the mix (SONG),
    ``energy_db`` one band energy per 160-sample hop, ``vad_state``/``mix_state`` the
    states after the last block. SEPARATE: ``vocal`` [m, 2, window].
    Times are milliseconds inside the engine; ``received_ns``/``sent_ns`` are
    CLOCK_MONOTONIC (one clock for every process on a host) when the engine took the
    request and when it let go of the result, so the caller can tell IPC time apart.
    """

    kind: Kind
    stream: str
    id: int
    index: int
    probs: np.ndarray = field(default_factory=lambda: EMPTY)
    probs_mix: np.ndarray = field(default_factory=lambda: EMPTY)
    energy_db: np.ndarray = field(default_factory=lambda: EMPTY)
    vad_state: np.ndarray = field(default_factory=lambda: EMPTY)
    mix_state: np.ndarray = field(default_factory=lambda: EMPTY)
    vocal: np.ndarray = field(default_factory=lambda: EMPTY)
    batch_size: int = 0  # streams (S2) or windows (S1) that shared the model call
    queue_ms: float = 0.0
    separation_ms: float = 0.0
    vad_ms: float = 0.0
    features_ms: float = 0.0
    h2d_ms: float = 0.0  # host->device and device->host copies (CUDA timing events)
    d2h_ms: float = 0.0
    # "cuda" when the request ran through the CUDA-stream pipeline; "" otherwise (the
    # CPU path, or a CPU re-run after a device fault). Traces say only what happened.
    pipeline: str = ""
    # Why this ran on the CPU although the engine has a GPU pipeline ("" = it did not
    # fall back): the session tells its client once, with a Notice "gpu_fallback".
    fallback: str = ""
    received_ns: int = 0
    sent_ns: int = 0
    error: ErrorCode = ErrorCode.OK
    message: str = ""


def failed(req: Request, code: ErrorCode, message: str) -> Result:
    """The result that reports ``req`` could not be done."""
    return Result(kind=req.kind, stream=req.stream, id=req.id, index=req.index, error=code,
                  message=message)


@dataclass(frozen=True, kw_only=True, slots=True)
class SeparatorInfo:
    """What a session needs to cut windows for a separator backend."""

    name: str
    rate_hz: int
    window_samples: int
    default_hop_samples: int


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineInfo:
    """Typed capabilities of an engine (model objects never leave it)."""

    engine_id: str  # "inline" or "engine-<n>"
    pid: int
    device: str  # where separation runs: "cpu" or "cuda:N"
    fallback_reason: str  # why a requested GPU is (partly) not used; "" = none
    separators: tuple[SeparatorInfo, ...]
    credits: int  # request cost units this client may have in flight at once

    def separator(self, name: str) -> SeparatorInfo | None:
        return next((s for s in self.separators if s.name == name), None)


class StateMissing(RuntimeError):
    """A request continues from a state the engine does not hold."""


def vad_frames(x: np.ndarray, lengths: tuple[int, ...]) -> np.ndarray:
    """Blocks laid end to end in ``x`` as [frames, 512], each block's last frame padded."""
    parts, pos = [], 0
    for n in lengths:
        f = frames_per_block(n)
        b = x[pos : pos + n]
        if b.shape[0] < f * VAD_FRAME_SAMPLES:
            b = np.pad(b, (0, f * VAD_FRAME_SAMPLES - b.shape[0]))
        parts.append(b.reshape(f, VAD_FRAME_SAMPLES))
        pos += n
    if not parts:
        return np.zeros((0, VAD_FRAME_SAMPLES), np.float32)
    return np.concatenate(parts)


def chained_runs(batch: list[Request]) -> list[list[Request]]:
    """``batch`` in runs: a stream's consecutive requests that each continue the one
    before it (``state_from``), which S2 runs back to back as one sequence."""
    runs: list[list[Request]] = []
    open_run: dict[str, list[Request]] = {}
    for r in batch:
        run = open_run.get(r.stream)
        if run is not None and r.state_from == run[-1].id:
            run.append(r)
        else:
            open_run[r.stream] = [r]
            runs.append(open_run[r.stream])
    return runs
