"""Configuration: frozen dataclasses, the single home of every default.

A leaf module (imports only ``errors``). Precedence when loading:
explicit overrides (CLI flags) > environment (``SEAMCUT_<SECTION>_<FIELD>``) > TOML file
> the field defaults below. Unknown keys are errors. Per-stream overrides from the
protocol are applied in one place, :func:`stream_spec`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from seamcut.server.errors import ConfigError, echo

MIN_RATE_HZ = 8_000
MAX_RATE_HZ = 192_000
MAX_CHANNELS = 8
ANALYSIS_RATE_HZ = 16_000  # Silero VAD's rate; all detection runs on this grid
HOP_SAMPLES = 160  # 10 ms feature hop at 16 kHz
VAD_FRAME_SAMPLES = 512  # Silero's frame at 16 kHz
GRID_SAMPLES = 2_560  # lcm(hop, VAD frame): blocks are multiples of 160 ms
# StreamConfig.start_sample: 2^48 frames is 46 years at 192 kHz, and keeps every
# position the server computes from it far from int64 overflow.
MAX_START_SAMPLE = 1 << 48
MAX_NAME_CHARS = 64  # a separator backend's name
MAX_RESUME_TOKEN_BYTES = 65_536  # StreamConfig.resume_token (a token is a few KB)
MIN_CHECKPOINT_MS, MAX_CHECKPOINT_MS = 100, 600_000  # EventOptions.checkpoint_interval_ms


def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {what}")


def _number(value: object) -> str:
    """``value`` as the user wrote it: a proto float32 field arrives as the nearest
    double (0.02 -> 0.019999999552965164), so floats show float32's 7 significant
    digits (%g), and anything else its repr."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.7g}"
    return repr(value)


def _in_range(value: float, lo: float, hi: float, name: str) -> None:
    _check(
        isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi,
        name,
        f"must be in [{_number(lo)}, {_number(hi)}], got {_number(value)}",
    )


class Encoding(Enum):
    PCM_S16LE = "pcm_s16le"
    F32LE = "f32le"

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self is Encoding.PCM_S16LE else 4


class Mode(Enum):
    SPEECH = "speech"
    SONG = "song"


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    # Loopback: the defaults are plaintext without auth, fine only where no one else
    # can connect. Listening wider without TLS or a token logs a warning (main.py).
    host: str = "127.0.0.1"
    port: int = 50051
    max_message_bytes: int = 1 << 20  # transport limit (grpc.max_receive_message_length)
    max_chunk_ms: int = 10_000  # application limit on one AudioChunk's duration
    max_streams: int = 512
    grace_s: float = 10.0
    # gRPC server reflection lets any client list and describe the services; off
    # unless asked for (a debugging aid, and the schema is in protos/ anyway).
    reflection: bool = False
    keepalive_time_ms: int = 30_000
    keepalive_timeout_ms: int = 10_000
    min_ping_interval_ms: int = 20_000
    writer_queue_events: int = 256  # per-stream outbound buffer before reading pauses
    # A stream whose client sends nothing (no audio, control or half-close) this long
    # ends with DEADLINE_EXCEEDED; it holds a stream slot that others could use.
    idle_timeout_s: float = 60.0
    # Longest a stream may stay open, wall seconds (0 = no limit); OUT_OF_RANGE after
    # it, so a client can resume on a new stream with StreamConfig.start_sample.
    # Without it a client sending real audio could hold its slots for ever.
    max_session_s: float = 14_400.0
    # Fairness (docs/RELIABILITY.md, "Abuse"): what one client may hold of max_streams.
    # Per connection, per peer address (IPv6 per /64 prefix) and per bearer token; 0 =
    # no limit. Refusals are RESOURCE_EXHAUSTED with retry-after-ms. Behind a proxy
    # every client has the proxy's address: raise or turn off max_streams_per_peer.
    max_streams_per_connection: int = 64
    max_streams_per_peer: int = 128
    max_streams_per_token: int = 256
    # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams of any method on one connection.
    # Above max_streams_per_connection, so that a client over that limit gets a status
    # it can act on, not a stream its library queues silently. Bounds what one
    # connection's rapid reset (CVE-2023-44487) can make the server hold.
    http2_max_concurrent_streams: int = 128
    max_health_watches: int = 128  # open health Watch streams, whole server
    max_connections: int = 2048  # TCP connections per worker process (grpc core)
    connection_idle_s: float = 300.0  # a connection with no call this long gets GOAWAY
    # A connection older than this gets GOAWAY: its streams go on (up to their own
    # max_session_s), new ones open on a new connection, so that clients rebalance
    # behind an L4 balancer. 0 = off: streams are already bounded per connection.
    connection_max_age_s: float = 0.0
    handshake_timeout_s: float = 10.0  # TLS / HTTP/2 handshake, then the connection closes
    # Memory by cost: a stream may hold this many bytes of received audio (its format's
    # rate x channels x sample width) between receipt and result, so a 192 kHz 8-channel
    # stream gets fewer blocks in flight than a 16 kHz mono one; the server holds at
    # most max_buffered_mib over all streams and refuses streams beyond it.
    stream_buffer_mib: float = 4.0
    max_buffered_mib: float = 1024.0
    # HTTP/2 flow-control window per stream, fixed (grpc's BDP probing off): what a
    # client that floods can have in flight to a stream that is pushing back. With
    # BDP probing it grew to several MiB per stream (8 flooding 192 kHz 8-channel
    # streams: +106 MiB, +40 MiB with 256 KiB). A stream needs rate x RTT of it:
    # 256 KiB carries 192 kHz x 8 x f32 (6.1 MB/s) over a 40 ms round trip.
    stream_window_kib: int = 256
    # A client that stops reading is ended (DEADLINE_EXCEEDED) once no message could be
    # sent to it for this long; until then it costs its flow-control window + outbox.
    stall_timeout_s: float = 30.0
    # Transport worker processes sharing the port (SO_REUSEPORT): one event loop each.
    # max_streams holds for the whole server, whatever the number of workers.
    workers: int = 1
    # Where the engine runs: "inline" (in each worker's process), "process" (engine
    # processes shared by the workers), or "auto" = process when workers > 1.
    engine: str = "auto"
    # Engine processes (engine "process"): 0 = one per GPU, or 1 on a CPU host
    # (docs/PERFORMANCE.md has the measurements behind that choice).
    engines: int = 0
    # Set by `seamcut serve` for its workers, not by users: the worker's number and
    # the file where workers count their open streams together.
    worker_index: int = 0
    stream_slots_path: str = ""
    # Let other processes bind the same port (set for the workers by `seamcut serve
    # --workers N`, or for several servers under your own process manager).
    reuse_port: bool = False
    # Prometheus scrape endpoint (http://host:port/metrics on server.host); 0 = off.
    # With --workers N the supervisor serves it for the whole server (docs/DESIGN.md,
    # "Telemetry"): each worker answers it on this Unix socket instead (set by
    # `seamcut serve`, not by users).
    metrics_port: int = 0
    metrics_socket_path: str = ""
    log_format: str = "text"  # "text" | "json" (one JSON object per line)

    def __post_init__(self) -> None:
        _in_range(self.port, 0, 65535, "server.port")
        _in_range(self.max_message_bytes, 1024, 64 << 20, "server.max_message_bytes")
        _in_range(self.max_chunk_ms, 20, 600_000, "server.max_chunk_ms")
        _in_range(self.max_streams, 1, 100_000, "server.max_streams")
        _in_range(self.grace_s, 0, 3600, "server.grace_s")
        _in_range(self.writer_queue_events, 16, 1 << 20, "server.writer_queue_events")
        _in_range(self.idle_timeout_s, 0.1, 86_400, "server.idle_timeout_s")
        _in_range(self.max_session_s, 0, 30 * 86_400, "server.max_session_s")
        _in_range(self.max_streams_per_connection, 1, 100_000,
                  "server.max_streams_per_connection")
        _in_range(self.max_streams_per_peer, 0, 100_000, "server.max_streams_per_peer")
        _in_range(self.max_streams_per_token, 0, 100_000, "server.max_streams_per_token")
        _in_range(self.http2_max_concurrent_streams, self.max_streams_per_connection + 1,
                  1 << 20, "server.http2_max_concurrent_streams (> max_streams_per_connection)")
        _in_range(self.max_health_watches, 0, 100_000, "server.max_health_watches")
        _in_range(self.max_connections, 1, 1 << 20, "server.max_connections")
        _in_range(self.connection_idle_s, 1, 86_400, "server.connection_idle_s")
        _in_range(self.connection_max_age_s, 0, 30 * 86_400, "server.connection_max_age_s")
        _in_range(self.handshake_timeout_s, 0.1, 600, "server.handshake_timeout_s")
        _in_range(self.stream_buffer_mib, 0.0625, 1024, "server.stream_buffer_mib")
        _in_range(self.stream_window_kib, 64, 1 << 16, "server.stream_window_kib")
        _in_range(self.max_buffered_mib, self.stream_buffer_mib, 1 << 20,
                  "server.max_buffered_mib (>= stream_buffer_mib)")
        _in_range(self.stall_timeout_s, 0.1, 86_400, "server.stall_timeout_s")
        _in_range(self.workers, 1, 256, "server.workers")
        _check(self.engine in ("auto", "inline", "process"), "server.engine",
               f"must be auto, inline or process, got {self.engine!r}")
        _in_range(self.engines, 0, 64, "server.engines")
        _in_range(self.worker_index, 0, 255, "server.worker_index")
        _in_range(self.metrics_port, 0, 65535, "server.metrics_port")
        _check(self.log_format in ("text", "json"), "server.log_format",
               f"must be text or json, got {self.log_format!r}")

    @property
    def process_engines(self) -> bool:
        """Whether `seamcut serve` runs engine processes for its workers."""
        return self.engine == "process" or (self.engine == "auto" and self.workers > 1)


@dataclass(frozen=True, kw_only=True, slots=True)
class SecurityConfig:
    """TLS, mTLS and bearer tokens. All off by default (plaintext, no token).

    Paths are PEM files read once at start-up. Tokens are secrets: they are never
    logged or shown in a repr.
    """

    tls_cert_path: str = ""  # server certificate chain; with tls_key_path turns TLS on
    tls_key_path: str = ""  # its private key
    tls_client_ca_path: str = ""  # CA bundle for client certificates: turns mTLS on
    # With a client CA: refuse clients without a valid certificate (false: verify one
    # if presented, admit the rest). Clients refused here see UNAVAILABLE, not
    # UNAUTHENTICATED: the TLS handshake fails before any RPC exists.
    require_client_auth: bool = True
    token_file: str = ""  # accepted bearer tokens, one per line ('#' comments)
    tokens: str = field(default="", repr=False)  # comma-separated; for SEAMCUT_SECURITY_TOKENS

    def __post_init__(self) -> None:
        _check(bool(self.tls_cert_path) == bool(self.tls_key_path),
               "security.tls_cert_path / tls_key_path", "set both (TLS) or neither")
        _check(not self.tls_client_ca_path or bool(self.tls_cert_path),
               "security.tls_client_ca_path", "mTLS needs TLS: set tls_cert_path and tls_key_path")

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_path)

    @property
    def auth(self) -> bool:
        """Whether calls must carry a bearer token."""
        return bool(self.token_file or self.tokens.strip(" ,"))


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineConfig:
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    block_ms: int = 320  # analysis block; a multiple of 160 ms
    max_batch_streams: int = 128  # streams per batched model call
    batch_wait_ms: float = 1.0  # how long a stage waits to fill a batch once work exists
    max_inflight_blocks: int = 2048  # over all streams; beyond it clients are pushed back
    # Blocks of one stream between session and results. A flooding stream needs many:
    # its blocks then share VAD calls (one sequence per stream and call), which took
    # one stream over gRPC from 260 to 400 audio s/s going from 8 to 64.
    max_inflight_per_stream: int = 64
    # ...but at most this many of them go into one batch, so that one flooding stream
    # cannot make a batch, and with it every other stream's blocks, arbitrarily long.
    max_batch_blocks_per_stream: int = 16
    vad_threads: int = 1  # ONNX Runtime intra-op threads for Silero (1 is fastest here)
    # Engine processes this transport worker talks to, comma-separated ZeroMQ endpoints;
    # "" = the engine runs inside this process. `seamcut serve` sets it for its workers.
    endpoints: str = ""
    # S2 + S3 through the CUDA-stream pipeline (docs/DESIGN.md, "GPU pipeline"):
    # "auto" = when the device is CUDA, "off" = the CPU path even on a GPU, "fake" =
    # tests only: the same pipeline on simulated lanes (threads) with CPU tensors.
    lanes: str = "auto"
    # Its staging ring: slots of this size (the largest batch it takes at once; a
    # larger batch is split) and how many (the pipeline's in-flight limit).
    staging_mib: float = 8.0
    staging_slots: int = 4
    # After a device fault: fail the streams (UNAVAILABLE, with the sample to resume
    # from) instead of re-running them on the CPU.
    strict_gpu: bool = False
    # How many streams the CPU path keeps after a device fault; the others end with
    # UNAVAILABLE and the sample to resume from, instead of all falling behind real
    # time. 0 = as many as the CPU path's measured speed carries in real time.
    fallback_streams: int = 0
    # S2 + S3 of a batch of at most this many streams run on the CPU (ONNX Runtime)
    # when no batch is on the device: Silero at small batches is launch-bound on a
    # GPU. -1 = measured at start-up on the engine's device (0 on fake lanes);
    # 0 = always the device.
    vad_cpu_streams: int = -1
    # Test hook, never for production: "s1@N", "s2@N" or "s3@N" makes that stage raise
    # for any request covering block (or window) N, to prove a failing stage fails only
    # the requests concerned; a trailing "!" ("s2@N!") kills the stage thread instead;
    # "d1@N" / "d2@N" make the pipeline's device work fail there (a CUDA error) in S1
    # (window N) or S2 (block N).
    test_fault: str = ""

    def __post_init__(self) -> None:
        _check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            "engine.device",
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        _in_range(self.block_ms, 160, 5120, "engine.block_ms")
        _check(self.block_ms % 160 == 0, "engine.block_ms", "must be a multiple of 160")
        _in_range(self.max_batch_streams, 1, 4096, "engine.max_batch_streams")
        _in_range(self.batch_wait_ms, 0, 100, "engine.batch_wait_ms")
        _in_range(self.max_inflight_per_stream, 1, 1024, "engine.max_inflight_per_stream")
        _in_range(self.max_batch_blocks_per_stream, 1, 1024,
                  "engine.max_batch_blocks_per_stream")
        _in_range(
            self.max_inflight_blocks, self.max_inflight_per_stream, 1 << 20,
            "engine.max_inflight_blocks",
        )
        _in_range(self.vad_threads, 1, 64, "engine.vad_threads")
        _check(self.lanes in ("auto", "off", "fake"), "engine.lanes",
               f"must be auto, off or fake, got {self.lanes!r}")
        _in_range(self.staging_mib, 0.25, 4096, "engine.staging_mib")
        _in_range(self.staging_slots, 2, 1024, "engine.staging_slots")
        _in_range(self.fallback_streams, 0, 1 << 20, "engine.fallback_streams")
        _in_range(self.vad_cpu_streams, -1, 1 << 20, "engine.vad_cpu_streams")
        stage, at, block = self.test_fault.partition("@")
        _check(not self.test_fault or (stage in ("s1", "s2", "s3", "d1", "d2") and at == "@"
                                       and block.removesuffix("!").isdigit()),
               "engine.test_fault",
               f"must be s1@N, s2@N, s3@N (optionally with !), d1@N or d2@N, "
               f"got {self.test_fault!r}")

    @property
    def block_samples(self) -> int:
        """Block length at the analysis rate."""
        return self.block_ms * ANALYSIS_RATE_HZ // 1000


def _valley_in_range(valley_db: float, silent_db: float, name: str) -> None:
    """A level cap's depths (0 = off), as DetectorConfig's ``<name>_valley_db`` and
    ``<name>_silent_db``."""
    if valley_db != 0:
        _in_range(valley_db, 1, 40, f"detector.{name}_valley_db")
        _in_range(silent_db, valley_db + 1, 60, f"detector.{name}_silent_db")


@dataclass(frozen=True, kw_only=True, slots=True)
class DetectorConfig:
    """Server-wide constants of the pause detector and cut refinement."""

    neg_threshold_offset: float = 0.15  # speech ends below threshold - offset (hysteresis)
    # On a separated vocal, Silero's scores are compressed (sung vowels often score
    # 0.2-0.4), so speech ends only below threshold - this: measured on the song corpus,
    # 0.3 removes the one cut inside a word that 0.15 leaves, at 92 % instead of 100 %
    # pause recall (docs/QUALITY.md).
    separated_neg_threshold_offset: float = 0.3
    margin_start_ms: int = 50  # keep the cut this far after the detected speech end
    margin_end_ms: int = 100  # ...and this far before the next onset (VAD lags onsets)
    # On a separated vocal under loud accompaniment Silero hears a sung onset later
    # still (a phrase's first 100-200 ms are lost in the leak): measured on the hard
    # rows and 200 generated songs, 200 ms removes cuts just after an onset and loses
    # no pause (docs/QUALITY.md, "Hard conditions").
    separated_margin_end_ms: int = 200
    energy_tolerance_db: float = 1.5  # hops this close to the minimum count as "quietest"
    band_low_hz: float = 100.0  # speech band for the energy feature: ignores DC and rumble
    band_high_hz: float = 4_000.0
    snap_ms: float = 8.0  # zero-crossing search radius on the original mix
    # SPEECH mode with ``policy.background_voices``, the foreground voice under
    # background talkers: Silero says "speech" through the foreground speaker's pauses
    # while others talk, but the level drops. A hop whose energy (mean power over
    # ``level_window_ms``) is more than ``foreground_valley_db`` below the running level
    # of the voice counts as less speech, down to none at ``foreground_silent_db`` below
    # (docs/QUALITY.md, "Hard conditions"). ``foreground_valley_db`` 0 = off. Not by
    # default: a real speaker's quiet passages fall as far (docs/QUALITY.md, "Real
    # voices").
    foreground_valley_db: float = 6.0
    foreground_silent_db: float = 14.0
    # SONG mode: the same cap on the separated vocal's own speech claim (not on the
    # mix's vote), from ``vocal_valley_db`` below the vocal estimate's running level to
    # none at ``vocal_silent_db``; 0 = off.
    vocal_valley_db: float = 4.0
    vocal_silent_db: float = 12.0
    # SONG mode with a separator: the learned voice detector (server/dsp/voice.py) caps
    # both Silero probabilities, none where it says voice at ``voice_cap_high`` or more,
    # to 0 at ``voice_cap_low``: it finds pauses that accompaniment leaking into the
    # vocal estimate hides (docs/QUALITY.md, "Voice detector").
    voice_cap: bool = True
    voice_cap_low: float = 0.1
    voice_cap_high: float = 0.7
    # SONG mode, with a separator or a client's vocal stem: where the voice detector is
    # sure of a voice, it raises the hop's speech probability, from none at
    # ``voice_floor_low`` to 1 at ``voice_floor_high``: Silero scores many sustained
    # sung vowels as no speech, and a legato phrase then took a cut at its quietest
    # note change (docs/QUALITY.md, "Voice floor"). With a stem, Silero runs on the
    # mix too, for the voice detector.
    voice_floor: bool = True
    voice_floor_low: float = 0.8
    voice_floor_high: float = 0.95
    # Both caps' running level follows rises fast (``level_attack`` per hop) and falls
    # slowly (``level_release``), so a pause does not drag it down.
    level_window_ms: int = 80
    level_attack: float = 0.3
    level_release: float = 0.005

    def __post_init__(self) -> None:
        _valley_in_range(self.foreground_valley_db, self.foreground_silent_db, "foreground")
        _valley_in_range(self.vocal_valley_db, self.vocal_silent_db, "vocal")
        _in_range(self.voice_cap_low, 0, 0.9, "detector.voice_cap_low")
        _in_range(self.voice_cap_high, self.voice_cap_low + 0.05, 1, "detector.voice_cap_high")
        # The floor starts where the cap ends: a hop is never both capped and raised.
        _in_range(self.voice_floor_low, self.voice_cap_high, 0.99, "detector.voice_floor_low")
        _in_range(self.voice_floor_high, self.voice_floor_low + 0.01, 1,
                  "detector.voice_floor_high")
        _in_range(self.level_window_ms, 10, 500, "detector.level_window_ms")
        _in_range(self.level_attack, 0.001, 1, "detector.level_attack")
        _in_range(self.level_release, 0, 1, "detector.level_release")
        _in_range(self.neg_threshold_offset, 0, 0.5, "detector.neg_threshold_offset")
        _in_range(self.separated_neg_threshold_offset, 0, 0.5,
                  "detector.separated_neg_threshold_offset")
        _in_range(self.margin_start_ms, 0, 200, "detector.margin_start_ms")
        _in_range(self.margin_end_ms, 0, 300, "detector.margin_end_ms")
        _in_range(self.separated_margin_end_ms, 0, 300, "detector.separated_margin_end_ms")
        _in_range(self.energy_tolerance_db, 0, 20, "detector.energy_tolerance_db")
        _in_range(self.band_low_hz, 0, 7_000, "detector.band_low_hz")
        _in_range(self.band_high_hz, self.band_low_hz + 100, 8_000, "detector.band_high_hz")
        # The cut is at most one hop before the newest analysed sample: a larger radius
        # would need audio the block does not carry.
        _in_range(self.snap_ms, 0, 10, "detector.snap_ms")


@dataclass(frozen=True, kw_only=True, slots=True)
class CutPolicy:
    """Per-stream cut policy (StreamConfig.policy overrides these defaults)."""

    min_segment_ms: int = 1_000
    max_segment_ms: int = 30_000  # 0 = unlimited
    min_gap_ms: int = 0  # NMS between pause cuts; 0 = off
    min_pause_ms: int = 300
    pause_search_ms: int = 700
    vad_threshold: float = 0.5
    # SPEECH mode: other people talk behind the speaker (a crowd, a call centre, a TV):
    # the speaker's pauses are found by level drops too (DetectorConfig.foreground_*)
    background_voices: bool = False

    def __post_init__(self) -> None:
        _in_range(self.min_segment_ms, 0, 600_000, "policy.min_segment_ms")
        _in_range(self.min_gap_ms, 0, 10_000, "policy.min_gap_ms")
        _in_range(self.min_pause_ms, 100, 5_000, "policy.min_pause_ms")
        _in_range(self.pause_search_ms, self.min_pause_ms, 10_000, "policy.pause_search_ms")
        _in_range(self.vad_threshold, 0.05, 0.95, "policy.vad_threshold")
        if self.max_segment_ms != 0:
            _in_range(
                self.max_segment_ms, self.min_segment_ms + self.pause_search_ms, 3_600_000,
                "policy.max_segment_ms (0 = unlimited, else >= min_segment_ms + pause_search_ms)",
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class EventOptions:
    vad_segments: bool = False
    chunk_traces: bool = True
    progress: bool = True
    # At most one Progress per this many ms per stream (0 = one per message and block).
    # A flood of small messages then costs one outbound message per interval instead
    # of one per inbound message; an acknowledgement waits at most this long.
    progress_interval_ms: int = 10
    # A Checkpoint (resume token) after at most this many ms of audio analysed since
    # the last one; 0 = none. Counted in audio, not wall time, so that the same audio
    # gets the same checkpoints however fast it comes.
    checkpoint_interval_ms: int = 0

    def __post_init__(self) -> None:
        _in_range(self.progress_interval_ms, 0, 1000, "events.progress_interval_ms")
        if self.checkpoint_interval_ms:
            _in_range(self.checkpoint_interval_ms, MIN_CHECKPOINT_MS, MAX_CHECKPOINT_MS,
                      "events.checkpoint_interval_ms")


@dataclass(frozen=True, kw_only=True, slots=True)
class SeparatorConfig:
    """SONG-mode separation (stage S1). MDX numbers left at 0/"" come from the model."""

    default_backend: str = "builtin"  # "builtin" | "mdx" | "none"
    allow_stream_backend: bool = True  # may a stream pick another loaded backend?
    mdx_model_path: str = ""  # an MDX-Net ONNX file; loaded at start-up when set
    mdx_n_fft: int = 0
    mdx_hop: int = 0
    mdx_dim_f: int = 0
    mdx_dim_t: int = 0
    mdx_rate_hz: int = 0
    mdx_stem: str = ""  # "vocals" | "instrumental" (what the model outputs)
    mdx_compensate: float = 0.0
    # "auto": ONNX Runtime on the CPU or where its CUDA provider loads, else the graph
    # run by torch on the GPU (S1's lane); "onnxruntime" or "torch" to choose.
    mdx_runtime: str = "auto"
    threads: int = 0  # ONNX Runtime intra-op threads for the separator (0 = all cores)
    # Windows per model call; 0 = auto (1 on CPU, where batching a large convolutional
    # model only thrashes the caches: 2.8x slower per window at batch 6 here; 8 on GPU).
    max_batch: int = 0
    overlap: float = 0.25  # default overlap of separation windows (fraction of a window)

    def __post_init__(self) -> None:
        _check(
            self.default_backend in ("builtin", "mdx", "none"),
            "separator.default_backend",
            f"must be builtin, mdx or none, got {self.default_backend!r}",
        )
        _check(
            self.default_backend != "mdx" or bool(self.mdx_model_path),
            "separator.mdx_model_path",
            "must be set when default_backend is mdx",
        )
        _check(self.mdx_stem in ("", "vocals", "instrumental"), "separator.mdx_stem",
               f"must be vocals or instrumental, got {self.mdx_stem!r}")
        _check(self.mdx_runtime in ("auto", "onnxruntime", "torch"), "separator.mdx_runtime",
               f"must be auto, onnxruntime or torch, got {self.mdx_runtime!r}")
        _in_range(self.threads, 0, 256, "separator.threads")
        _in_range(self.max_batch, 0, 1024, "separator.max_batch")
        _in_range(self.overlap, 0.0, 0.75, "separator.overlap")

    def mdx_overrides(self) -> dict[str, Any]:
        """Explicit MDX numbers (the ones not left to the model's metadata)."""
        vals = {"n_fft": self.mdx_n_fft, "hop": self.mdx_hop, "dim_f": self.mdx_dim_f,
                "dim_t": self.mdx_dim_t, "rate_hz": self.mdx_rate_hz, "stem": self.mdx_stem,
                "compensate": self.mdx_compensate}
        return {k: v for k, v in vals.items() if v}


@dataclass(frozen=True, kw_only=True, slots=True)
class TelemetryConfig:
    """Traces (OpenTelemetry). Metrics are ``server.metrics_port``."""

    # false: no metrics, spans or trace ids at all (the baseline of the overhead
    # figures in docs/PERFORMANCE.md); the metrics endpoint then shows nothing of ours.
    enabled: bool = True
    # Share of streams whose span (with a child per block and per stage) is recorded
    # when the caller sent no ``traceparent``; a sampled caller's trace is always
    # followed (parent-based). One span costs ~17 us here and a stream has ~6 per
    # block (docs/PERFORMANCE.md, "Telemetry overhead"), hence a small default.
    trace_sample_ratio: float = 0.01
    # OTLP/gRPC collector ("http://host:4317") for spans and metrics; "" = none.
    otlp_endpoint: str = ""
    trace_console: bool = False  # print finished spans to stdout (debugging)

    def __post_init__(self) -> None:
        _in_range(self.trace_sample_ratio, 0.0, 1.0, "telemetry.trace_sample_ratio")


@dataclass(frozen=True, kw_only=True, slots=True)
class AppConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    policy: CutPolicy = field(default_factory=CutPolicy)
    events: EventOptions = field(default_factory=EventOptions)
    separator: SeparatorConfig = field(default_factory=SeparatorConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)


SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(AppConfig)[f.name] for f in dataclasses.fields(AppConfig)
}


# ---------------------------------------------------------------- per-stream config


@dataclass(frozen=True, kw_only=True, slots=True)
class AudioFormat:
    encoding: Encoding
    sample_rate_hz: int
    channels: int

    def __post_init__(self) -> None:
        _check(
            MIN_RATE_HZ <= self.sample_rate_hz <= MAX_RATE_HZ,
            "config.format.sample_rate_hz",
            f"must be {MIN_RATE_HZ} ..= {MAX_RATE_HZ} Hz, got {self.sample_rate_hz}",
        )
        _check(
            1 <= self.channels <= MAX_CHANNELS,
            "config.format.channels",
            f"must be 1 ..= {MAX_CHANNELS}, got {self.channels}",
        )

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.encoding.bytes_per_sample


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamSpec:
    """Everything a session needs to know about one stream, defaults applied."""

    format: AudioFormat
    mode: Mode
    policy: CutPolicy
    events: EventOptions
    request_id: str = ""
    start_sample: int = 0
    separator: str = "none"  # S1 backend for this stream ("none" = no separation)
    vocal_stem_channels: tuple[int, ...] = ()  # client channels that carry the vocal
    window_hop_ms: int = 0  # separation hop (0 = the backend's default)
    resume_token: bytes = b""  # a Checkpoint's token: analysis resumes where it was made


def stream_spec(
    app: AppConfig,
    *,
    format: AudioFormat,
    mode: Mode | None,
    policy_overrides: Mapping[str, Any],
    event_overrides: Mapping[str, Any],
    request_id: str = "",
    start_sample: int = 0,
    separator: str = "",
    vocal_stem_channels: tuple[int, ...] = (),
    window_hop_ms: int = 0,
    resume_token: bytes = b"",
) -> StreamSpec:
    """Apply a stream's overrides to the server defaults (the one place this happens).

    Whether the chosen separator is loaded is checked by the engine.
    """
    _check(len(request_id.encode()) <= 128, "config.request_id",
           f"must be <= 128 bytes, got {len(request_id.encode())}")
    _check(0 <= start_sample <= MAX_START_SAMPLE, "config.start_sample",
           f"must be in [0, 2^48 = {MAX_START_SAMPLE}], got {start_sample}")
    _check(len(resume_token) <= MAX_RESUME_TOKEN_BYTES, "config.resume_token",
           f"must be at most {MAX_RESUME_TOKEN_BYTES} bytes, got {len(resume_token)} "
           "(pass Checkpoint.token as it came)")
    _check(len(separator) <= MAX_NAME_CHARS, "config.separation.backend",
           f"must be at most {MAX_NAME_CHARS} characters, got {len(separator)}")
    _check(len(vocal_stem_channels) <= MAX_CHANNELS, "config.separation.vocal_stem_channels",
           f"at most {MAX_CHANNELS} channels, got {len(vocal_stem_channels)}")
    mode = mode or Mode.SPEECH
    if mode is Mode.SPEECH:
        _check(not (separator not in ("", "none") or vocal_stem_channels or window_hop_ms),
               "config.separation", "separation options need mode SONG")
        backend = "none"
    else:
        stems = tuple(vocal_stem_channels)
        _check(len(set(stems)) == len(stems) and all(0 <= c < format.channels for c in stems),
               "config.separation.vocal_stem_channels",
               f"must be distinct channel indices in 0 ..= {format.channels - 1}, "
               f"got {echo(stems)}")
        _check(not stems or len(stems) < format.channels,
               "config.separation.vocal_stem_channels",
               "at least one channel must carry the mix (cuts snap on it)")
        backend = "none" if stems else (separator or app.separator.default_backend)
        _check(not separator or separator == app.separator.default_backend
               or app.separator.allow_stream_backend,
               "config.separation.backend", "this server does not let streams pick a backend")
        _check(backend != "none" or bool(stems), "config.separation.backend",
               "SONG mode needs a separator (builtin, mdx) or vocal_stem_channels")
        _in_range(window_hop_ms, 0, 60_000, "config.separation.window_hop_ms")
    return StreamSpec(
        format=format,
        mode=mode,
        policy=dataclasses.replace(app.policy, **dict(policy_overrides)),
        events=dataclasses.replace(app.events, **dict(event_overrides)),
        request_id=request_id,
        start_sample=start_sample,
        separator=backend,
        vocal_stem_channels=tuple(vocal_stem_channels),
        window_hop_ms=window_hop_ms,
        resume_token=bytes(resume_token),
    )


# ---------------------------------------------------------------- loading


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    if isinstance(annotation, types.UnionType):  # e.g. str | None
        return _coerce(value, typing.get_args(annotation)[0], where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected a boolean, got {value!r}")
    if annotation in (int, float, str):
        try:
            if annotation is int and isinstance(value, str):
                return int(value, 0)
            return annotation(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}") from exc
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        try:
            return annotation(str(value).lower())
        except ValueError as exc:
            allowed = ", ".join(m.value for m in annotation)
            raise ConfigError(f"{where}: expected one of {allowed}, got {value!r}") from exc
    raise ConfigError(f"{where}: cannot be set from configuration")


def _build_section(name: str, values: Mapping[str, Any]) -> Any:
    cls = SECTIONS[name]
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{name}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{name}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _env_values(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if not key.startswith("SEAMCUT_"):
            continue
        rest = key[len("SEAMCUT_") :].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(
                f"environment {key}: expected SEAMCUT_<SECTION>_<FIELD> with SECTION one of "
                f"{', '.join(s.upper() for s in SECTIONS)}"
            )
        out.setdefault(section, {})[rest[len(section) + 1 :]] = value
    return out


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> AppConfig:
    """Build an AppConfig from defaults < TOML file < environment < overrides.

    ``overrides`` maps section -> field -> value (what CLI flags set).
    """
    merged: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        for section, values in data.items():
            if section not in SECTIONS or not isinstance(values, dict):
                raise ConfigError(
                    f"config file {path}: unknown section [{section}]; "
                    f"known: {', '.join(SECTIONS)}"
                )
            merged.setdefault(section, {}).update(values)
    for section, values in _env_values(os.environ if env is None else env).items():
        merged.setdefault(section, {}).update(values)
    for section, values in (overrides or {}).items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section {section!r}")
        merged.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return AppConfig(**{s: _build_section(s, v) for s, v in merged.items()})
