"""Build MDX-Net-shaped ONNX models with random weights (tests and benchmarks).

The architecture is a plain stack of 2-D convolutions over [B, 4, dim_f, dim_t]
(not the real TFC-TDF blocks), sized by ``width`` and ``depth`` so that its parameter
count and cost can match a real MDX-Net model. Weights are random: the output is
not a vocal, but every code path (loader, metadata, batching, ONNX Runtime) is real.
Needs torch and onnx (the ``dev`` extra).
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Any


def build_mdx_onnx(
    path: str | Path,
    *,
    n_fft: int,
    hop: int,
    dim_f: int,
    dim_t: int,
    rate_hz: int = 44_100,
    width: int = 16,
    depth: int = 2,
    levels: int = 0,
    stem: str = "vocals",
    compensate: float = 1.0,
    fixed_batch: bool = False,
    metadata: bool = True,
    seed: int = 0,
    weight_scale: float = 0.1,
) -> int:
    """Write the model to ``path``; return its parameter count.

    ``levels`` > 0 builds a U-Net-shaped encoder/decoder instead (``width`` channels at
    full resolution, doubling per level, ``depth`` convolutions per level), which is how
    MDX-Net keeps ~17 M parameters at a few hundred GMAC per window.
    """
    import onnx
    import torch

    torch.manual_seed(seed)
    net = (_unet(width, depth, levels) if levels else _plain(width, depth)).eval()
    for p in net.parameters():
        p.data *= weight_scale  # 0.1 keeps random outputs small; 1.0 keeps them nonlinear
    params = sum(p.numel() for p in net.parameters())
    dummy = torch.zeros(1, 4, dim_f, dim_t)
    dynamic = None if fixed_batch else {"input": {0: "batch"}, "output": {0: "batch"}}
    tmp = Path(str(path) + ".tmp")
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated, but the dynamo one needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (dummy,), str(tmp), input_names=["input"],
                          output_names=["output"], dynamic_axes=dynamic, dynamo=False)
    model = onnx.load(str(tmp))
    tmp.unlink()
    if metadata:
        for key, value in {"n_fft": n_fft, "hop_length": hop, "dim_f": dim_f, "dim_t": dim_t,
                           "sample_rate": rate_hz, "stem": stem,
                           "compensate": compensate}.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))
    return int(params)


def _plain(width: int, depth: int) -> Any:
    import torch

    layers: list[torch.nn.Module] = [torch.nn.Conv2d(4, width, 3, padding=1), torch.nn.GELU()]
    for _ in range(depth):
        layers += [torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.GELU()]
    layers.append(torch.nn.Conv2d(width, 4, 1))
    return torch.nn.Sequential(*layers)


def _unet(width: int, depth: int, levels: int) -> Any:
    import torch

    def block(c: int) -> torch.nn.Module:
        layers: list[torch.nn.Module] = []
        for _ in range(depth):
            layers += [torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.GELU()]
        return torch.nn.Sequential(*layers)

    class UNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = [width * 2**i for i in range(levels + 1)]
            self.stem = torch.nn.Conv2d(4, width, 1)
            self.enc = torch.nn.ModuleList(block(c) for c in chans[:-1])
            self.down = torch.nn.ModuleList(
                torch.nn.Conv2d(a, b, 2, stride=2) for a, b in itertools.pairwise(chans))
            self.mid = block(chans[-1])
            self.up = torch.nn.ModuleList(
                torch.nn.ConvTranspose2d(b, a, 2, stride=2)
                for a, b in itertools.pairwise(chans))
            self.dec = torch.nn.ModuleList(block(c) for c in chans[:-1])
            self.head = torch.nn.Conv2d(width, 4, 1)

        def forward(self, x: Any) -> Any:
            x = self.stem(x)
            skips = []
            for enc, down in zip(self.enc, self.down, strict=True):
                x = enc(x)
                skips.append(x)
                x = down(x)
            x = self.mid(x)
            for i in reversed(range(levels)):
                x = self.dec[i](self.up[i](x) + skips[i])
            return self.head(x)

    return UNet()
