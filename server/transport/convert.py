"""Protobuf <-> domain conversion (nothing else in the server sees protobuf)."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Sequence
from typing import Any

from seamcut.server import config as C
from seamcut.server import events as E
from seamcut.server.engine.protocol import EngineInfo
from seamcut.server.errors import ConfigError

from seamcut import __version__
from seamcut.v1 import seamcut_pb2 as pb

_ENCODINGS = {pb.PCM_S16LE: C.Encoding.PCM_S16LE, pb.F32LE: C.Encoding.F32LE}
_ENCODINGS_PB = {v: k for k, v in _ENCODINGS.items()}
_MODES = {pb.SPEECH: C.Mode.SPEECH, pb.SONG: C.Mode.SONG}
_MODES_PB = {v: k for k, v in _MODES.items()}
_KINDS_PB = {E.CutKind.PAUSE: pb.PAUSE, E.CutKind.FORCED: pb.FORCED, E.CutKind.END: pb.END}
_POLICY_FIELDS = [f.name for f in dataclasses.fields(C.CutPolicy)]
_EVENT_FIELDS = [f.name for f in dataclasses.fields(C.EventOptions)]


def _set_fields(msg: Any, names: list[str]) -> dict[str, Any]:
    return {n: getattr(msg, n) for n in names if msg.HasField(n)}


def spec_from_proto(cfg: C.AppConfig, msg: pb.StreamConfig) -> C.StreamSpec:
    """Validate a StreamConfig and apply it to the server defaults."""
    if not msg.HasField("format"):
        raise ConfigError("config.format: required (encoding, sample_rate_hz, channels)")
    f = msg.format
    if f.encoding not in _ENCODINGS:
        raise ConfigError(
            f"config.format.encoding: must be PCM_S16LE or F32LE, got "
            f"{pb.Encoding.Name(f.encoding) if f.encoding in pb.Encoding.values() else f.encoding}"
        )
    fmt = C.AudioFormat(
        encoding=_ENCODINGS[f.encoding], sample_rate_hz=f.sample_rate_hz, channels=f.channels
    )
    sep = msg.separation
    if msg.mode not in (pb.MODE_UNSPECIFIED, *_MODES):
        raise ConfigError(f"config.mode: unknown value {msg.mode}")
    return C.stream_spec(
        cfg,
        format=fmt,
        mode=_MODES.get(msg.mode),
        policy_overrides=_set_fields(msg.policy, _POLICY_FIELDS),
        event_overrides=_set_fields(msg.events, _EVENT_FIELDS),
        request_id=msg.request_id,
        start_sample=msg.start_sample,
        separator=sep.backend,
        vocal_stem_channels=tuple(sep.vocal_stem_channels),
        window_hop_ms=sep.window_hop_ms,
        resume_token=msg.resume_token,
    )


def spec_to_proto(spec: C.StreamSpec) -> pb.StreamConfig:
    """The config in force, every default filled in (for Ready and Capabilities)."""
    return pb.StreamConfig(
        format=pb.AudioFormat(
            encoding=_ENCODINGS_PB[spec.format.encoding],
            sample_rate_hz=spec.format.sample_rate_hz,
            channels=spec.format.channels,
        ),
        mode=_MODES_PB[spec.mode],
        policy=pb.CutPolicy(**dataclasses.asdict(spec.policy)),
        separation=pb.SeparationOptions(
            backend=spec.separator, vocal_stem_channels=list(spec.vocal_stem_channels),
            window_hop_ms=spec.window_hop_ms,
        ),
        events=pb.EventOptions(**dataclasses.asdict(spec.events)),
        request_id=spec.request_id,
        start_sample=spec.start_sample,
    )


def default_spec(cfg: C.AppConfig) -> C.StreamSpec:
    return C.StreamSpec(
        format=C.AudioFormat(encoding=C.Encoding.PCM_S16LE, sample_rate_hz=16000, channels=1),
        mode=C.Mode.SPEECH, policy=cfg.policy, events=cfg.events,
    )


def instance_id() -> str:
    """This transport worker: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def capabilities(cfg: C.AppConfig, info: EngineInfo,
                 engines: Sequence[tuple[EngineInfo, bool]]) -> pb.Capabilities:
    return pb.Capabilities(
        server_version=__version__,
        encodings=list(_ENCODINGS),
        min_sample_rate_hz=C.MIN_RATE_HZ,
        max_sample_rate_hz=C.MAX_RATE_HZ,
        max_channels=C.MAX_CHANNELS,
        max_message_bytes=cfg.server.max_message_bytes,
        max_chunk_ms=cfg.server.max_chunk_ms,
        modes=[pb.SPEECH, pb.SONG],
        separators=[*(s.name for s in info.separators), "none"],
        device=info.device,
        block_ms=cfg.engine.block_ms,
        defaults=spec_to_proto(default_spec(cfg)),
        max_streams=cfg.server.max_streams,
        instance_id=instance_id(),
        engines=[pb.EngineDescription(id=e.engine_id, pid=e.pid, device=e.device,
                                      serving=serving) for e, serving in engines],
    )


def _progress(p: E.Progress) -> pb.Progress:
    return pb.Progress(
        samples_received=p.samples_received, samples_processed=p.samples_processed,
        samples_final=p.samples_final, last_seq=p.last_seq,
    )


def event_to_proto(ev: E.Event, spec: C.StreamSpec) -> pb.ServerMessage:
    """One domain event -> one ServerMessage."""
    match ev:
        case E.Ready():
            return pb.ServerMessage(ready=pb.Ready(
                session_id=ev.session_id, config=spec_to_proto(spec),
                lookahead_ms=ev.lookahead_ms, lookahead_samples=ev.lookahead_samples,
                block_ms=ev.block_ms, device=ev.device, server_version=__version__,
                trace_id=ev.trace_id,
            ))
        case E.Cut():
            return pb.ServerMessage(cut=pb.CutPoint(
                sample=ev.sample, seconds=ev.seconds, kind=_KINDS_PB[ev.kind], score=ev.score,
                pause_start_sample=ev.pause_start_sample, pause_end_sample=ev.pause_end_sample,
                index=ev.index,
            ))
        case E.VadSegment():
            return pb.ServerMessage(vad_segment=pb.VadSegment(
                start_sample=ev.start_sample, end_sample=ev.end_sample,
                mean_probability=ev.mean_probability,
            ))
        case E.ChunkTrace():
            t = ev.times
            return pb.ServerMessage(trace=pb.ChunkTrace(
                block_index=ev.block_index, start_sample=ev.start_sample,
                end_sample=ev.end_sample, first_seq=ev.first_seq, last_seq=ev.last_seq,
                client_send_time_ns=ev.client_send_time_ns,
                server_receive_time_ns=ev.server_receive_time_ns,
                queue_wait_ms=t.queue_wait_ms, h2d_ms=t.h2d_ms, separation_ms=t.separation_ms,
                vad_ms=t.vad_ms, features_ms=t.features_ms, d2h_ms=t.d2h_ms, ipc_ms=t.ipc_ms,
                batch_size=ev.batch_size, separation_batch_size=ev.separation_batch_size,
                device=ev.device, gpu_pipeline_used=ev.gpu_pipeline_used, total_ms=t.total_ms,
            ))
        case E.Progress():
            return pb.ServerMessage(progress=_progress(ev))
        case E.Flushed():
            return pb.ServerMessage(flushed=pb.Flushed(
                flush_id=ev.flush_id, progress=_progress(ev.progress)))
        case E.Notice():
            return pb.ServerMessage(notice=pb.Notice(code=ev.code, message=ev.message))
        case E.Checkpoint():
            return pb.ServerMessage(checkpoint=pb.Checkpoint(
                sample=ev.sample, resume_from=ev.resume_from, cuts=ev.cuts, token=ev.token))
        case E.Summary():
            return pb.ServerMessage(summary=pb.Summary(
                end_reason=pb.COMPLETED, samples_received=ev.samples_received,
                samples_processed=ev.samples_processed, chunks=ev.chunks, blocks=ev.blocks,
                cuts=ev.cuts, vad_segments=ev.vad_segments, wall_seconds=ev.wall_seconds,
                stages=[pb.StageStats(stage=s.stage, p50_ms=s.p50_ms, p95_ms=s.p95_ms,
                                      count=s.count) for s in ev.stages],
                engine_id=ev.engine_id, engine_pid=ev.engine_pid, device=ev.device,
                instance_id=instance_id(), longest_short_pause_ms=ev.longest_short_pause_ms,
                longest_short_pause_sample=ev.longest_short_pause_sample,
            ))
    raise TypeError(f"no conversion for {type(ev).__name__}")
