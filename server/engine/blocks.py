"""What travels through the pipeline: blocks, per-stream engine state, results."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from seamcut.server.dsp.detector import DetectorEvent, DetectorParams, DetectorState
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
    batch_size: int = 0

    @property
    def client_end(self) -> int:
        return self.client_start + int(self.client.shape[0])


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
    error: SeamcutError | None = None
