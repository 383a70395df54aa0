"""Device choice on a machine without a usable GPU."""

from __future__ import annotations

import os

import pytest
from seamcut.server.engine.device import Device, confirm_ort, select_device

pytestmark = pytest.mark.unit
NO_GPU = not (os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0"))


@pytest.mark.skipif(not NO_GPU, reason="this machine has an NVIDIA GPU")
def test_cuda_request_falls_back_to_cpu_and_says_why() -> None:
    dev = select_device("cuda")
    assert dev.name == "cpu" and not dev.gpu and not dev.ort_cuda
    assert "no NVIDIA device nodes" in dev.fallback_reason
    assert select_device("auto").fallback_reason == ""  # auto quietly uses what exists


def test_ort_cuda_that_did_not_load_is_reported() -> None:
    dev = Device("cuda:0", ort_cuda=True)
    assert dev.ort_providers()[0] == ("CUDAExecutionProvider", {"device_id": "0"})
    down = confirm_ort(dev, ["CPUExecutionProvider"])
    assert not down.ort_cuda and down.gpu and "failed to load" in down.fallback_reason
    assert down.ort_providers() == ["CPUExecutionProvider"]
    assert confirm_ort(dev, ["CUDAExecutionProvider", "CPUExecutionProvider"]) is dev
