"""Typed domain events the server emits for a stream. A leaf module.

Positions are frame indices in the client's sample rate, already offset by the
stream's ``start_sample``. The transport turns each event into one ServerMessage.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class CutKind(Enum):
    PAUSE = "pause"
    FORCED = "forced"
    END = "end"


@dataclass(frozen=True, kw_only=True, slots=True)
class Ready:
    session_id: str
    lookahead_ms: int
    lookahead_samples: int
    block_ms: int
    device: str
    trace_id: str = ""  # the stream span's W3C trace id (set by the transport)


@dataclass(frozen=True, kw_only=True, slots=True)
class Cut:
    sample: int
    seconds: float
    kind: CutKind
    score: float
    pause_start_sample: int
    pause_end_sample: int
    index: int


@dataclass(frozen=True, kw_only=True, slots=True)
class VadSegment:
    start_sample: int
    end_sample: int
    mean_probability: float


@dataclass(frozen=True, kw_only=True, slots=True)
class StageTimes:
    """Wall times of one block in the pipeline, milliseconds."""

    queue_wait_ms: float = 0.0
    h2d_ms: float = 0.0
    separation_ms: float = 0.0
    vad_ms: float = 0.0
    features_ms: float = 0.0
    d2h_ms: float = 0.0
    ipc_ms: float = 0.0  # between the worker and the engine, both ways
    total_ms: float = 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ChunkTrace:
    block_index: int
    start_sample: int
    end_sample: int
    first_seq: int
    last_seq: int
    client_send_time_ns: int
    server_receive_time_ns: int
    times: StageTimes
    batch_size: int
    separation_batch_size: int
    device: str
    gpu_pipeline_used: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Progress:
    samples_received: int
    samples_processed: int
    samples_final: int
    last_seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Flushed:
    flush_id: int
    progress: Progress


@dataclass(frozen=True, kw_only=True, slots=True)
class Notice:
    code: str
    message: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StageStats:
    stage: str
    p50_ms: float
    p95_ms: float
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Summary:
    samples_received: int
    samples_processed: int
    chunks: int
    blocks: int
    cuts: int
    vad_segments: int
    wall_seconds: float
    stages: tuple[StageStats, ...]
    engine_id: str  # the engine that served the stream last ("inline" in process)
    engine_pid: int
    device: str
    # The longest silence between speech too short to be a pause (< min_pause): its
    # length in ms and first frame (both 0 if none). Why a stream got no pause cut.
    longest_short_pause_ms: int = 0
    longest_short_pause_sample: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Checkpoint:
    """A point the stream can be resumed from exactly (StreamConfig.resume_token)."""

    sample: int  # analysis goes on from here (absolute)
    resume_from: int  # the first frame a resumed stream sends (absolute, <= sample)
    cuts: int  # cuts emitted before it
    token: bytes


Event = (Ready | Cut | VadSegment | ChunkTrace | Progress | Flushed | Notice | Summary
         | Checkpoint)
