"""seamcut.client: the Python SDK and the ``seamcut split`` command.

Audio in, typed events out, in one call (any iterable of numpy arrays or bytes)::

    with Client("localhost:50051") as client:
        for ev in client.stream_cuts(StreamOptions(sample_rate_hz=16000), blocks):
            if isinstance(ev, CutEvent):
                print(ev.sample, ev.kind)

:class:`AsyncClient` is the asyncio equivalent (``async for ev in
client.stream_cuts(...)``); ``client.stream(options)`` gives a stream to ``send``,
``flush`` and read by hand. Every exception is a :class:`ClientError` (see ``errors``).
Modules: ``errors``, ``stream`` (options, events, protobuf conversion),
``capabilities``, ``aio``, ``sync``, ``audio`` (file I/O, wire encoding, lossless
segment writing), ``security`` (TLS, mTLS and token options), ``resume`` and
``replay`` (streams that survive losing their replica: the loop, and its pure state),
``targets`` (replica lists), ``split`` and ``table`` (the command). May import grpc,
numpy, soundfile and ``seamcut.v1``; never ``seamcut.server`` except lazily in
``split --offline``.
"""

from seamcut.client.aio import AsyncClient, AsyncStream
from seamcut.client.audio import AudioInfo, decode, encode, probe, read_audio, write_segments
from seamcut.client.capabilities import Capabilities, EngineInfo
from seamcut.client.errors import (
    AudioError,
    Cancelled,
    ClientError,
    ConnectionFailed,
    DeadlineExceeded,
    InvalidConfig,
    InvalidOptions,
    SeamcutRpcError,
    SeamcutStreamError,
    ServerBusy,
    ServerDraining,
    ServerError,
    StreamAborted,
    StreamClosedError,
    TlsError,
    Unauthenticated,
    UsageError,
)
from seamcut.client.stream import (
    CheckpointEvent,
    CutEvent,
    Event,
    FlushedEvent,
    NoticeEvent,
    ProgressEvent,
    ReadyEvent,
    ResumedEvent,
    StageStats,
    StreamOptions,
    SummaryEvent,
    TraceEvent,
    VadSegmentEvent,
    event_from_proto,
)
from seamcut.client.sync import Client, Stream

__all__ = [
    "AsyncClient",
    "AsyncStream",
    "AudioError",
    "AudioInfo",
    "Cancelled",
    "Capabilities",
    "CheckpointEvent",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "CutEvent",
    "DeadlineExceeded",
    "EngineInfo",
    "Event",
    "FlushedEvent",
    "InvalidConfig",
    "InvalidOptions",
    "NoticeEvent",
    "ProgressEvent",
    "ReadyEvent",
    "ResumedEvent",
    "SeamcutRpcError",
    "SeamcutStreamError",
    "ServerBusy",
    "ServerDraining",
    "ServerError",
    "StageStats",
    "Stream",
    "StreamAborted",
    "StreamClosedError",
    "StreamOptions",
    "SummaryEvent",
    "TlsError",
    "TraceEvent",
    "Unauthenticated",
    "UsageError",
    "VadSegmentEvent",
    "decode",
    "encode",
    "event_from_proto",
    "probe",
    "read_audio",
    "write_segments",
]
