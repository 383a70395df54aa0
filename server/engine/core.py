"""The engine's model step: requests in, results out. No threads, no sockets.

:class:`EngineCore` holds the models (weights and sessions only) and turns batches of
:class:`~seamcut.server.engine.protocol.Request` into results. It keeps nothing per
stream: the recurrent state comes in with each request and goes back in its result.
The stage threads (:mod:`.pipeline`) and the process wrapper (:mod:`.process`) call
it; neither knows what a model is.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any

import numpy as np
from seamcut.server.config import (
    ANALYSIS_RATE_HZ,
    HOP_SAMPLES,
    VAD_FRAME_SAMPLES,
    AppConfig,
)
from seamcut.server.dsp.features import band_energy_db
from seamcut.server.engine.device import CPU_PROVIDERS, Device, confirm_ort, select_device
from seamcut.server.engine.protocol import (
    EngineInfo,
    ErrorCode,
    Kind,
    Request,
    Result,
    SeparatorInfo,
    StateMissing,
    chained_runs,
    failed,
    hops_per_block,
    vad_frames,
)
from seamcut.server.errors import ConfigError
from seamcut.server.models.loader import load_separators
from seamcut.server.models.separator import Separator
from seamcut.server.models.vad import STATE_SHAPE, SileroVad, VadState

log = logging.getLogger(__name__)


class InjectedFault(RuntimeError):
    """Raised by the ``engine.test_fault`` hook (tests only)."""


class InjectedDeath(BaseException):
    """Raised by ``engine.test_fault = "sN@B!"``: gets past every handler but the stage
    guard's, so the stage thread dies (tests only)."""


def _unpack(state: np.ndarray) -> VadState:
    lstm = np.asarray(state[: 2 * STATE_SHAPE[1]], np.float32).reshape(STATE_SHAPE)
    return VadState(lstm, np.asarray(state[2 * STATE_SHAPE[1]:], np.float32))


def _pack(state: VadState) -> np.ndarray:
    return np.concatenate([state.lstm.reshape(-1), state.context]).astype(np.float32)


def _deterministic_cuda() -> None:
    """Ask torch for the same result for the same input on the GPU: cuDNN picks
    algorithms by shape and timing otherwise, so batch composition could change the
    last bits of a probability and flip a threshold. Ops without a deterministic
    kernel only warn. What remains is measured, not assumed (docs/DESIGN.md)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


class EngineCore:
    """S1 separation, S2 Silero VAD and S3 band energy, as batch functions."""

    def __init__(self, cfg: AppConfig, *, separators: bool = True,
                 engine_id: str = "inline") -> None:
        """``separators=False`` skips loading the SONG backends (torch and model files):
        for in-process SPEECH-only use, where start-up time counts."""
        self.cfg = cfg
        self.engine_id = engine_id
        self.device: Device = select_device(cfg.engine.device)
        self.vad = SileroVad(providers=CPU_PROVIDERS, threads=cfg.engine.vad_threads)
        self.separators: dict[str, Separator] = (
            load_separators(cfg.separator, device=self.device.name,
                            providers=self.device.ort_providers())
            if separators else {}
        )
        for sep in self.separators.values():
            if hasattr(sep, "providers"):  # backends with an ONNX Runtime session
                self.device = confirm_ort(self.device, list(sep.providers))
        if self.device.fallback_reason:
            log.warning("device %s: %s", self.device.name, self.device.fallback_reason)
        stage, _, block = cfg.engine.test_fault.partition("@")
        self._fault = (stage, int(block.removesuffix("!"))) if block else None
        self._fault_kills = block.endswith("!")
        # stream -> (id, vad state, mix state) its last ANALYSE request ended in
        self._states: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
        self._states_lock = threading.Lock()
        self._cpu_separators: dict[str, Separator] = {}
        self.device_analyse: Any = None  # S2 + S3 on device lanes (DeviceAnalyse)
        self.device_separate: Any = None  # S1 on device lanes (DeviceSeparate)
        self._device_pipeline()

    def _device_pipeline(self) -> None:
        """The stages on device lanes, when they are on (``engine.lanes``)."""
        e = self.cfg.engine
        fake = e.lanes == "fake"
        if not (fake or (e.lanes == "auto" and self.device.gpu)):
            return
        from seamcut.server.engine.device_analyse import DeviceAnalyse
        from seamcut.server.engine.device_separate import DeviceSeparate
        from seamcut.server.engine.lanes import CudaLanes, FakeLanes
        from seamcut.server.models.vad_torch import TorchVad

        slot = int(e.staging_mib * (1 << 20))
        if not fake:
            _deterministic_cuda()
        try:
            lanes = FakeLanes() if fake else CudaLanes(self.device.name)
            self.device_analyse = DeviceAnalyse(
                self.cfg, lanes, TorchVad("cpu" if fake else self.device.name),
                self.analyse_on_cpu, self.remember, slot_bytes=slot,
                slots=e.staging_slots, device_fault=self._device_fault,
                start_state=self.start_state, cpu_vad=self.vad)
            if self.separators:
                self.device_separate = DeviceSeparate(
                    lanes, dict(self.separators), self._cpu_separator, slot_bytes=slot,
                    slots=e.staging_slots, device_fault=self._device_fault)
        except ConfigError:
            raise
        except Exception as exc:  # the GPU path could not start: serve on the CPU path
            why = f"VAD and features on CPU: the CUDA pipeline did not start ({exc!r})"
            log.error(why)
            self.device = dataclasses.replace(self.device, fallback_reason="; ".join(
                r for r in (self.device.fallback_reason, why) if r))
            self.device_analyse = self.device_separate = None

    def close(self) -> None:
        """Stop the device pipeline's threads (its completion threads, fake lanes)."""
        for dev in (self.device_analyse, self.device_separate):
            if dev is not None:
                dev.flow.close()
        lanes = self.device_analyse.flow.lanes if self.device_analyse is not None else None
        if lanes is not None and hasattr(lanes, "close"):
            lanes.close()

    def _cpu_separator(self, name: str) -> Separator:
        """A CPU instance of backend ``name``, for re-runs after a device fault."""
        sep = self.separators[name]
        if sep.device == "cpu":
            return sep
        if name not in self._cpu_separators:
            from seamcut.server.models.builtin import BuiltinSeparator
            from seamcut.server.models.mdx import MdxOnnxSeparator

            if isinstance(sep, MdxOnnxSeparator):  # the same model, on ONNX Runtime's CPU
                s = self.cfg.separator
                self._cpu_separators[name] = MdxOnnxSeparator(
                    s.mdx_model_path, providers=CPU_PROVIDERS,
                    overrides=s.mdx_overrides(), threads=s.threads, device="cpu",
                    max_batch=s.max_batch or 1, runtime="onnxruntime")
            else:
                self._cpu_separators[name] = BuiltinSeparator("cpu")
        return self._cpu_separators[name]

    def analyse_on_cpu(self, batch: list[Request]) -> list[Result]:
        """S2 and S3 of ``batch`` on the CPU path (what a device fault falls back to)."""
        return [self.features(r, res) for r, res in zip(batch, self.vad_batch(batch),
                                                        strict=True)]

    def _device_fault(self, batch: list[Request]) -> str:
        """The ``d1@N`` / ``d2@N`` test hooks: why the device work of ``batch`` fails
        ("" = it does not)."""
        if self._fault is None or self._fault[0] not in ("d1", "d2"):
            return ""
        kind = Kind.SEPARATE if self._fault[0] == "d1" else Kind.ANALYSE
        n = self._fault[1]
        hit = any(r.kind is kind and r.index <= n < r.index + (
            len(r.lengths) if kind is Kind.ANALYSE else int(r.audio.shape[0])) for r in batch)
        what = "window" if kind is Kind.SEPARATE else "block"
        return f"injected device fault at {what} {n}" if hit else ""

    def info(self, credits: int) -> EngineInfo:
        return EngineInfo(
            engine_id=self.engine_id, pid=os.getpid(), device=self.device.name,
            fallback_reason=self.device.fallback_reason, credits=credits,
            separators=tuple(
                SeparatorInfo(name=name, rate_hz=s.rate_hz, window_samples=s.window_samples,
                              default_hop_samples=s.default_hop_samples)
                for name, s in self.separators.items()
            ),
        )

    def warm_up(self) -> None:
        """Run every model once so the first stream does not pay for initialisation."""
        frames = np.zeros((1, VAD_FRAME_SAMPLES), np.float32)
        self.vad.run_sequence(frames, VadState.initial())
        self.vad.run_batched([frames] * 3, [VadState.initial()] * 3)
        for sep in self.separators.values():
            sep.separate(np.zeros((1, 2, sep.window_samples), np.float32))

    def _check_fault(self, stage: str, batch: list[Request]) -> None:
        """The test hook: ``stage@block`` raises for a batch holding that block."""
        if self._fault is None or self._fault[0] != stage:
            return
        for r in batch:
            n = len(r.lengths) if r.kind is Kind.ANALYSE else int(r.audio.shape[0])
            if r.index <= self._fault[1] < r.index + n:
                what = f"injected fault in {stage} at block {self._fault[1]}"
                raise InjectedDeath(what) if self._fault_kills else InjectedFault(what)

    # ------------------------------------------------------------ S2: VAD
    def forget(self, stream: str) -> None:
        """Drop the end state kept for ``stream`` (cancelled, or finished)."""
        with self._states_lock:
            self._states.pop(stream, None)
        if self.device_analyse is not None:
            self.device_analyse.forget(stream)

    def start_state(self, r: Request) -> tuple[np.ndarray, np.ndarray]:
        """The host (vad, mix) state ``r`` starts from: its own, or the one kept for
        the request it names in ``state_from`` (StateMissing if not kept)."""
        with self._states_lock:
            prev = self._states.get(r.stream)
        return self._start_state(r, prev)

    def _start_state(self, r: Request, prev: tuple[int, np.ndarray, np.ndarray] | None,
                     ) -> tuple[np.ndarray, np.ndarray]:
        if not r.state_from:
            return r.vad_state, r.mix_state
        if prev is None or prev[0] != r.state_from:
            raise StateMissing(
                f"request {r.id} continues from request {r.state_from}, whose end state "
                "this engine does not have (send the state itself)")
        return prev[1], prev[2]

    def vad_batch(self, batch: list[Request]) -> list[Result]:
        """One batched Silero pass over every request (the mix too, for SONG ones).

        A stream's requests in the batch run back to back as one sequence, each
        starting from the end state of the one before (or from its own state).
        """
        self._check_fault("s2", batch)
        t0 = time.perf_counter()
        runs = chained_runs(batch)
        streams = {r.stream for r in batch}
        seqs: list[np.ndarray] = []
        starts: list[VadState] = []
        marks: list[list[int]] = []
        plan = []  # per run: (requests, index of its vocal sequence, of its mix one, ends)
        with self._states_lock:
            kept = {s: self._states.get(s) for s in streams}
        for reqs in runs:
            vad0, mix0 = self._start_state(reqs[0], kept[reqs[0].stream])
            frames = [vad_frames(r.audio[HOP_SAMPLES:], r.lengths) for r in reqs]
            ends = list(np.cumsum([f.shape[0] for f in frames]))
            v = len(seqs)
            seqs.append(np.concatenate(frames))
            starts.append(_unpack(vad0))
            marks.append(ends)
            m = None
            if mix0.size:
                m = len(seqs)
                seqs.append(np.concatenate([vad_frames(r.mix, r.lengths) for r in reqs]))
                starts.append(_unpack(mix0))
                marks.append(ends)
            plan.append((reqs, v, m, ends))
        probs, snaps = self.vad.run_marked(seqs, starts, marks)
        ms = (time.perf_counter() - t0) * 1000
        out: list[Result] = []
        order: list[int] = []  # position in ``batch`` of each result in ``out``
        where = {id(r): i for i, r in enumerate(batch)}
        for reqs, v, m, ends in plan:
            lo = 0
            for k, r in enumerate(reqs):
                hi = ends[k]
                vad = _pack(snaps[v][k])
                mix = _pack(snaps[m][k]) if m is not None else r.mix_state[:0]
                out.append(Result(
                    kind=Kind.ANALYSE, stream=r.stream, id=r.id, index=r.index,
                    probs=probs[v][lo:hi], vad_state=vad,
                    probs_mix=probs[m][lo:hi] if m is not None else probs[v][:0],
                    mix_state=mix, batch_size=len(streams), vad_ms=ms,
                ))
                order.append(where[id(r)])
                lo = hi
        by_position = dict(zip(order, out, strict=True))
        results = [by_position[i] for i in range(len(batch))]  # in the batch's order
        self.remember(batch, results)  # only once the whole batch has succeeded
        return results

    def remember(self, batch: list[Request], results: list[Result]) -> None:
        """Keep each stream's end state after ``batch`` (its last request in the batch),
        for a next request that names it in ``state_from``."""
        updates: dict[str, tuple[int, np.ndarray, np.ndarray] | None] = {}
        for r, res in zip(batch, results, strict=True):
            updates[r.stream] = None if r.last else (r.id, res.vad_state, res.mix_state)
        with self._states_lock:
            for stream, kept_state in updates.items():
                if kept_state is None:
                    self._states.pop(stream, None)
                else:
                    self._states[stream] = kept_state

    # ------------------------------------------------------------ S3: features
    def features(self, req: Request, res: Result) -> Result:
        """Band energy per 10 ms hop of each block (S3), added to the VAD result."""
        self._check_fault("s3", [req])
        t0 = time.perf_counter()
        det = self.cfg.detector
        parts, pos = [], 0
        for n in req.lengths:
            parts.append(band_energy_db(
                req.audio[pos : pos + HOP_SAMPLES + n], hops_per_block(n),
                rate_hz=ANALYSIS_RATE_HZ, low_hz=det.band_low_hz, high_hz=det.band_high_hz))
            pos += n
        energy = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return dataclasses.replace(res, energy_db=energy,
                                   features_ms=(time.perf_counter() - t0) * 1000)

    # ------------------------------------------------------------ S1: separation
    def separate_batch(self, batch: list[Request]) -> list[Result]:
        """Every window of the batch's requests through their backends, batched; the
        results in the batch's order."""
        self._check_fault("s1", batch)
        done: dict[int, Result] = {}  # by id() of the request
        by_backend: dict[str, list[Request]] = {}
        for r in batch:
            if r.backend not in self.separators:
                loaded = ", ".join(self.separators) or "none"
                done[id(r)] = failed(r, ErrorCode.BAD_REQUEST,
                                     f"separator {r.backend!r} is not loaded (loaded: {loaded})")
            else:
                by_backend.setdefault(r.backend, []).append(r)
        for name, group in by_backend.items():
            sep = self.separators[name]
            t0 = time.perf_counter()
            stacked = np.concatenate([r.audio for r in group])
            if stacked.shape[0]:
                vocal = np.concatenate([
                    sep.separate(stacked[i : i + sep.max_batch])
                    for i in range(0, stacked.shape[0], sep.max_batch)
                ])
            else:
                vocal = np.zeros((0, 2, sep.window_samples), np.float32)
            ms = (time.perf_counter() - t0) * 1000
            pos = 0
            for r in group:
                m = int(r.audio.shape[0])
                done[id(r)] = Result(kind=Kind.SEPARATE, stream=r.stream, id=r.id,
                                     index=r.index, vocal=vocal[pos : pos + m],
                                     batch_size=int(stacked.shape[0]), separation_ms=ms)
                pos += m
        return [done[id(r)] for r in batch]

