"""Pass/fail of a measured window and the knee of a ramp. Pure functions.

A window passes when all of these hold (``Limits``):

* p99 ack latency <= ``ack_p99_ms`` (50 ms unless ``--max-p99-ms``);
* no chunk sent inside the window is still unacknowledged after ``ack_p99_ms`` at the
  time of judging (a stalled server must not pass because its acks never came);
* p99 cut finalisation latency <= look-ahead + ``cut_slack_ms`` (100 ms) — not judged
  when the window holds no cut;
* no stream failed (any gRPC status other than OK, any client error).

A ramp runs steps of ``start, start + step, ...`` streams, each ``every_s`` long; each
step is measured after its first ``warmup_s``. It stops after the first failing step
or after the step at ``--streams``. The **knee** is the stream count of the last step
that passed before the first failure (0 if the first step failed; the last step's
count if none failed).

Imports the bench's ``config`` and ``recording`` modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seamcut.bench.config import Limits
from seamcut.bench.recording import WindowStats


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """Whether a window met the limits, and why not (one reason per broken limit)."""

    passed: bool
    reasons: tuple[str, ...]


def judge(stats: WindowStats, *, lookahead_ms: float, limits: Limits,
          oldest_unacked_age_ms: float | None = None) -> Verdict:
    """Apply the limits to one window's figures.

    ``oldest_unacked_age_ms``: at judging time, the age of the oldest chunk sent in the
    window that is still unacknowledged (None if every chunk was acknowledged).
    """
    reasons: list[str] = []
    ack_p99 = stats.ack_ms.p99
    if ack_p99 is not None and ack_p99 > limits.ack_p99_ms:
        reasons.append(f"p99 ack {ack_p99:.1f} ms > {limits.ack_p99_ms:g} ms")
    if oldest_unacked_age_ms is not None and oldest_unacked_age_ms > limits.ack_p99_ms:
        reasons.append(f"a chunk unacknowledged for {oldest_unacked_age_ms:.0f} ms "
                       f"> {limits.ack_p99_ms:g} ms")
    cut_limit = lookahead_ms + limits.cut_slack_ms
    cut_p99 = stats.cut_ms.p99
    if cut_p99 is not None and cut_p99 > cut_limit:
        reasons.append(f"p99 cut finalisation {cut_p99:.0f} ms > look-ahead "
                       f"{lookahead_ms:g} + {limits.cut_slack_ms:g} ms")
    if stats.errors:
        codes = ", ".join(f"{k} x{v}" for k, v in sorted(stats.errors_by_code.items()))
        reasons.append(f"{stats.errors} stream error(s): {codes}")
    return Verdict(passed=not reasons, reasons=tuple(reasons))


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    """One ramp step: ``streams`` open during ``stats``'s window, and the verdict."""

    streams: int
    stats: WindowStats
    verdict: Verdict


def knee(steps: Sequence[Step]) -> int:
    """Streams of the last passing step before the first failure (0 if none passed)."""
    best = 0
    for step in steps:
        if not step.verdict.passed:
            break
        best = step.streams
    return best


def knee_step(steps: Sequence[Step]) -> Step | None:
    """The step the knee refers to; the first step when none passed; None when empty."""
    chosen: Step | None = steps[0] if steps else None
    for step in steps:
        if not step.verdict.passed:
            break
        chosen = step
    return chosen


def should_continue(steps: Sequence[Step], counts: Sequence[int]) -> bool:
    """Whether the ramp goes on after ``steps`` (no failure yet and counts left)."""
    if not steps:
        return True
    return steps[-1].verdict.passed and len(steps) < len(counts)
