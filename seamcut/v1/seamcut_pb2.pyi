from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    PCM_S16LE: _ClassVar[Encoding]
    F32LE: _ClassVar[Encoding]

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    SPEECH: _ClassVar[Mode]
    SONG: _ClassVar[Mode]

class CutKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CUT_KIND_UNSPECIFIED: _ClassVar[CutKind]
    PAUSE: _ClassVar[CutKind]
    FORCED: _ClassVar[CutKind]
    END: _ClassVar[CutKind]

class EndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    END_REASON_UNSPECIFIED: _ClassVar[EndReason]
    COMPLETED: _ClassVar[EndReason]
ENCODING_UNSPECIFIED: Encoding
PCM_S16LE: Encoding
F32LE: Encoding
MODE_UNSPECIFIED: Mode
SPEECH: Mode
SONG: Mode
CUT_KIND_UNSPECIFIED: CutKind
PAUSE: CutKind
FORCED: CutKind
END: CutKind
END_REASON_UNSPECIFIED: EndReason
COMPLETED: EndReason

class ClientMessage(_message.Message):
    __slots__ = ("config", "audio", "control")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    audio: AudioChunk
    control: Control
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., control: _Optional[_Union[Control, _Mapping]] = ...) -> None: ...

class AudioFormat(_message.Message):
    __slots__ = ("encoding", "sample_rate_hz", "channels")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    encoding: Encoding
    sample_rate_hz: int
    channels: int
    def __init__(self, encoding: _Optional[_Union[Encoding, str]] = ..., sample_rate_hz: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class CutPolicy(_message.Message):
    __slots__ = ("min_segment_ms", "max_segment_ms", "min_gap_ms", "min_pause_ms", "pause_search_ms", "vad_threshold", "background_voices")
    MIN_SEGMENT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEGMENT_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_GAP_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_PAUSE_MS_FIELD_NUMBER: _ClassVar[int]
    PAUSE_SEARCH_MS_FIELD_NUMBER: _ClassVar[int]
    VAD_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_VOICES_FIELD_NUMBER: _ClassVar[int]
    min_segment_ms: int
    max_segment_ms: int
    min_gap_ms: int
    min_pause_ms: int
    pause_search_ms: int
    vad_threshold: float
    background_voices: bool
    def __init__(self, min_segment_ms: _Optional[int] = ..., max_segment_ms: _Optional[int] = ..., min_gap_ms: _Optional[int] = ..., min_pause_ms: _Optional[int] = ..., pause_search_ms: _Optional[int] = ..., vad_threshold: _Optional[float] = ..., background_voices: _Optional[bool] = ...) -> None: ...

class SeparationOptions(_message.Message):
    __slots__ = ("backend", "vocal_stem_channels", "window_hop_ms")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    VOCAL_STEM_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_HOP_MS_FIELD_NUMBER: _ClassVar[int]
    backend: str
    vocal_stem_channels: _containers.RepeatedScalarFieldContainer[int]
    window_hop_ms: int
    def __init__(self, backend: _Optional[str] = ..., vocal_stem_channels: _Optional[_Iterable[int]] = ..., window_hop_ms: _Optional[int] = ...) -> None: ...

class EventOptions(_message.Message):
    __slots__ = ("vad_segments", "chunk_traces", "progress", "progress_interval_ms", "checkpoint_interval_ms")
    VAD_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_TRACES_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    vad_segments: bool
    chunk_traces: bool
    progress: bool
    progress_interval_ms: int
    checkpoint_interval_ms: int
    def __init__(self, vad_segments: _Optional[bool] = ..., chunk_traces: _Optional[bool] = ..., progress: _Optional[bool] = ..., progress_interval_ms: _Optional[int] = ..., checkpoint_interval_ms: _Optional[int] = ...) -> None: ...

class StreamConfig(_message.Message):
    __slots__ = ("format", "mode", "policy", "separation", "events", "request_id", "start_sample", "resume_token")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SEPARATION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    format: AudioFormat
    mode: Mode
    policy: CutPolicy
    separation: SeparationOptions
    events: EventOptions
    request_id: str
    start_sample: int
    resume_token: bytes
    def __init__(self, format: _Optional[_Union[AudioFormat, _Mapping]] = ..., mode: _Optional[_Union[Mode, str]] = ..., policy: _Optional[_Union[CutPolicy, _Mapping]] = ..., separation: _Optional[_Union[SeparationOptions, _Mapping]] = ..., events: _Optional[_Union[EventOptions, _Mapping]] = ..., request_id: _Optional[str] = ..., start_sample: _Optional[int] = ..., resume_token: _Optional[bytes] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("seq", "data", "client_send_time_ns")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SEND_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    data: bytes
    client_send_time_ns: int
    def __init__(self, seq: _Optional[int] = ..., data: _Optional[bytes] = ..., client_send_time_ns: _Optional[int] = ...) -> None: ...

class Control(_message.Message):
    __slots__ = ("flush",)
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    flush: Flush
    def __init__(self, flush: _Optional[_Union[Flush, _Mapping]] = ...) -> None: ...

class Flush(_message.Message):
    __slots__ = ("flush_id",)
    FLUSH_ID_FIELD_NUMBER: _ClassVar[int]
    flush_id: int
    def __init__(self, flush_id: _Optional[int] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("ready", "cut", "vad_segment", "trace", "progress", "flushed", "summary", "notice", "checkpoint")
    READY_FIELD_NUMBER: _ClassVar[int]
    CUT_FIELD_NUMBER: _ClassVar[int]
    VAD_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FLUSHED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    ready: Ready
    cut: CutPoint
    vad_segment: VadSegment
    trace: ChunkTrace
    progress: Progress
    flushed: Flushed
    summary: Summary
    notice: Notice
    checkpoint: Checkpoint
    def __init__(self, ready: _Optional[_Union[Ready, _Mapping]] = ..., cut: _Optional[_Union[CutPoint, _Mapping]] = ..., vad_segment: _Optional[_Union[VadSegment, _Mapping]] = ..., trace: _Optional[_Union[ChunkTrace, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., flushed: _Optional[_Union[Flushed, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., notice: _Optional[_Union[Notice, _Mapping]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ...) -> None: ...

class Ready(_message.Message):
    __slots__ = ("session_id", "config", "lookahead_ms", "lookahead_samples", "block_ms", "device", "server_version", "trace_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    LOOKAHEAD_MS_FIELD_NUMBER: _ClassVar[int]
    LOOKAHEAD_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_MS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    config: StreamConfig
    lookahead_ms: int
    lookahead_samples: int
    block_ms: int
    device: str
    server_version: str
    trace_id: str
    def __init__(self, session_id: _Optional[str] = ..., config: _Optional[_Union[StreamConfig, _Mapping]] = ..., lookahead_ms: _Optional[int] = ..., lookahead_samples: _Optional[int] = ..., block_ms: _Optional[int] = ..., device: _Optional[str] = ..., server_version: _Optional[str] = ..., trace_id: _Optional[str] = ...) -> None: ...

class CutPoint(_message.Message):
    __slots__ = ("sample", "seconds", "kind", "score", "pause_start_sample", "pause_end_sample", "index")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PAUSE_START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    PAUSE_END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    sample: int
    seconds: float
    kind: CutKind
    score: float
    pause_start_sample: int
    pause_end_sample: int
    index: int
    def __init__(self, sample: _Optional[int] = ..., seconds: _Optional[float] = ..., kind: _Optional[_Union[CutKind, str]] = ..., score: _Optional[float] = ..., pause_start_sample: _Optional[int] = ..., pause_end_sample: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class VadSegment(_message.Message):
    __slots__ = ("start_sample", "end_sample", "mean_probability")
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    MEAN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    start_sample: int
    end_sample: int
    mean_probability: float
    def __init__(self, start_sample: _Optional[int] = ..., end_sample: _Optional[int] = ..., mean_probability: _Optional[float] = ...) -> None: ...

class ChunkTrace(_message.Message):
    __slots__ = ("block_index", "start_sample", "end_sample", "first_seq", "last_seq", "client_send_time_ns", "server_receive_time_ns", "queue_wait_ms", "h2d_ms", "separation_ms", "vad_ms", "features_ms", "d2h_ms", "batch_size", "separation_batch_size", "device", "gpu_pipeline_used", "total_ms", "ipc_ms")
    BLOCK_INDEX_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SEND_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SERVER_RECEIVE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    H2D_MS_FIELD_NUMBER: _ClassVar[int]
    SEPARATION_MS_FIELD_NUMBER: _ClassVar[int]
    VAD_MS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_MS_FIELD_NUMBER: _ClassVar[int]
    D2H_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEPARATION_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    GPU_PIPELINE_USED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    IPC_MS_FIELD_NUMBER: _ClassVar[int]
    block_index: int
    start_sample: int
    end_sample: int
    first_seq: int
    last_seq: int
    client_send_time_ns: int
    server_receive_time_ns: int
    queue_wait_ms: float
    h2d_ms: float
    separation_ms: float
    vad_ms: float
    features_ms: float
    d2h_ms: float
    batch_size: int
    separation_batch_size: int
    device: str
    gpu_pipeline_used: bool
    total_ms: float
    ipc_ms: float
    def __init__(self, block_index: _Optional[int] = ..., start_sample: _Optional[int] = ..., end_sample: _Optional[int] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., client_send_time_ns: _Optional[int] = ..., server_receive_time_ns: _Optional[int] = ..., queue_wait_ms: _Optional[float] = ..., h2d_ms: _Optional[float] = ..., separation_ms: _Optional[float] = ..., vad_ms: _Optional[float] = ..., features_ms: _Optional[float] = ..., d2h_ms: _Optional[float] = ..., batch_size: _Optional[int] = ..., separation_batch_size: _Optional[int] = ..., device: _Optional[str] = ..., gpu_pipeline_used: _Optional[bool] = ..., total_ms: _Optional[float] = ..., ipc_ms: _Optional[float] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("samples_received", "samples_processed", "samples_final", "last_seq")
    SAMPLES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FINAL_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    samples_received: int
    samples_processed: int
    samples_final: int
    last_seq: int
    def __init__(self, samples_received: _Optional[int] = ..., samples_processed: _Optional[int] = ..., samples_final: _Optional[int] = ..., last_seq: _Optional[int] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("sample", "resume_from", "cuts", "token")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    CUTS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    sample: int
    resume_from: int
    cuts: int
    token: bytes
    def __init__(self, sample: _Optional[int] = ..., resume_from: _Optional[int] = ..., cuts: _Optional[int] = ..., token: _Optional[bytes] = ...) -> None: ...

class Flushed(_message.Message):
    __slots__ = ("flush_id", "progress")
    FLUSH_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    flush_id: int
    progress: Progress
    def __init__(self, flush_id: _Optional[int] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StageStats(_message.Message):
    __slots__ = ("stage", "p50_ms", "p95_ms", "count")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    p50_ms: float
    p95_ms: float
    count: int
    def __init__(self, stage: _Optional[str] = ..., p50_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("end_reason", "samples_received", "samples_processed", "chunks", "blocks", "cuts", "vad_segments", "wall_seconds", "stages", "engine_id", "engine_pid", "device", "instance_id", "longest_short_pause_ms", "longest_short_pause_sample")
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    CUTS_FIELD_NUMBER: _ClassVar[int]
    VAD_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    ENGINE_ID_FIELD_NUMBER: _ClassVar[int]
    ENGINE_PID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    LONGEST_SHORT_PAUSE_MS_FIELD_NUMBER: _ClassVar[int]
    LONGEST_SHORT_PAUSE_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    end_reason: EndReason
    samples_received: int
    samples_processed: int
    chunks: int
    blocks: int
    cuts: int
    vad_segments: int
    wall_seconds: float
    stages: _containers.RepeatedCompositeFieldContainer[StageStats]
    engine_id: str
    engine_pid: int
    device: str
    instance_id: str
    longest_short_pause_ms: int
    longest_short_pause_sample: int
    def __init__(self, end_reason: _Optional[_Union[EndReason, str]] = ..., samples_received: _Optional[int] = ..., samples_processed: _Optional[int] = ..., chunks: _Optional[int] = ..., blocks: _Optional[int] = ..., cuts: _Optional[int] = ..., vad_segments: _Optional[int] = ..., wall_seconds: _Optional[float] = ..., stages: _Optional[_Iterable[_Union[StageStats, _Mapping]]] = ..., engine_id: _Optional[str] = ..., engine_pid: _Optional[int] = ..., device: _Optional[str] = ..., instance_id: _Optional[str] = ..., longest_short_pause_ms: _Optional[int] = ..., longest_short_pause_sample: _Optional[int] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("server_version", "encodings", "min_sample_rate_hz", "max_sample_rate_hz", "max_channels", "max_message_bytes", "max_chunk_ms", "modes", "separators", "device", "block_ms", "defaults", "max_streams", "instance_id", "engines")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    MAX_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_MS_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    SEPARATORS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_MS_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAMS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ENGINES_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    encodings: _containers.RepeatedScalarFieldContainer[Encoding]
    min_sample_rate_hz: int
    max_sample_rate_hz: int
    max_channels: int
    max_message_bytes: int
    max_chunk_ms: int
    modes: _containers.RepeatedScalarFieldContainer[Mode]
    separators: _containers.RepeatedScalarFieldContainer[str]
    device: str
    block_ms: int
    defaults: StreamConfig
    max_streams: int
    instance_id: str
    engines: _containers.RepeatedCompositeFieldContainer[EngineDescription]
    def __init__(self, server_version: _Optional[str] = ..., encodings: _Optional[_Iterable[_Union[Encoding, str]]] = ..., min_sample_rate_hz: _Optional[int] = ..., max_sample_rate_hz: _Optional[int] = ..., max_channels: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_chunk_ms: _Optional[int] = ..., modes: _Optional[_Iterable[_Union[Mode, str]]] = ..., separators: _Optional[_Iterable[str]] = ..., device: _Optional[str] = ..., block_ms: _Optional[int] = ..., defaults: _Optional[_Union[StreamConfig, _Mapping]] = ..., max_streams: _Optional[int] = ..., instance_id: _Optional[str] = ..., engines: _Optional[_Iterable[_Union[EngineDescription, _Mapping]]] = ...) -> None: ...

class EngineDescription(_message.Message):
    __slots__ = ("id", "pid", "device", "serving")
    ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    id: str
    pid: int
    device: str
    serving: bool
    def __init__(self, id: _Optional[str] = ..., pid: _Optional[int] = ..., device: _Optional[str] = ..., serving: _Optional[bool] = ...) -> None: ...
