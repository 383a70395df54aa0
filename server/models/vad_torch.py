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

_SILERO_JIT = "silero_vad.jit"


class TorchVad:
    """One caller at a time (the S2 stage). ``device``: a torch device name."""

    def __init__(self, device: str = "cpu") -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript loading in favour of torch.export; the
            # package ships this model only as TorchScript (and ONNX).
            warnings.simplefilter("ignore", DeprecationWarning)
            outer = torch.jit.load(  # type: ignore[no-untyped-call]
                str(silero_model_path(_SILERO_JIT)), map_location=self.device)
        outer.eval()
        self._net = outer._model  # the stateless 16 kHz network

    def step(self, x: Any, state: Any) -> tuple[Any, Any]:
        """One frame step on device tensors: x [B, 576], state [2, B, 128]."""
        with self._torch.inference_mode():
            prob, new_state = self._net(x, state)
        return prob[:, 0], new_state

    def run_marked(
        self, frames: list[np.ndarray], states: list[VadState], marks: list[list[int]]
    ) -> tuple[list[np.ndarray], list[list[VadState]]]:
        """As :meth:`SileroVad.run_marked`: per stream, the probabilities of its frames
        [n_i, 512] and its state after every cumulative frame count in ``marks[i]``."""
        torch = self._torch
        counts = [int(f.shape[0]) for f in frames]
        steps = max(counts, default=0)
        n = len(frames)
        snaps: list[list[VadState]] = [[states[i] for h in marks[i] if h == 0]
                                       for i in range(n)]
        if steps == 0:
            return [np.zeros(0, np.float32) for _ in frames], snaps
        dev = self.device
        # Every stream's frames, zero-padded to the longest, in one host->device copy.
        audio = np.zeros((n, steps, FRAME), np.float32)
        for i, f in enumerate(frames):
            audio[i, : counts[i]] = f
        x_all = torch.from_numpy(audio).to(dev, non_blocking=True)
        lstm = torch.from_numpy(np.stack([s.lstm for s in states], axis=1)).to(dev)
        ctx = torch.from_numpy(np.stack([s.context for s in states])).to(dev)
        probs = torch.zeros((n, steps), dtype=torch.float32, device=dev)
        # State snapshots wanted at step t: (t, stream) -> lstm, context, on the device.
        want = {(h, i) for i in range(n) for h in marks[i] if h > 0}
        kept: dict[tuple[int, int], tuple[Any, Any]] = {}
        active = n
        order = sorted(range(n), key=lambda i: -counts[i])  # longest first
        perm = torch.tensor(order, device=dev)
        x_all, lstm, ctx = x_all[perm], lstm[:, perm], ctx[perm]
        sorted_counts = [counts[i] for i in order]
        for t in range(steps):
            while active and sorted_counts[active - 1] <= t:
                active -= 1  # streams without a frame t drop off the end of the batch
            frame = x_all[:active, t]
            x = torch.cat([ctx[:active], frame], dim=1)
            p, new_state = self.step(x, lstm[:, :active])
            probs[:active, t] = p
            lstm = torch.cat([new_state, lstm[:, active:]], dim=1)
            ctx = torch.cat([frame[:, -CONTEXT:], ctx[active:]], dim=0)
            for j in range(active):
                if (t + 1, order[j]) in want:
                    kept[(t + 1, order[j])] = (new_state[:, j].clone(), frame[j, -CONTEXT:])
        # One device->host copy of the probabilities and the snapshots.
        probs_host = probs.cpu().numpy()
        out_probs: list[np.ndarray] = [np.empty(0, np.float32)] * n
        for j, i in enumerate(order):
            out_probs[i] = probs_host[j, : counts[i]].copy()
        keys = sorted(kept)
        if keys:
            lstm_h = torch.stack([kept[k][0] for k in keys]).cpu().numpy()
            ctx_h = torch.stack([kept[k][1] for k in keys]).cpu().numpy()
            got = {k: VadState(lstm_h[m], ctx_h[m]) for m, k in enumerate(keys)}
            for i in range(n):
                snaps[i] = [states[i] if h == 0 else got[(h, i)] for h in marks[i]]
        return out_probs, snaps
