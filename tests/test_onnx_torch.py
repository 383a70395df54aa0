"""The torch runner of ONNX separator graphs against ONNX Runtime on the same model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from seamcut.bench.mdx_model import build_mdx_onnx
from seamcut.server.errors import ConfigError
from seamcut.server.models.onnx_torch import TorchGraph

pytestmark = pytest.mark.unit
SHAPE = (4, 64, 32)  # [4, dim_f, dim_t] of a small MDX-shaped input


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])


def _close(path: Path, x: np.ndarray) -> float:
    """The largest error of the torch runner relative to the output's scale."""
    want = _ort(path, x)
    with torch.no_grad():
        got = TorchGraph(path, "cpu")(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    return float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-12))


class _TdfLike(torch.nn.Module):
    """The operators of real MDX-Net (TFC-TDF) exports and more: conv + batch norm,
    a linear layer over frequency through reshape/transpose/matmul, instance and layer
    norm, a dynamic reshape from the input's shape, pads, pools, splits and slices."""

    def __init__(self) -> None:
        super().__init__()
        c, f = 8, SHAPE[1]
        self.conv = torch.nn.Conv2d(4, c, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(c)
        self.tdf = torch.nn.Linear(f, f // 4)
        self.back = torch.nn.Linear(f // 4, f)
        self.inorm = torch.nn.InstanceNorm2d(c, affine=True)
        self.lnorm = torch.nn.LayerNorm(SHAPE[2])
        self.down = torch.nn.Conv2d(c, c, 2, stride=2)
        self.up = torch.nn.ConvTranspose2d(c, c, 2, stride=2)
        self.head = torch.nn.Conv2d(2 * c, 4, 1)
        with torch.no_grad():  # batch norm statistics that are not the identity
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: Any) -> Any:
        b = x.shape[0]
        y = torch.relu(self.bn(self.conv(x)))
        skip = y
        t = y.transpose(2, 3)  # [B, c, T, F]: the TDF linear runs over frequency
        t = self.back(torch.nn.functional.leaky_relu(self.tdf(t), 0.1)).transpose(2, 3)
        y = self.lnorm(self.inorm(y + t))
        y = torch.sigmoid(self.up(torch.nn.functional.avg_pool2d(self.down(y), 1))) * y
        y = torch.nn.functional.pad(y, (1, 1, 0, 0))[..., 1:-1]
        lo, hi = torch.chunk(y, 2, dim=1)
        y = torch.cat([hi, lo, skip], dim=1)
        y = y.reshape(b, -1, SHAPE[1] * SHAPE[2]).reshape(b, -1, SHAPE[1], SHAPE[2])
        return self.head(torch.nn.functional.gelu(y)) + x.clamp(-1, 1)


def test_bench_mdx_models_match_onnx_runtime(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((3, *SHAPE)).astype(np.float32)
    for name, extra in (("plain", {"width": 8, "depth": 2}),
                        ("unet", {"width": 8, "depth": 1, "levels": 2})):
        path = tmp_path / f"{name}.onnx"
        build_mdx_onnx(path, n_fft=126, hop=32, dim_f=SHAPE[1], dim_t=SHAPE[2],
                       weight_scale=1.0, **extra)
        assert _close(path, x) <= 1e-3, name


def test_mdx_style_operators_match_onnx_runtime(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = _TdfLike().eval()
    path = tmp_path / "tdf.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, *SHAPE),), str(path), input_names=["input"],
                          output_names=["output"], dynamo=False,
                          dynamic_axes={"input": {0: "b"}, "output": {0: "b"}})
    rng = np.random.default_rng(1)
    for batch in (1, 3):  # the batch is dynamic: Shape/Gather/Concat feed the reshapes
        x = rng.standard_normal((batch, *SHAPE)).astype(np.float32)
        assert _close(path, x) <= 1e-3, batch


def test_an_operator_it_cannot_run_is_named_at_load(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, save

    node = helper.make_node("Hardmax", ["input"], ["output"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "hardmax.onnx"
    save(helper.make_model(graph), str(path))
    with pytest.raises(ConfigError, match="Hardmax"):
        TorchGraph(path, "cpu")
