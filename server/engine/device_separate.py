"""S1 (separation) of SEPARATE batches on the device lane "s1".

A flight per batch: the windows are packed into a staging slot, copied in, run
through the backend's device function (``vocal(x) -> [B, n]``: STFT, mask, iSTFT,
all queued on the lane) and the mono vocal copied out into an output slot; the
completion thread builds the results. Windows carry no state, so a device fault is
simply re-run on the CPU (a CPU instance of the backend, made when first needed),
and the device path is off from then on. MDX models run here too: through ONNX
Runtime's CUDA provider on lane s1's stream (IOBinding, no synchronisation), or as
their graph run by torch (:mod:`..models.onnx_torch`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from seamcut.server.engine.flow import DeviceFlow, Flight, Step
from seamcut.server.engine.lanes import Lanes, Slot, StagingRing
from seamcut.server.engine.protocol import ErrorCode, Kind, Request, Result, failed

log = logging.getLogger(__name__)
F32 = 4


class DeviceSeparate:
    def __init__(self, lanes: Lanes, separators: dict[str, Any],
                 cpu_backend: Callable[[str], Any], *, slot_bytes: int, slots: int,
                 device_fault: Callable[[list[Request]], str] = lambda _b: "") -> None:
        self._device_fault = device_fault  # test hook: a reason to fail a batch's S1
        self.separators = {n: s for n, s in separators.items()
                           if hasattr(s, "vocal") and getattr(s, "on_lanes", True)}
        self._cpu_backend = cpu_backend  # name -> a CPU instance, for re-runs
        self.flow = DeviceFlow(lanes, StagingRing(lanes, slot_bytes, slots),
                               StagingRing(lanes, slot_bytes, slots))
        for sep in self.separators.values():  # ONNX Runtime's CUDA provider on lane s1
            if hasattr(sep, "use_stream") and lanes.kind == "cuda":
                sep.use_stream(lanes.lane("s1").handle)
        self.broken = ""

    def supports(self, batch: list[Request]) -> bool:
        """Whether every request of ``batch`` can go through the device (one backend)."""
        names = {r.backend for r in batch}
        return (not self.broken and len(names) == 1 and names <= set(self.separators)
                and all(r.audio.nbytes <= self.flow.ring_in.slot_bytes for r in batch))

    def fits(self, batch: list[Request]) -> bool:
        return _nbytes(batch) <= self.flow.ring_in.slot_bytes

    def submit(self, batch: list[Request], done: Callable[[list[Result]], None]) -> bool:
        """Queue ``batch`` (one backend, see :meth:`supports`); ``done(results)`` runs on
        the flow's thread. False when the staging ring is full."""
        if not self.broken:
            sep = self.separators[batch[0].backend]
            try:
                return self.flow.submit(
                    _nbytes(batch), _nbytes(batch) * _channels(sep) // 2,
                    lambda i, o: self._steps(sep, batch, i, o),
                    lambda f: self._finish(f, batch, done))
            except Exception as exc:  # a launch failed
                self._break(f"device failed at launch: {exc!r}")
        self.flow.drain()
        done(self._on_cpu(batch))
        return True

    def _steps(self, sep: Any, batch: list[Request], slot_in: Slot,
               slot_out: Slot) -> list[tuple[str, Step]]:
        import torch

        n = sep.window_samples
        w = sum(int(r.audio.shape[0]) for r in batch)
        x = slot_in.data[: w * 2 * n * F32].view(np.float32).reshape(w, 2, n)
        pos = 0
        for r in batch:
            m = int(r.audio.shape[0])
            x[pos : pos + m] = r.audio
            pos += m
        c = _channels(sep)
        out = torch.from_numpy(slot_out.data[: w * c * n * F32].view(np.float32).reshape(
            (w, n) if c == 1 else (w, c, n)))
        held: dict[str, Any] = {}
        dev = sep._tdev

        def h2d() -> None:  # copy=True: a CPU "device" would alias the slot otherwise
            held["x"] = torch.from_numpy(x).to(dev, non_blocking=True, copy=True)

        fault = self._device_fault(batch)

        def s1() -> None:
            if fault:
                raise RuntimeError(fault)
            held["vocal"] = sep.vocal(held["x"])

        def d2h() -> None:
            out.copy_(held["vocal"], non_blocking=True)

        self._held = held
        return [("h2d", Step("h2d", h2d)), ("s1", Step("s1", s1)), ("d2h", Step("d2h", d2h))]

    def _finish(self, flight: Flight, batch: list[Request],
                done: Callable[[list[Result]], None]) -> None:
        try:
            if flight.error is not None:
                self._break(f"device failed: {flight.error}")
                results = self._on_cpu(batch)
            else:
                ms = DeviceFlow.step_ms(flight)
                sep = self.separators[batch[0].backend]
                n, c = sep.window_samples, _channels(sep)
                w = sum(int(r.audio.shape[0]) for r in batch)
                stem = flight.slot_out.data[: w * c * n * F32].view(np.float32).reshape(
                    w, c, n)
                results, pos = [], 0
                for r in batch:
                    m = int(r.audio.shape[0])
                    part = stem[pos : pos + m]
                    results.append(Result(
                        kind=Kind.SEPARATE, stream=r.stream, id=r.id, index=r.index,
                        vocal=np.repeat(part, 2, axis=1) if c == 1 else part.copy(),
                        batch_size=w, separation_ms=ms["s1"], h2d_ms=ms["h2d"],
                        d2h_ms=ms["d2h"],
                        pipeline="cuda" if self.flow.lanes.kind == "cuda" else ""))
                    pos += m
        except Exception as exc:
            log.exception("device pipeline: a separation batch could not be completed")
            results = [failed(r, ErrorCode.INTERNAL, f"the engine failed on this request: "
                              f"{exc!r}") for r in batch]
        finally:
            self.flow.release_out(flight)
        done(results)

    def _on_cpu(self, batch: list[Request]) -> list[Result]:
        out = []
        for r in batch:
            sep = self._cpu_backend(r.backend)
            vocal = sep.separate(r.audio) if r.audio.shape[0] else r.audio
            out.append(Result(kind=Kind.SEPARATE, stream=r.stream, id=r.id, index=r.index,
                              vocal=vocal, batch_size=int(r.audio.shape[0]),
                              fallback=self.broken))
        return out

    def _break(self, why: str) -> None:
        if not self.broken:
            self.broken = why
            log.error("GPU pipeline off, separation runs on the CPU: %s", why)


def _channels(sep: Any) -> int:
    """Channels of ``sep.vocal``'s output: 1 (the built-in's mono estimate) or 2."""
    return int(getattr(sep, "vocal_channels", 1))


def _nbytes(batch: list[Request]) -> int:
    return sum(int(r.audio.nbytes) for r in batch)

