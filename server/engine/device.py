"""The one place that knows which device runs the models."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import onnxruntime as ort

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Device:
    """Where the engine runs. Chosen once at start-up by :func:`select_device`."""

    name: str  # "cpu" or "cuda:N"
    gpu: bool
    fallback_reason: str = ""  # why a requested GPU is not used ("" = none)

    def ort_providers(self) -> list[str]:
        if self.gpu:
            index = self.name.partition(":")[2] or "0"
            return [f"CUDAExecutionProvider:{index}", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    @staticmethod
    def now() -> float:
        """Timer for stage timings (seconds). On CUDA the stages record events instead."""
        return time.perf_counter()


def ort_providers(device: Device) -> list[str | tuple[str, dict[str, str]]]:
    """ONNX Runtime provider list for sessions on ``device``."""
    out: list[str | tuple[str, dict[str, str]]] = []
    for p in device.ort_providers():
        name, _, index = p.partition(":")
        out.append((name, {"device_id": index}) if index else name)
    return out


def select_device(requested: str) -> Device:
    """Resolve "auto" | "cpu" | "cuda" | "cuda:N" to the device we will try.

    The choice is confirmed by :func:`confirm_device` once a real session exists.
    """
    if requested == "cpu":
        return Device("cpu", gpu=False)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        reason = "onnxruntime has no CUDA provider (install onnxruntime-gpu)"
        if requested != "auto":
            log.warning("CUDA requested but not usable, running on CPU: %s", reason)
        return Device("cpu", gpu=False, fallback_reason=reason if requested != "auto" else "")
    index = requested.partition(":")[2] or "0"
    return Device(f"cuda:{index}", gpu=True)


def confirm_device(device: Device, session_providers: list[str]) -> Device:
    """Downgrade to CPU when a session asked for CUDA did not get it.

    ``onnxruntime-gpu`` lists CUDA as available even where the CUDA or cuDNN libraries
    are missing; a session asked for CUDA then runs on CPU with only stderr warnings.
    Only ``session.get_providers()`` tells the truth.
    """
    if not device.gpu or "CUDAExecutionProvider" in session_providers:
        return device
    reason = (
        "onnxruntime's CUDA provider failed to load (CUDA/cuDNN libraries missing?); "
        "running on CPU"
    )
    log.warning(reason)
    return Device("cpu", gpu=False, fallback_reason=reason)
