"""Build MDX-Net-shaped ONNX models with random weights (tests and benchmarks).

The architecture is a plain stack of 2-D convolutions over [B, 4, dim_f, dim_t]
(not the real TFC-TDF blocks), sized by ``width`` and ``depth`` so that its parameter
count and cost can match a real MDX-Net model. Weights are random: the output is
not a vocal, but every code path (loader, metadata, batching, ONNX Runtime) is real.
Needs torch and onnx (the ``dev`` extra).
"""

from __future__ import annotations

import warnings
from pathlib import Path


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
    stem: str = "vocals",
    compensate: float = 1.0,
    fixed_batch: bool = False,
    metadata: bool = True,
    seed: int = 0,
) -> int:
    """Write the model to ``path``; return its parameter count."""
    import onnx
    import torch

    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(4, width, 3, padding=1), torch.nn.GELU()]
    for _ in range(depth):
        layers += [torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.GELU()]
    layers.append(torch.nn.Conv2d(width, 4, 1))
    net = torch.nn.Sequential(*layers).eval()
    for p in net.parameters():
        p.data *= 0.1  # keep random outputs at a sane level
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
