"""What travels through the pipeline: blocks, per-stream engine state, results."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from seamcut.server.dsp.detector import DetectorEvent, DetectorParams, DetectorState
from seamcut.server.dsp.overlap_add import OverlapAdd
from seamcut.server.dsp.reblock import GridBlock, Reblocker
from seamcut.server.errors import SeamcutError
from seamcut.server.events import StageTimes
from seamcut.server.models.vad import VadState


@dataclass(slots=True)
class StreamState:
    """Recurrent state of one stream inside the engine.

    Owned by the session, touched only by the stage that is processing the stream's
    current block: blocks of a stream move through the stages in order, so no two
    threads use it at once.
    """

    key: str
    params: DetectorParams
    deliver: Callable[[BlockResult], None]  # called from a worker thread
    vad: VadState = field(default_factory=VadState.initial)
    detector: DetectorState = field(default_factory=DetectorState)
    closed: threading.Event = field(default_factory=threading.Event)
    song: SongState | None = None  # SONG mode with a separator: S1's per-stream state


@dataclass(slots=True)
class Block:
    """One fixed-grid block of one stream, with the context its stages need."""

    stream: StreamState
    index: int
    start16: int  # first analysis sample (a multiple of the block length)
    length16: int  # real samples in the block (< block length only for the last block)
    samples16: np.ndarray  # [HOP + length16]: 160 samples of left context, then the block
    client_start: int  # client frames covered by the block: [client_start, client_end)
    client: np.ndarray  # mono client-rate audio of that range (for snapping)
    first_seq: int
    last_seq: int
    client_send_time_ns: int
    receive_time_ns: int
    is_last: bool
    t_submit: float = 0.0
    t_queue: float = 0.0  # accumulated wait in stage queues
    t_enqueued: float = 0.0
    times: dict[str, float] = field(default_factory=dict)
    probs: np.ndarray | None = None  # per VAD frame, set by S2
    mix16: np.ndarray | None = None  # SONG: the mix over the block at 16 kHz (mix VAD)
    probs_mix: np.ndarray | None = None
    batch_size: int = 0
    releases: int = 1  # session slots freed when this block's result arrives
    marker: bool = False  # carries only a release through the stages, in order
    separation_ms: float = 0.0
    separation_batch: int = 0

    @property
    def client_end(self) -> int:
        return self.client_start + int(self.client.shape[0])


@dataclass(slots=True)
class SongState:
    """S1's per-stream state: overlap-add of window outputs and the 16 kHz re-blocking
    of the separated vocal."""

    separator: str
    ola: OverlapAdd
    reblock: Reblocker
    mix16: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    mix16_start: int = 0  # analysis index of mix16[0]
    vad_mix: VadState = field(default_factory=VadState.initial)


@dataclass(slots=True)
class SepJob:
    """Separation windows of one stream, plus the client mono that arrived with them."""

    stream: StreamState
    windows: np.ndarray  # [m, 2, size] at the separator's rate (m may be 0)
    client: np.ndarray  # client-rate mono mix received since the previous job
    mix16: np.ndarray  # the same mix at 16 kHz
    total_model: int  # model samples in the whole stream; -1 until the last job
    is_last: bool
    first_seq: int
    last_seq: int
    client_send_time_ns: int
    receive_time_ns: int
    t_submit: float = 0.0
    t_queue: float = 0.0
    t_enqueued: float = 0.0


@dataclass(frozen=True, slots=True)
class BlockResult:
    """What S3 hands back to the session for one block (or the error that stopped it)."""

    index: int
    client_start: int
    client_end: int
    first_seq: int
    last_seq: int
    client_send_time_ns: int
    receive_time_ns: int
    is_last: bool
    events: tuple[DetectorEvent, ...]
    final_client: int
    times: StageTimes
    batch_size: int
    releases: int = 1
    marker: bool = False
    separation_batch: int = 0
    error: SeamcutError | None = None


def block_from_grid(
    stream: StreamState, gb: GridBlock, *, first_seq: int, last_seq: int, send_ns: int,
    recv_ns: int, releases: int = 1,
) -> Block:
    """Wrap a grid block for the pipeline, with the client chunk info its trace echoes."""
    return Block(
        stream=stream, index=gb.index, start16=gb.start16, length16=gb.length16,
        samples16=gb.samples16, client_start=gb.client_start, client=gb.client,
        first_seq=first_seq, last_seq=last_seq, client_send_time_ns=send_ns,
        receive_time_ns=recv_ns, is_last=gb.is_last, releases=releases,
    )
