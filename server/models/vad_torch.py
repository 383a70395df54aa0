"""Silero VAD in torch (the ``silero-vad`` package's TorchScript file), for the GPU.

The package's ``silero_vad.jit`` wraps a stateless 16 kHz network,
``_model.forward(x [B, 64 + 512], state [2, B, 128]) -> (prob [B, 1], state)``, in a
module that keeps one batch's state inside itself. We call the inner network
directly: each stream's state is gathered into the batch before a frame step and
scattered back after it, so streams of any length share every call, and nothing per
stream stays in the model (the engine contract).

A 320 ms block is 10 dependent frame steps, so on a GPU the cost is launches, not
arithmetic: one batched step per frame over all streams keeps the launches per block
at 10 whatever the number of streams. The interface is :class:`SileroVad`'s
``run_marked``, so the engine can use either; ``tests/test_vad.py`` holds the two to
1e-4 on the same input.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from seamcut.server.models.vad import CONTEXT, FRAME, VadState, silero_model_path

STATE_FLOATS = 2 * 128 + CONTEXT  # a packed state: LSTM [2, 128], then the context

_SILERO_JIT = "silero_vad.jit"


class TorchVad:
    """One caller at a time (the S2 stage). ``device``: a torch device name."""

    def __init__(self, device: str = "cpu") -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        with warnings.catch_warnings():
            # torch deprecates TorchScript loading in favour of torch.export (a
            # DeprecationWarning in 2.13, a FutureWarning in 2.14); the package ships
            # this model only as TorchScript (and ONNX).
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*")
            outer = torch.jit.load(  # type: ignore[no-untyped-call]
                str(silero_model_path(_SILERO_JIT)), map_location=self.device)
        outer.eval()
        self._net = outer._model  # the stateless 16 kHz network

    def step(self, x: Any, state: Any) -> tuple[Any, Any]:
        """One frame step on device tensors: x [B, 576], state [2, B, 128]."""
        with self._torch.inference_mode():
            prob, new_state = self._net(x, state)
        return prob[:, 0], new_state

    def run_device(self, x: Any, counts: list[int], lstm: Any, ctx: Any,
                   wants: list[tuple[int, int]]) -> tuple[Any, Any]:
        """The frame loop on device tensors, queueing work only (no host reads).

        ``x`` [S, T, 512]: stream ``j``'s frames in ``x[j, :counts[j]]``, streams
        sorted longest first (``counts`` descending, host ints); ``lstm`` [2, S, 128]
        and ``ctx`` [S, 64] their start states. Returns the probabilities [S, T] and,
        for each ``(n, j)`` of ``wants``, stream ``j``'s state after ``n`` frames as a
        row [320] (LSTM state then context) of a [len(wants), 320] tensor."""
        torch = self._torch
        s_count, steps = int(x.shape[0]), int(x.shape[1])
        probs = torch.zeros((s_count, steps), dtype=torch.float32, device=x.device)
        at: dict[int, list[tuple[int, int]]] = {}
        for m, (n, j) in enumerate(wants):
            at.setdefault(n, []).append((m, j))
        rows: list[tuple[int, Any]] = [(m, torch.cat([lstm[:, j].reshape(-1), ctx[j]]))
                                       for m, j in at.pop(0, [])]
        active = s_count
        for t in range(steps):
            while active and counts[active - 1] <= t:
                active -= 1  # streams without a frame t drop off the end of the batch
            frame = x[:active, t]
            p, new_state = self.step(torch.cat([ctx[:active], frame], dim=1), lstm[:, :active])
            probs[:active, t] = p
            lstm = torch.cat([new_state, lstm[:, active:]], dim=1)
            ctx = torch.cat([frame[:, -CONTEXT:], ctx[active:]], dim=0)
            for m, j in at.get(t + 1, []):
                rows.append((m, torch.cat([new_state[:, j].reshape(-1), frame[j, -CONTEXT:]])))
        rows.sort(key=lambda r: r[0])
        snaps = (torch.stack([r for _, r in rows]) if rows
                 else torch.zeros((0, STATE_FLOATS), dtype=torch.float32, device=x.device))
        return probs, snaps

    def run_marked(
        self, frames: list[np.ndarray], states: list[VadState], marks: list[list[int]]
    ) -> tuple[list[np.ndarray], list[list[VadState]]]:
        """As :meth:`SileroVad.run_marked`: per stream, the probabilities of its frames
        [n_i, 512] and its state after every cumulative frame count in ``marks[i]``."""
        torch = self._torch
        n = len(frames)
        counts = [int(f.shape[0]) for f in frames]
        order = sorted(range(n), key=lambda i: -counts[i])  # longest first
        rank = {i: j for j, i in enumerate(order)}
        audio = np.zeros((n, max(counts, default=0), FRAME), np.float32)
        for j, i in enumerate(order):
            audio[j, : counts[i]] = frames[i]
        lstm = np.stack([states[i].lstm for i in order], axis=1) if n else \
            np.zeros((2, 0, 128), np.float32)
        ctx = np.stack([states[i].context for i in order]) if n else \
            np.zeros((0, CONTEXT), np.float32)
        wants = [(h, rank[i]) for i in range(n) for h in marks[i]]
        dev = self.device
        probs, snaps = self.run_device(
            torch.from_numpy(audio).to(dev), [counts[i] for i in order],
            torch.from_numpy(lstm).to(dev), torch.from_numpy(ctx).to(dev), wants)
        probs_h, snaps_h = probs.cpu().numpy(), snaps.cpu().numpy()
        out_probs = [probs_h[rank[i], : counts[i]].copy() for i in range(n)]
        out_snaps: list[list[VadState]] = []
        m = 0
        for i in range(n):
            mine = []
            for _ in marks[i]:
                row = snaps_h[m]
                mine.append(VadState(row[: 2 * 128].reshape(2, 128).copy(),
                                     row[2 * 128:].copy()))
                m += 1
            out_snaps.append(mine)
        return out_probs, out_snaps
