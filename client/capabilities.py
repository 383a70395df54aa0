"""What a server says it can do (``GetCapabilities``), as typed values.

Imports the stubs and the SDK's ``stream`` and ``errors`` modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from seamcut.client.errors import ClientError
from seamcut.client.stream import (
    ENCODINGS,
    MODES,
    EncodingName,
    ModeName,
    StreamOptions,
)

from seamcut.v1 import seamcut_pb2 as pb

_ENCODING_NAMES: dict[int, EncodingName] = {
    v: k for k, v in ENCODINGS.items()  # type: ignore[misc]
}
_MODE_NAMES: dict[int, ModeName] = {v: k for k, v in MODES.items()}  # type: ignore[misc]


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineInfo:
    """One engine behind the answering worker: "inline" or "engine-<n>", its pid,
    device ("cpu", "cuda:N") and whether it is serving now."""

    id: str
    pid: int
    device: str
    serving: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Capabilities:
    """The server's formats, limits, modes and defaults (units in the names).

    ``defaults`` is the config a stream gets when it sets nothing but its format, every
    server default filled in (None from a server that sent none). ``max_streams`` counts
    the whole server; ``instance_id`` ("host:pid") is the transport worker that answered.
    """

    server_version: str
    encodings: tuple[EncodingName, ...]
    min_sample_rate_hz: int
    max_sample_rate_hz: int
    max_channels: int
    max_message_bytes: int
    max_chunk_ms: int
    modes: tuple[ModeName, ...]
    separators: tuple[str, ...]
    device: str
    block_ms: int
    max_streams: int
    instance_id: str
    engines: tuple[EngineInfo, ...]
    defaults: StreamOptions | None = None

    @classmethod
    def from_proto(cls, msg: pb.Capabilities) -> Capabilities:
        defaults = None
        if msg.HasField("defaults"):
            try:
                defaults = StreamOptions.from_proto(msg.defaults)
            except ClientError:  # a server whose defaults name no format
                defaults = None
        return cls(
            server_version=msg.server_version,
            # Values this client does not know (a newer server) are left out, not guessed.
            encodings=tuple(_ENCODING_NAMES[e] for e in msg.encodings if e in _ENCODING_NAMES),
            min_sample_rate_hz=msg.min_sample_rate_hz,
            max_sample_rate_hz=msg.max_sample_rate_hz,
            max_channels=msg.max_channels,
            max_message_bytes=msg.max_message_bytes,
            max_chunk_ms=msg.max_chunk_ms,
            modes=tuple(_MODE_NAMES[m] for m in msg.modes if m in _MODE_NAMES),
            separators=tuple(msg.separators),
            device=msg.device,
            block_ms=msg.block_ms,
            max_streams=msg.max_streams,
            instance_id=msg.instance_id,
            engines=tuple(EngineInfo(id=e.id, pid=e.pid, device=e.device, serving=e.serving)
                          for e in msg.engines),
            defaults=defaults,
        )
