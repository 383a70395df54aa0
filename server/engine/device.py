"""The one place that knows which device runs what.

Two facts decide it, both checked at start-up, never at import:

* torch's device for the tensor work of separation (STFT, masks, iSTFT): CUDA when
  torch sees a GPU, else the CPU;
* ONNX Runtime's providers for separator models: CUDA when ``onnxruntime-gpu`` is
  installed *and* a session really got the provider. ``onnxruntime-gpu`` lists CUDA
  as available even where the CUDA or cuDNN libraries are missing and then silently
  runs on the CPU; only ``session.get_providers()`` tells the truth (see
  :func:`confirm_ort`).

On a CUDA device the stages run on the device lanes (:mod:`.lanes`); MDX models
without ONNX Runtime's CUDA provider are run there by torch (``separator.mdx_runtime``),
and Silero runs on the CPU or the device by batch size (:mod:`.vad_choice`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass

import onnxruntime as ort

log = logging.getLogger(__name__)

CPU_PROVIDERS: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]


@dataclass(frozen=True, slots=True)
class Device:
    """Where the engine runs. Chosen once at start-up by :func:`select_device`."""

    name: str  # torch device for separation tensors: "cpu" or "cuda:N"
    ort_cuda: bool = False  # separator models run on ONNX Runtime's CUDA provider
    fallback_reason: str = ""  # why a requested GPU is (partly) not used; "" = none

    @property
    def gpu(self) -> bool:
        return self.name != "cpu"

    @property
    def index(self) -> int:
        return int(self.name.partition(":")[2] or 0)

    def ort_providers(self) -> list[str | tuple[str, dict[str, str]]]:
        """Providers for separator sessions (VAD sessions use CPU_PROVIDERS)."""
        if self.ort_cuda:
            return [("CUDAExecutionProvider", {"device_id": str(self.index)}),
                    "CPUExecutionProvider"]
        return list(CPU_PROVIDERS)

    @staticmethod
    def now() -> float:
        """Wall-clock timer for stage timings (seconds)."""
        return time.perf_counter()


def _torch_cuda(index: int) -> str:
    """"" if torch can use GPU ``index``, else why not."""
    if not (os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")):
        return "no NVIDIA device nodes"  # spares importing torch on CPU-only hosts
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (a CPU build?)"
    if index >= torch.cuda.device_count():
        return f"torch sees {torch.cuda.device_count()} CUDA device(s), not cuda:{index}"
    return ""


def select_device(requested: str) -> Device:
    """Resolve "auto" | "cpu" | "cuda" | "cuda:N" to the device the engine will use."""
    if requested == "cpu":
        return Device("cpu")
    index = int(requested.partition(":")[2] or 0)
    torch_reason = _torch_cuda(index)
    ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    reasons = []
    if torch_reason:
        reasons.append(f"separation tensors on CPU: {torch_reason}")
    if not ort_cuda and torch_reason:
        reasons.append("separator models on CPU: onnxruntime has no CUDA provider "
                       "(install onnxruntime-gpu)")
    # With torch on CUDA and no CUDA provider, MDX models run in torch on the GPU
    # (separator.mdx_runtime = "auto"): nothing falls back, so no reason is given.
    reason = "; ".join(reasons)
    if reason and requested != "auto":
        log.warning("CUDA requested but not fully usable: %s", reason)
    name = "cpu" if torch_reason else f"cuda:{index}"
    return Device(name, ort_cuda=ort_cuda and not torch_reason,
                  fallback_reason=reason if requested != "auto" or not torch_reason else "")


def confirm_ort(device: Device, session_providers: list[str]) -> Device:
    """Downgrade ONNX Runtime to the CPU when a session asked for CUDA did not get it."""
    if not device.ort_cuda or "CUDAExecutionProvider" in session_providers:
        return device
    reason = ("onnxruntime's CUDA provider failed to load (CUDA 13 / cuDNN 9 libraries "
              "missing?); MDX models run in torch on the GPU instead, or on the CPU with "
              "separator.mdx_runtime = onnxruntime")
    log.warning(reason)
    joined = "; ".join(r for r in (device.fallback_reason, reason) if r)
    return dataclasses.replace(device, ort_cuda=False, fallback_reason=joined)
