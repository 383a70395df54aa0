"""Silero VAD (the ``silero-vad`` package's ONNX model), batched across streams."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
import onnxruntime as ort
from seamcut.server.errors import ConfigError

FRAME = 512  # samples per call at 16 kHz
CONTEXT = 64  # samples of the previous frame the model sees
STATE_SHAPE = (2, 128)


def silero_model_path(name: str = "silero_vad.onnx") -> Path:
    """Locate a model file shipped in the silero-vad package without importing it.

    Importing ``silero_vad`` imports torch and sets its thread count for the whole
    process; we only need the file.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the silero-vad package is not installed (pip install silero-vad)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        raise ConfigError(f"Silero model file not found: {path}")
    return path


@dataclass(frozen=True, slots=True)
class VadState:
    """One stream's recurrent state: LSTM state [2, 128] and the last 64 samples."""

    lstm: np.ndarray
    context: np.ndarray

    @classmethod
    def initial(cls) -> VadState:
        return cls(np.zeros(STATE_SHAPE, np.float32), np.zeros(CONTEXT, np.float32))


# Up to this many streams in a call, each runs through Silero's sequence model (all of
# its frames in one call, ~4x cheaper per frame than one call per frame); beyond it,
# one call per frame step with the streams batched. The two models give bit-identical
# probabilities and states (tests/test_vad.py), so the choice never changes a result.
SEQUENCE_MAX_STREAMS = 2


class SileroVad:
    """Holds the ONNX Runtime sessions; thread-compatible (one caller at a time)."""

    def __init__(
        self, *, providers: Sequence[str | tuple[str, dict[str, str]]], threads: int = 1
    ) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # the stock file has unused initialisers it warns about
        self.session = ort.InferenceSession(
            str(silero_model_path()), sess_options=opts, providers=list(providers)
        )
        self.sequence = ort.InferenceSession(
            str(silero_model_path("silero_vad_16k_sequence.onnx")), sess_options=opts,
            providers=list(providers),
        )
        self.providers = self.session.get_providers()
        self._sr = np.array(16000, dtype=np.int64)

    def run_sequence(self, frames: np.ndarray, state: VadState) -> tuple[np.ndarray, VadState]:
        """One stream's frames [n, 512] in a single call of the sequence model."""
        n = int(frames.shape[0])
        if n == 0:
            return np.zeros(0, np.float32), state
        ctx = np.concatenate([state.context[None], frames[:-1, -CONTEXT:]])
        x = np.ascontiguousarray(np.concatenate([ctx, frames], axis=1), dtype=np.float32)
        probs, h, c = self.sequence.run(None, {
            "input": x, "h": state.lstm[0][None, None], "c": state.lstm[1][None, None],
        })
        lstm = np.stack([h[0, 0], c[0, 0]]).astype(np.float32)
        return probs.astype(np.float32), VadState(lstm, x[-1, -CONTEXT:].copy())

    def run_marked(
        self, frames: list[np.ndarray], states: list[VadState], marks: list[list[int]]
    ) -> tuple[list[np.ndarray], list[list[VadState]]]:
        """:meth:`run_sequences`, plus each stream's state after every cumulative frame
        count in ``marks[i]`` (ascending, the last one the stream's total): a stream
        whose frames are several requests back to back gets each request's state."""
        if len(frames) <= SEQUENCE_MAX_STREAMS:
            probs, out = [], []
            for f, st0, m in zip(frames, states, marks, strict=True):
                parts, snaps, lo, st = [], [], 0, st0
                for hi in m:
                    p, st = self.run_sequence(f[lo:hi], st)
                    parts.append(p)
                    snaps.append(st)
                    lo = hi
                probs.append(np.concatenate(parts) if parts else np.zeros(0, np.float32))
                out.append(snaps)
            return probs, out
        return self.run_batched(frames, states, marks)

    def run_sequences(
        self, frames: list[np.ndarray], states: list[VadState]
    ) -> tuple[list[np.ndarray], list[VadState]]:
        """Run each stream's frames [n_i, 512] through the model, all streams batched.

        Step t stacks frame t of every stream that has one, so a batch never holds two
        frames of one stream. Returns per-stream probabilities [n_i] and new states.
        Silero's batch dimension is exact: an item's result does not depend on the
        other items in the batch.
        """
        if len(frames) <= SEQUENCE_MAX_STREAMS:
            pairs = [self.run_sequence(f, st) for f, st in zip(frames, states, strict=True)]
            return [p for p, _ in pairs], [st for _, st in pairs]
        return self.run_batched(frames, states)

    @overload
    def run_batched(self, frames: list[np.ndarray], states: list[VadState],
                    marks: None = None) -> tuple[list[np.ndarray], list[VadState]]: ...

    @overload
    def run_batched(self, frames: list[np.ndarray], states: list[VadState],
                    marks: list[list[int]]) -> tuple[list[np.ndarray],
                                                     list[list[VadState]]]: ...

    def run_batched(
        self, frames: list[np.ndarray], states: list[VadState],
        marks: list[list[int]] | None = None,
    ) -> tuple[list[np.ndarray], list[VadState]] | tuple[list[np.ndarray],
                                                          list[list[VadState]]]:
        """One call per frame step, every stream that has a frame at that step batched
        (with ``marks``: the states after those frame counts too, as in run_marked)."""
        counts = [int(f.shape[0]) for f in frames]
        probs = [np.empty(n, np.float32) for n in counts]
        lstm = [s.lstm for s in states]
        ctx = [s.context for s in states]
        snaps: list[list[VadState]] = [[] for _ in frames]
        if marks is not None:  # marks at frame 0 (empty requests) hold the initial state
            for i, m in enumerate(marks):
                snaps[i] += [states[i] for h in m if h == 0]
        for t in range(max(counts, default=0)):
            active = [i for i, n in enumerate(counts) if n > t]
            x = np.stack([np.concatenate([ctx[i], frames[i][t]]) for i in active])
            st = np.stack([lstm[i] for i in active], axis=1)
            out, new_st = self.session.run(None, {"input": x, "state": st, "sr": self._sr})
            for j, i in enumerate(active):
                probs[i][t] = out[j, 0]
                lstm[i] = np.ascontiguousarray(new_st[:, j, :])
                ctx[i] = x[j, -CONTEXT:]
                if marks is not None:
                    snaps[i] += [VadState(lstm[i], ctx[i]) for h in marks[i] if h == t + 1]
        if marks is not None:
            return probs, snaps
        return probs, [VadState(lstm[i], ctx[i]) for i in range(len(frames))]
