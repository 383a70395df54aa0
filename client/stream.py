"""What a stream is, independent of how it is driven: options and typed events.

Shared by the asyncio client (``aio``) and the sync client (``sync``). The only
module of the SDK that converts protobuf messages into client types
(:func:`event_from_proto`); imports protobuf stubs and grpc status codes, nothing
of ``seamcut.server``.

The exceptions live in ``errors`` and are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

import grpc
from seamcut.client.errors import (
    AudioError,
    ClientError,
    InvalidOptions,
    SeamcutRpcError,
    SeamcutStreamError,
    StreamClosedError,
    rpc_error,
)

from seamcut.v1 import seamcut_pb2 as pb

EncodingName = Literal["pcm_s16le", "f32le"]
ModeName = Literal["speech", "song"]
CutKindName = Literal["pause", "forced", "end"]
DRAINING_NOTICE = "draining"  # NoticeEvent.code of a server that is shutting down
T = TypeVar("T")
__all__ = [  # the errors, for callers that import them from here
    "AudioError", "ClientError", "SeamcutRpcError", "SeamcutStreamError", "StreamClosedError",
]

ENCODINGS: dict[str, pb.Encoding] = {"pcm_s16le": pb.PCM_S16LE, "f32le": pb.F32LE}
MODES: dict[str, pb.Mode] = {"speech": pb.SPEECH, "song": pb.SONG}
_ENCODING_NAMES = {v: k for k, v in ENCODINGS.items()}
_MODE_NAMES = {v: k for k, v in MODES.items()}
_CUT_KINDS: dict[int, CutKindName] = {pb.PAUSE: "pause", pb.FORCED: "forced", pb.END: "end"}
_POLICY_FIELDS = (
    "min_segment_ms", "max_segment_ms", "min_gap_ms", "min_pause_ms", "pause_search_ms",
    "vad_threshold", "background_voices",
)
_EVENT_FIELDS = ("vad_segments", "chunk_traces", "progress", "progress_interval_ms",
                 "checkpoint_interval_ms")


# grpc.aio can report a server's status as this when a client write was in flight as
# the server ended the stream (grpc/grpc#36066); see AsyncStream._status_error.
CORE_WRITE_ERROR = (grpc.StatusCode.INTERNAL, "Internal error from Core")


def status_now(call: Any, *, answered: bool = True,
               tls: bool | None = None) -> SeamcutRpcError | None:
    """The status of a *finished* grpc.aio call, read synchronously (e.g. in a done
    callback): its status coroutines return without suspending once the call is done.
    None if the call is still running or ended OK."""
    values = []
    for method in (call.code, call.details, call.trailing_metadata):
        coro = method()  # one at a time: an early return must leave none un-awaited
        try:
            coro.send(None)
        except StopIteration as stop:
            values.append(stop.value)
        else:  # it suspended: the call is not finished
            coro.close()
            return None
    code, details, trailing = values
    if code == grpc.StatusCode.OK:
        return None
    return rpc_error(code, details, trailing or (), answered=answered, tls=tls)


# ---------------------------------------------------------------- options


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamOptions:
    """The StreamConfig of one stream. ``None`` fields take the server's defaults.

    Units are in the names: milliseconds for the cut policy, frames (samples per
    channel) for ``start_sample``. ``vad_threshold`` is a probability in (0, 1).
    The server validates ranges and names the offending field in INVALID_ARGUMENT.
    """

    sample_rate_hz: int
    channels: int = 1
    encoding: EncodingName = "pcm_s16le"
    mode: ModeName | None = None
    min_segment_ms: int | None = None
    max_segment_ms: int | None = None  # 0 = no maximum
    min_gap_ms: int | None = None  # 0 = no suppression
    min_pause_ms: int | None = None
    pause_search_ms: int | None = None
    vad_threshold: float | None = None
    # SPEECH mode: others talk behind the speaker, whose pauses are then found by level
    # too (leave it unset for a speaker alone or over music: protos/, CutPolicy)
    background_voices: bool | None = None
    vad_segments: bool | None = None
    chunk_traces: bool | None = None
    progress: bool | None = None
    progress_interval_ms: int | None = None  # server default 10; 0 = a Progress per message
    # A CheckpointEvent after at least this much audio analysed since the last (0 or
    # None = none; the SDK asks for them itself when it may resume the stream).
    checkpoint_interval_ms: int | None = None
    request_id: str = ""
    start_sample: int = 0
    # Resume a stream exactly: a CheckpointEvent's token, with start_sample its
    # resume_from and the audio from there (docs/PROTOCOL.md, "Resuming").
    resume_token: bytes = b""
    # SONG mode: separator backend ("" = server default, "builtin", "mdx"), channels
    # that carry a clean vocal stem (then no separation runs), separation hop in ms.
    separator: str = ""
    vocal_stem_channels: tuple[int, ...] = ()
    window_hop_ms: int | None = None

    def __post_init__(self) -> None:
        # Only what the client itself relies on (encoding audio); ranges are the server's.
        if self.encoding not in ENCODINGS:
            raise InvalidOptions(
                f"encoding: must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}"
            )
        if self.mode is not None and self.mode not in MODES:
            raise InvalidOptions(
                f"mode: must be one of {', '.join(MODES)} or None, got {self.mode!r}")
        if self.sample_rate_hz <= 0 or self.channels <= 0:
            raise InvalidOptions(
                f"sample_rate_hz and channels must be positive, got {self.sample_rate_hz} Hz, "
                f"{self.channels} channel(s)"
            )

    @property
    def frame_bytes(self) -> int:
        """Bytes per interleaved frame in this encoding."""
        return self.channels * (2 if self.encoding == "pcm_s16le" else 4)

    def to_proto(self) -> pb.StreamConfig:
        """The StreamConfig message; unset (None) optional fields stay unset on the wire."""
        msg = pb.StreamConfig(
            format=pb.AudioFormat(
                encoding=ENCODINGS[self.encoding],
                sample_rate_hz=self.sample_rate_hz,
                channels=self.channels,
            ),
            mode=MODES[self.mode] if self.mode is not None else pb.MODE_UNSPECIFIED,
            request_id=self.request_id,
            start_sample=self.start_sample,
            resume_token=self.resume_token,
        )
        for name in _POLICY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(msg.policy, name, value)
        for name in _EVENT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(msg.events, name, value)
        if self.separator or self.vocal_stem_channels or self.window_hop_ms is not None:
            msg.separation.backend = self.separator
            msg.separation.vocal_stem_channels.extend(self.vocal_stem_channels)
            if self.window_hop_ms is not None:
                msg.separation.window_hop_ms = self.window_hop_ms
        return msg

    @classmethod
    def from_proto(cls, msg: pb.StreamConfig) -> StreamOptions:
        """Read a StreamConfig (e.g. ``Ready.config``, every default filled in)."""
        fmt = msg.format
        opt: dict[str, Any] = {
            name: getattr(msg.policy, name) for name in _POLICY_FIELDS if msg.policy.HasField(name)
        }
        opt.update(
            {name: getattr(msg.events, name) for name in _EVENT_FIELDS
             if msg.events.HasField(name)}
        )
        return cls(
            sample_rate_hz=fmt.sample_rate_hz,
            channels=fmt.channels,
            encoding=_ENCODING_NAMES.get(fmt.encoding, "pcm_s16le"),  # type: ignore[arg-type]
            mode=_MODE_NAMES.get(msg.mode),  # type: ignore[arg-type]
            request_id=msg.request_id,
            start_sample=msg.start_sample,
            separator=msg.separation.backend,
            vocal_stem_channels=tuple(msg.separation.vocal_stem_channels),
            window_hop_ms=(msg.separation.window_hop_ms
                           if msg.separation.HasField("window_hop_ms") else None),
            **opt,
        )


# ---------------------------------------------------------------- events


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadyEvent:
    """The stream is open. ``config`` is the config in force, server defaults filled in.

    ``lookahead_ms`` / ``lookahead_samples``: worst-case delay from sending a sample to
    every cut at or before it being final (frames of the stream's sample rate).
    """

    session_id: str
    lookahead_ms: int
    lookahead_samples: int
    block_ms: int
    device: str
    server_version: str = ""
    config: StreamOptions | None = None
    # The server's trace id for this stream (32 hex digits; "" from a server without
    # tracing): the caller's own trace when it had a current OpenTelemetry span.
    trace_id: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class CutEvent:
    """A final cut point. ``sample`` is a frame index from stream start (plus start_sample);
    ``seconds`` is the same for display; ``score`` is in [0, 1]; the pause interval is in
    frames, as observed when the cut was decided."""

    sample: int
    seconds: float
    kind: CutKindName
    score: float
    pause_start_sample: int
    pause_end_sample: int
    index: int


@dataclass(frozen=True, kw_only=True, slots=True)
class VadSegmentEvent:
    """Detected speech [start_sample, end_sample) in frames; mean VAD probability in [0, 1]."""

    start_sample: int
    end_sample: int
    mean_probability: float


@dataclass(frozen=True, kw_only=True, slots=True)
class TraceEvent:
    """Timing of one processed block: range in frames, client seqs, stage times in ms."""

    block_index: int
    start_sample: int
    end_sample: int
    first_seq: int
    last_seq: int
    client_send_time_ns: int  # Unix ns, echo of the last contributing chunk's field
    server_receive_time_ns: int  # Unix ns
    queue_wait_ms: float
    h2d_ms: float
    separation_ms: float
    vad_ms: float
    features_ms: float
    d2h_ms: float
    total_ms: float
    batch_size: int
    separation_batch_size: int
    device: str
    gpu_pipeline_used: bool
    ipc_ms: float = 0.0  # between the server's transport worker and its engine, both ways


@dataclass(frozen=True, kw_only=True, slots=True)
class ProgressEvent:
    """Watermarks in frames: received, analysed, and final (no cut can appear before it)."""

    samples_received: int
    samples_processed: int
    samples_final: int
    last_seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class FlushedEvent:
    """Answer to a flush: everything decidable up to ``progress.samples_final`` was sent."""

    flush_id: int
    progress: ProgressEvent


@dataclass(frozen=True, kw_only=True, slots=True)
class NoticeEvent:
    """Something the client should know, e.g. code "gpu_fallback" or "draining"."""

    code: str
    message: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StageStats:
    """Per-stage block latency percentiles over the stream, milliseconds."""

    stage: str
    p50_ms: float
    p95_ms: float
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SummaryEvent:
    """The last event of a completed stream: totals (frames, counts) and wall seconds."""

    end_reason: str
    samples_received: int
    samples_processed: int
    chunks: int
    blocks: int
    cuts: int
    vad_segments: int
    wall_seconds: float
    stages: tuple[StageStats, ...] = field(default=())
    engine_id: str = ""  # the engine that served the stream ("inline": inside the worker)
    engine_pid: int = 0
    device: str = ""
    instance_id: str = ""  # the server's transport worker, "host:pid"
    # The longest silence between speech too short to be a pause (< min_pause_ms):
    # ms and first frame; both 0 if none (or from a server that does not say).
    longest_short_pause_ms: int = 0
    longest_short_pause_sample: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckpointEvent:
    """A point the stream can be resumed from exactly: open a stream with
    ``start_sample=resume_from`` and ``resume_token=token`` and send the audio from
    ``resume_from`` again; its cuts are this stream's after ``sample``, indexes from
    ``cuts`` on. Frames, start_sample included. Only with checkpoint_interval_ms."""

    sample: int
    resume_from: int
    cuts: int
    token: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class ResumedEvent:
    """The stream moved to another replica after ``reason``; the audio from
    ``resume_sample`` (frames, start_sample included) was sent again. Events after it
    continue the ones before it: nothing delivered is repeated. ``resumes`` counts the
    stream's moves so far. The final SummaryEvent is the last replica's: its counts
    and times describe only the last stream (from ``resume_sample``), not the whole."""

    session_id: str
    previous_session_id: str
    resume_sample: int
    replayed_frames: int
    reason: str
    resumes: int


Event = (
    ReadyEvent | CutEvent | VadSegmentEvent | TraceEvent | ProgressEvent | FlushedEvent
    | NoticeEvent | SummaryEvent | ResumedEvent | CheckpointEvent
)


def _copy(cls: type[T], msg: Any, **override: Any) -> T:
    # The event classes mirror their messages field for field (names and units).
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    return cls(**{n: getattr(msg, n) for n in names if n not in override}, **override)


def event_from_proto(msg: pb.ServerMessage) -> Event | None:
    """Convert one ServerMessage into a client event.

    Returns None for a message this client does not know (a newer server's addition),
    so old clients keep working.
    """
    kind = msg.WhichOneof("msg")
    if kind == "ready":
        r = msg.ready
        config = StreamOptions.from_proto(r.config) if r.HasField("config") else None
        return _copy(ReadyEvent, r, config=config)
    if kind == "cut":
        # A kind this client does not know (a newer server) is still a cut; report it as
        # the generic kind rather than dropping a position the user relies on.
        return _copy(CutEvent, msg.cut, kind=_CUT_KINDS.get(msg.cut.kind, "pause"))
    if kind == "vad_segment":
        return _copy(VadSegmentEvent, msg.vad_segment)
    if kind == "trace":
        return _copy(TraceEvent, msg.trace)
    if kind == "progress":
        return _copy(ProgressEvent, msg.progress)
    if kind == "flushed":
        return FlushedEvent(flush_id=msg.flushed.flush_id,
                            progress=_copy(ProgressEvent, msg.flushed.progress))
    if kind == "notice":
        return _copy(NoticeEvent, msg.notice)
    if kind == "checkpoint":
        return _copy(CheckpointEvent, msg.checkpoint)
    if kind == "summary":
        s = msg.summary
        reason = s.end_reason
        return _copy(
            SummaryEvent, s,
            end_reason=pb.EndReason.Name(reason).lower() if reason in pb.EndReason.values()
            else str(reason),
            stages=tuple(_copy(StageStats, x) for x in s.stages),
        )
    return None
