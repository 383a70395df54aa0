"""The JSON report of a bench run (``--json OUT``). Pure: builds a dict, writes nothing.

Schema ``seamcut.bench/1``. Stable keys (dashboards and CI read them; never rename or
remove, only add):

* ``summary``: ``streams``, ``errors`` (count), ``audio_seconds_per_second``,
  ``lookahead_ms``, ``ack_latency_ms`` and ``cut_finalization_latency_ms`` (the cut's
  arrival vs. the look-ahead bound: may be negative, see ``definitions``) — each of
  the last two an object with ``p50``, ``p90``, ``p99``, ``max`` (plus ``count``,
  ``min``, ``mean``). For a ramp the summary is the knee step's window.
* ``schema``, ``date``, ``command`` (argv list), ``command_line``, ``config``,
  ``machine``, ``software`` (seamcut version, git commit), ``server``, ``window``,
  ``messages``, ``throughput``, ``cuts``, ``stages_ms``, ``batch_size``, ``errors``,
  ``streams``, ``resources``, ``ramp``, ``compare``, ``idle``, ``verdict``,
  ``wall_seconds``, ``definitions``. ``streams``: ``opened``, ``failed`` (streams that
ended with an error), ``connected`` (streams that got their Ready).

A run in which no stream got Ready has no report: ``seamcut bench`` prints the reason
and exits 4 (no connection) or 1 (every stream refused; see ``cli``).

Latencies are milliseconds, times in series are seconds from t0 (the first stream's
scheduled start), CPU is percent of one core, RSS is MiB. A figure that was not
measured is ``null``. Imports the bench's modules only.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from seamcut.bench.baseline import Throughput
from seamcut.bench.idle import IdleResult
from seamcut.bench.recording import WindowStats
from seamcut.bench.runner import RunResult
from seamcut.bench.stats import distribution

SCHEMA = "seamcut.bench/1"
SUMMARY_KEYS = ("streams", "errors", "audio_seconds_per_second", "lookahead_ms",
                "ack_latency_ms", "cut_finalization_latency_ms")
PERCENTILE_KEYS = ("p50", "p90", "p99", "max")
DEFINITIONS = {
    "ack_latency_ms": "receive time of the first Progress with last_seq >= seq minus the "
                      "chunk's send time (just before send()), per AudioChunk",
    "cut_finalization_latency_ms": "cut vs. look-ahead bound: receive time of the CutPoint "
                                   "minus the send time of the chunk completing frame "
                                   "cut.sample + lookahead_samples (the final chunk's if the "
                                   "audio ended first); negative = the cut arrived before "
                                   "the server's worst-case bound",
    "audio_seconds_per_second": "increase of Progress.samples_processed / sample rate, "
                                "summed over streams, received in the window / window s",
    "send_lag_ms": "send time minus due time on the --realtime schedule",
    "percentiles": "nearest rank: the ceil(q/100*n)-th smallest value",
    "window": "samples whose reference time (send for acks, reference chunk for cuts, "
              "receive for progress/traces) lies in [t0 + warmup, t0 + warmup + duration)",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Compare:
    """``--compare inprocess``: the in-process engine, Silero's own loop, and the ratio."""

    inprocess: Throughput | None
    silero_vad: Throughput | None
    grpc_audio_seconds_per_second: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """gRPC / in-process throughput (None unless both were measured by floods)."""
        if self.inprocess is None or self.grpc_audio_seconds_per_second is None:
            return None
        ips = self.inprocess.audio_seconds_per_second
        return self.grpc_audio_seconds_per_second / ips if ips > 0 else None

    def to_json(self) -> dict[str, Any]:
        r = self.ratio
        return {
            "inprocess": self.inprocess.to_json() if self.inprocess else None,
            "silero_vad": self.silero_vad.to_json() if self.silero_vad else None,
            "grpc_audio_seconds_per_second": _r(self.grpc_audio_seconds_per_second, 2),
            "grpc_over_inprocess": None if r is None else round(r, 3),
            "note": self.note,
        }


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(v, nd)


def window_json(w: WindowStats, t0: float) -> dict[str, Any]:
    """A window's figures (the shape of ``summary``'s siblings and of each ramp step)."""
    return {
        "start_s": round(w.start - t0, 3), "end_s": round(w.end - t0, 3),
        "seconds": round(w.seconds, 3), "streams": w.streams,
        "ack_latency_ms": w.ack_ms.to_json(),
        "cut_finalization_latency_ms": w.cut_ms.to_json(),
        "send_lag_ms": w.send_lag_ms.to_json(),
        "messages": w.messages, "messages_per_second": round(w.messages_per_second, 1),
        "audio_seconds": round(w.audio_seconds, 3),
        "audio_seconds_per_second": round(w.audio_seconds_per_second, 2),
        "errors": w.errors, "errors_by_code": dict(sorted(w.errors_by_code.items())),
    }


def build_report(result: RunResult, *, argv: Sequence[str], date: str,
                 machine: dict[str, Any], software: dict[str, Any] | None = None,
                 compare: Compare | None = None, idle: IdleResult | None = None
                 ) -> dict[str, Any]:
    """The full JSON report of ``result`` (see the module docstring for the schema)."""
    w, t0, cfg = result.window, result.t0, result.cfg
    lookahead = result.server.lookahead_ms if result.server else None
    errors_total = len(result.errors) if cfg.ramp is None else w.errors
    by_code = Counter(e.code for e in result.errors)
    summary = {
        "streams": w.streams if cfg.ramp is None else (result.knee_streams or 0),
        "errors": errors_total,
        "audio_seconds_per_second": round(w.audio_seconds_per_second, 2),
        "lookahead_ms": lookahead,
        "ack_latency_ms": w.ack_ms.to_json(),
        "cut_finalization_latency_ms": w.cut_ms.to_json(),
    }
    client_cpu = [p.cpu_percent for p in result.client_resources]
    server_pts = result.server_resources
    return {
        "schema": SCHEMA,
        "summary": summary,
        "date": date,
        "command": list(argv),
        "command_line": shlex.join(argv),
        "config": cfg.to_json(),
        "machine": machine,
        "software": software or {},
        "server": None if result.server is None else asdict(result.server),
        "window": window_json(w, t0),
        "messages": {"sent": w.messages, "per_second": round(w.messages_per_second, 1),
                     "send_lag_ms": w.send_lag_ms.to_json()},
        "throughput": {
            "audio_seconds": round(w.audio_seconds, 3),
            "audio_seconds_per_second": round(w.audio_seconds_per_second, 2),
            "series": [asdict(p) for p in result.series],
        },
        "cuts": {"count": w.cut_ms.count, "by_kind": w.cuts_by_kind,
                 "negative": w.cuts_negative, "clamped_to_final_chunk": w.cuts_clamped},
        "stages_ms": {k: v.to_json() for k, v in w.stages_ms.items()},
        "batch_size": w.batch_size.to_json(),
        "errors": {"count": len(result.errors), "by_code": dict(sorted(by_code.items())),
                   "first": [asdict(e) | {"t": round(e.t - t0, 3)} for e in result.errors[:10]]},
        "streams": {"opened": result.streams_opened, "failed": len(result.errors),
                    "connected": result.streams_connected},
        "resources": {
            "client": {"cpu_percent": distribution(client_cpu).to_json(),
                       "rss_mib_max": max((p.rss_mib for p in result.client_resources),
                                          default=None),
                       "series": [asdict(p) for p in result.client_resources]},
            "server": None if server_pts is None else {
                "cpu_percent": distribution([p.cpu_percent for p in server_pts]).to_json(),
                "rss_mib_max": max((p.rss_mib for p in server_pts), default=None),
                "rss_mib_first": server_pts[0].rss_mib if server_pts else None,
                "rss_mib_last": server_pts[-1].rss_mib if server_pts else None,
                "series": [asdict(p) for p in server_pts]},
        },
        "ramp": None if cfg.ramp is None else {
            "start": cfg.ramp.start, "step": cfg.ramp.step, "every_s": cfg.ramp.every_s,
            "limits": {"ack_p99_ms": cfg.limits.ack_p99_ms,
                       "cut_p99_ms": None if lookahead is None
                       else lookahead + cfg.limits.cut_slack_ms, "errors": 0},
            "knee_streams": result.knee_streams,
            "steps": [window_json(s.stats, t0) | {"passed": s.verdict.passed,
                                                   "reasons": list(s.verdict.reasons)}
                      for s in result.steps],
        },
        "compare": None if compare is None else compare.to_json(),
        "idle": None if idle is None else idle.to_json(),
        "verdict": None if result.verdict is None else {
            "passed": result.verdict.passed, "reasons": list(result.verdict.reasons)},
        "wall_seconds": round(result.wall_seconds, 3),
        "definitions": DEFINITIONS,
    }


def build_idle_report(idle: IdleResult, *, cfg_json: dict[str, Any], argv: Sequence[str],
                      date: str, machine: dict[str, Any], target: str,
                      software: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report of an ``--idle`` run: the same stable ``summary`` keys (no latencies or
    throughput were measured, so those are null) and the ``idle`` figures."""
    empty = distribution([]).to_json()
    errors = sum(idle.errors_by_code.values())
    return {
        "schema": SCHEMA,
        "summary": {"streams": idle.opened, "errors": errors, "audio_seconds_per_second": None,
                    "lookahead_ms": idle.lookahead_ms, "ack_latency_ms": empty,
                    "cut_finalization_latency_ms": empty},
        "date": date, "command": list(argv), "command_line": shlex.join(argv),
        "config": cfg_json, "machine": machine, "software": software or {},
        "server": {"target": target},
        "errors": {"count": errors, "by_code": dict(sorted(idle.errors_by_code.items()))},
        "idle": idle.to_json(), "definitions": DEFINITIONS,
    }
