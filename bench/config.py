"""The bench's configuration: one frozen dataclass per concern, defaults in one place.

A leaf of the bench (stdlib only). Units are in the names: seconds ``_s``, milliseconds
``_ms``. Validation raises :class:`BenchConfigError` naming the option and why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

DEFAULT_TARGET = "localhost:50051"
SPAWN = "spawn"  # --server spawn: the bench starts (and stops) a local `seamcut serve`
DEFAULT_CHUNK_MS = 20
DEFAULT_DURATION_S = 10.0
DEFAULT_WARMUP_S = 2.0
DEFAULT_MAX_ACK_P99_MS = 50.0
CUT_SLACK_MS = 100.0  # ramp limit: p99 cut finalisation <= look-ahead + this
REPORT_INTERVAL_S = 0.5  # workers hand samples to the parent this often
DRAIN_LIMIT_S = 15.0  # after half-close, beyond the look-ahead, before DRAIN_TIMEOUT
MAX_CHUNK_MS = 5_000  # one chunk must stay one SDK message (the SDK splits longer sends)

ModeName = Literal["speech", "song"]


class BenchConfigError(ValueError):
    """An option value the bench cannot run with; the message names the option."""


def _check(cond: bool, option: str, what: str) -> None:
    if not cond:
        raise BenchConfigError(f"{option}: {what}")


@dataclass(frozen=True, kw_only=True, slots=True)
class RampSpec:
    """Start with ``start`` streams and add ``step`` every ``every_s`` seconds until a
    limit is crossed or ``--streams`` is reached (see ``ramp``)."""

    start: int
    step: int
    every_s: float

    def __post_init__(self) -> None:
        _check(self.start >= 1, "--ramp START", f"must be >= 1, got {self.start}")
        _check(self.step >= 1, "--ramp STEP", f"must be >= 1, got {self.step}")
        _check(math.isfinite(self.every_s) and self.every_s > 0, "--ramp EVERY_S",
               f"must be > 0 seconds, got {self.every_s}")

    @classmethod
    def parse(cls, text: str) -> RampSpec:
        """``START:STEP:EVERY_S``, e.g. ``32:32:15``."""
        parts = text.split(":")
        _check(len(parts) == 3, "--ramp", f"expected START:STEP:EVERY_S, got {text!r}")
        try:
            return cls(start=int(parts[0]), step=int(parts[1]), every_s=float(parts[2]))
        except ValueError as exc:
            if isinstance(exc, BenchConfigError):
                raise
            raise BenchConfigError(f"--ramp: expected integers START:STEP and seconds "
                                   f"EVERY_S, got {text!r}") from None

    def counts(self, max_streams: int) -> list[int]:
        """Stream counts of the steps: start, start+step, ... capped at ``max_streams``."""
        out = [min(self.start, max_streams)]
        while out[-1] < max_streams:
            out.append(min(out[-1] + self.step, max_streams))
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Pass/fail limits of a step (ramp) or run (``--max-p99-ms``). The cut limit is the
    server's look-ahead plus ``cut_slack_ms``; any error fails."""

    ack_p99_ms: float = DEFAULT_MAX_ACK_P99_MS
    cut_slack_ms: float = CUT_SLACK_MS


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportOptions:
    """How to reach the server: ``target`` HOST:PORT (or ``spawn``), TLS, token."""

    target: str = DEFAULT_TARGET
    tls_ca: str | None = None  # PEM file with the CA that signed the server's certificate
    token: str | None = None  # sent as ``authorization: Bearer <token>``
    server_pid: int | None = None  # monitor this process's CPU and RSS
    # Streams that share one gRPC connection (a live client has its own; sharing a
    # few keeps the client's per-connection cost down, and enough connections let
    # `seamcut serve --workers N` spread them: the kernel places connections).
    streams_per_connection: int = 8

    def __post_init__(self) -> None:
        _check(1 <= self.streams_per_connection <= 10_000, "--streams-per-connection",
               f"must be >= 1, got {self.streams_per_connection}")


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchConfig:
    """One bench run. ``realtime_factor`` None = flood (send as fast as the server takes);
    1.0 = paced at real time, 2.0 = twice as fast as real time."""

    files: tuple[str, ...] = ()  # empty: the bundled speech_en.flac (song_en.flac in song mode)
    transport: TransportOptions = field(default_factory=TransportOptions)
    streams: int = 1
    realtime_factor: float | None = None
    chunk_ms: int = DEFAULT_CHUNK_MS
    duration_s: float = DEFAULT_DURATION_S
    warmup_s: float = DEFAULT_WARMUP_S
    mode: ModeName = "speech"
    ramp: RampSpec | None = None
    limits: Limits = field(default_factory=Limits)
    check_limits: bool = False  # --max-p99-ms given: exit 3 when a limit is crossed
    processes: int = 1
    compare_inprocess: bool = False
    idle: bool = False  # open streams that send only the config; measure server RSS
    live: bool = True  # the one-line progress display (only when stderr is a TTY)

    def __post_init__(self) -> None:
        _check(1 <= self.streams <= 100_000, "--streams", f"must be >= 1, got {self.streams}")
        _check(1 <= self.chunk_ms <= MAX_CHUNK_MS, "--chunk-ms",
               f"must be 1 ..= {MAX_CHUNK_MS} ms, got {self.chunk_ms}")
        _check(math.isfinite(self.duration_s) and self.duration_s > 0, "--duration",
               f"must be > 0 seconds, got {self.duration_s}")
        _check(math.isfinite(self.warmup_s) and self.warmup_s >= 0, "--warmup",
               f"must be >= 0 seconds, got {self.warmup_s}")
        if self.realtime_factor is not None:
            _check(math.isfinite(self.realtime_factor) and 0 < self.realtime_factor <= 1000,
                   "--realtime", f"FACTOR must be in (0, 1000], got {self.realtime_factor}")
        _check(1 <= self.processes <= 256, "--processes",
               f"must be 1 ..= 256, got {self.processes}")
        _check(self.processes <= self.streams, "--processes",
               f"{self.processes} processes for {self.streams} streams: at most one per stream")
        _check(self.mode in ("speech", "song"), "--mode", f"speech or song, got {self.mode!r}")
        if self.ramp is not None:
            _check(self.ramp.start <= self.streams, "--ramp",
                   f"START {self.ramp.start} is above --streams {self.streams} (the maximum)")
            _check(self.warmup_s < self.ramp.every_s, "--warmup",
                   f"{self.warmup_s} s leaves nothing of each {self.ramp.every_s} s ramp step")
            _check(not self.idle, "--idle", "cannot be combined with --ramp")
        _check(not (self.idle and self.compare_inprocess), "--idle",
               "cannot be combined with --compare")
        _check(self.limits.ack_p99_ms > 0, "--max-p99-ms",
               f"must be > 0, got {self.limits.ack_p99_ms}")

    @property
    def chunk_s(self) -> float:
        return self.chunk_ms / 1000

    def to_json(self) -> dict[str, Any]:
        """The config as plain JSON (the token is never written out)."""
        out = asdict(self)
        out["files"] = list(self.files)
        if out["transport"]["token"] is not None:
            out["transport"]["token"] = "***"
        return out
