"""seamcut.client: the Python SDK and the ``seamcut split`` command.

Open a stream with a config, push audio (numpy arrays or bytes), iterate typed events::

    async with AsyncClient("localhost:50051") as client:
        async with client.stream(StreamOptions(sample_rate_hz=16000)) as s:
            await s.send(frames)
            await s.close_send()
            async for ev in s:
                if isinstance(ev, CutEvent):
                    print(ev.sample, ev.kind)

:class:`Client` is the blocking equivalent (the same code on a private event-loop
thread). Modules: ``stream`` (options, events, errors, protobuf conversion), ``aio``,
``sync``, ``audio`` (file I/O, wire encoding, lossless segment writing), ``security``
(TLS, mTLS and token options), ``split`` and
``table`` (the command). May import grpc, numpy, soundfile and ``seamcut.v1``; never
``seamcut.server`` except lazily in ``split --offline``.
"""

from seamcut.client.aio import AsyncClient, AsyncStream
from seamcut.client.audio import AudioInfo, decode, encode, probe, read_audio, write_segments
from seamcut.client.stream import (
    AudioError,
    ClientError,
    CutEvent,
    Event,
    FlushedEvent,
    NoticeEvent,
    ProgressEvent,
    ReadyEvent,
    SeamcutRpcError,
    SeamcutStreamError,
    StageStats,
    StreamClosedError,
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
    "Client",
    "ClientError",
    "CutEvent",
    "Event",
    "FlushedEvent",
    "NoticeEvent",
    "ProgressEvent",
    "ReadyEvent",
    "SeamcutRpcError",
    "SeamcutStreamError",
    "StageStats",
    "Stream",
    "StreamClosedError",
    "StreamOptions",
    "SummaryEvent",
    "TraceEvent",
    "VadSegmentEvent",
    "decode",
    "encode",
    "event_from_proto",
    "probe",
    "read_audio",
    "write_segments",
]
