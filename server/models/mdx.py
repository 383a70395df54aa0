"""MDX-Net-style ONNX vocal models (the UVR / MDX23 format).

Input ``[B, 4, dim_f, dim_t]``: the stereo STFT (n_fft, hop, Hann, centred) of a
window of ``hop * (dim_t - 1)`` samples as [L.re, L.im, R.re, R.im], top bins above
``dim_f`` dropped; output the same shape for one stem. The numbers differ per model,
so they come from the model's ONNX metadata or explicit config, never from defaults,
and a model whose declared input shape contradicts them is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from seamcut.server.errors import ConfigError
from seamcut.server.models.onnx_torch import TorchGraph

_KEYS = {  # our name -> metadata keys we accept
    "n_fft": ("n_fft",),
    "hop": ("hop", "hop_length"),
    "dim_f": ("dim_f",),
    "dim_t": ("dim_t",),
    "stem": ("stem", "target", "primary_stem"),
    "compensate": ("compensate", "compensation"),
    "rate_hz": ("sample_rate", "sample_rate_hz", "sr"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class MdxParams:
    n_fft: int
    hop: int
    dim_f: int
    dim_t: int
    stem: str  # "vocals" or "instrumental": what the model outputs
    compensate: float
    rate_hz: int

    @property
    def window_samples(self) -> int:
        return self.hop * (self.dim_t - 1)

    def __post_init__(self) -> None:
        if self.stem not in ("vocals", "instrumental"):
            raise ConfigError(f"MDX model stem must be vocals or instrumental, got {self.stem!r}")
        if not 0 < self.dim_f <= self.n_fft // 2 + 1:
            raise ConfigError(
                f"MDX dim_f={self.dim_f} must be in 1 ..= n_fft/2+1 = {self.n_fft // 2 + 1}"
            )
        if self.dim_t < 2 or self.hop <= 0 or self.n_fft <= 0 or self.rate_hz <= 0:
            raise ConfigError("MDX n_fft, hop, dim_t and sample rate must be positive")


def read_params(meta: Mapping[str, str], overrides: Mapping[str, Any], where: str) -> MdxParams:
    """Model numbers from explicit config first, then the ONNX metadata."""
    values: dict[str, Any] = {}
    missing = []
    for name, keys in _KEYS.items():
        if overrides.get(name) not in (None, ""):
            values[name] = overrides[name]
            continue
        found = next((meta[k] for k in keys if k in meta), None)
        if found is None:
            if name == "compensate":
                found = "1.0"
            elif name == "stem":
                found = "vocals"
            else:
                missing.append(name)
                continue
        values[name] = found
    if missing:
        raise ConfigError(
            f"{where}: the model's metadata lacks {', '.join(missing)}; give them in the "
            "[separator] config (mdx_n_fft, mdx_hop, mdx_dim_f, mdx_dim_t, mdx_rate_hz)"
        )
    try:
        return MdxParams(
            n_fft=int(values["n_fft"]), hop=int(values["hop"]), dim_f=int(values["dim_f"]),
            dim_t=int(values["dim_t"]), stem=str(values["stem"]).lower(),
            compensate=float(values["compensate"]), rate_hz=int(values["rate_hz"]),
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: bad MDX parameter: {exc}") from exc


class MdxOnnxSeparator:
    """Runs an MDX-Net ONNX model with STFT/iSTFT in torch on the model's device."""

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str | tuple[str, dict[str, str]]],
        overrides: Mapping[str, Any] | None = None,
        threads: int = 0,
        device: str = "cpu",
        max_batch: int = 64,
        runtime: str = "auto",
    ) -> None:
        """``runtime``: "onnxruntime" (its session's providers), "torch" (the graph run
        by torch on ``device``, :mod:`.onnx_torch`), or "auto": ONNX Runtime where
        its session got the CUDA provider or the device is the CPU, torch on a GPU
        without that provider."""
        import torch

        self._torch = torch
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=list(providers))
        except Exception as exc:  # ORT raises its own error types for unreadable models
            raise ConfigError(f"separator model {path}: cannot load: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.params = read_params(meta, overrides or {}, f"separator model {path}")
        p = self.params
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        expect = [None, 4, p.dim_f, p.dim_t]
        if len(shape) != 4 or any(
            isinstance(s, int) and e is not None and s != e for s, e in zip(shape, expect,
                                                                            strict=False)
        ):
            raise ConfigError(
                f"separator model {path}: input shape {shape} contradicts the configured "
                f"[B, 4, dim_f={p.dim_f}, dim_t={p.dim_t}]"
            )
        self._input = inp.name
        fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.max_batch = min(fixed or max_batch, max_batch)
        self.name = f"mdx:{Path(path).stem}"
        self.rate_hz = p.rate_hz
        self.window_samples = p.window_samples
        self.default_hop_samples = p.window_samples * 3 // 4
        self.device = device
        self.providers = self.session.get_providers()
        self._tdev = torch.device(device)
        self._window = torch.hann_window(p.n_fft, device=self._tdev)
        ort_cuda = "CUDAExecutionProvider" in self.providers
        if runtime == "auto":
            runtime = "onnxruntime" if ort_cuda or device == "cpu" else "torch"
        self.runtime = runtime
        self._graph = TorchGraph(path, device) if runtime == "torch" else None
        self._binding_device = ("cuda", self._tdev.index or 0) if ort_cuda else ("cpu", 0)
        # Whether :meth:`vocal` can run on this device's tensors (the S1 lane): not
        # with ONNX Runtime on the CPU for tensors on a GPU (chosen explicitly).
        self.on_lanes = runtime == "torch" or self._binding_device[0] == self._tdev.type
        self._run_options = ort.RunOptions()
        # IOBinding: ``run`` must not synchronise the provider's stream with the host.
        self._run_options.add_run_config_entry("disable_synchronize_execution_providers",
                                               "1")
        self._path, self._opts = str(path), opts

    def _spec(self, x: Any) -> Any:
        torch, p = self._torch, self.params
        b = x.shape[0]
        z = torch.stft(x.reshape(b * 2, -1), p.n_fft, p.hop, window=self._window, center=True,
                       return_complex=True)
        z = torch.view_as_real(z).permute(0, 3, 1, 2)  # [2B, 2, bins, T]
        return z.reshape(b, 4, z.shape[2], z.shape[3])[:, :, : p.dim_f]

    def _ispec(self, y: Any) -> Any:
        torch, p = self._torch, self.params
        b = y.shape[0]
        bins = p.n_fft // 2 + 1
        y = torch.nn.functional.pad(y, (0, 0, 0, bins - p.dim_f))
        y = y.reshape(b * 2, 2, bins, p.dim_t).permute(0, 2, 3, 1).contiguous()
        z = torch.istft(torch.view_as_complex(y), p.n_fft, p.hop, window=self._window,
                        center=True, length=p.window_samples)
        return z.reshape(b, 2, -1)

    vocal_channels = 2  # what :meth:`vocal` returns per window

    def use_stream(self, handle: int) -> None:
        """Run the CUDA provider on the torch stream whose handle is ``handle`` (S1's
        lane), so the model queues behind the STFT there and the iSTFT behind it.
        The stream is fixed per session, so the session is made again."""
        if "CUDAExecutionProvider" not in self.providers or self.runtime != "onnxruntime":
            return
        if not handle:  # ONNX Runtime silently ignores handle 0 (the legacy stream)
            raise ConfigError("separator: user_compute_stream needs a non-default stream")
        options = {"device_id": str(self._binding_device[1]),
                   "user_compute_stream": str(handle)}
        self.session = ort.InferenceSession(
            self._path, sess_options=self._opts,
            providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"])
        self.providers = self.session.get_providers()

    def _model_bound(self, spec: Any) -> Any:
        """The ONNX Runtime model on device tensors through IOBinding: no host copy,
        no synchronisation (``disable_synchronize_execution_providers``)."""
        torch = self._torch
        out = torch.empty_like(spec)
        kind, index = self._binding_device
        io = self.session.io_binding()
        io.bind_input(self._input, kind, index, np.float32, tuple(spec.shape),
                      spec.data_ptr())
        io.bind_output(self.session.get_outputs()[0].name, kind, index, np.float32,
                       tuple(out.shape), out.data_ptr())
        self.session.run_with_iobinding(io, self._run_options)
        return out

    def _model(self, spec: Any) -> Any:
        parts = []
        for i in range(0, spec.shape[0], self.max_batch):
            part = spec[i : i + self.max_batch].contiguous()
            parts.append(self._graph(part) if self._graph is not None
                         else self._model_bound(part))
        return self._torch.cat(parts) if len(parts) > 1 else parts[0]

    def vocal(self, x: Any) -> Any:
        """The stereo stem [B, 2, n] of device windows [B, 2, n], on S1's lane: STFT,
        model and iSTFT are queued there, nothing waits for the device."""
        with self._torch.inference_mode():
            stem = self._ispec(self._model(self._spec(x))) * self.params.compensate
            return x - stem if self.params.stem == "instrumental" else stem

    def separate(self, windows: np.ndarray) -> np.ndarray:
        torch = self._torch
        if self._graph is not None:  # torch runs the model: the device path, waited for
            x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
            out = self.vocal(x.to(self._tdev)).cpu().numpy()
            return np.asarray(out, dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self._tdev)
        spec = self._spec(x).contiguous().cpu().numpy()
        outs = [
            self.session.run(None, {self._input: spec[i : i + self.max_batch]})[0]
            for i in range(0, spec.shape[0], self.max_batch)
        ]
        y = torch.from_numpy(np.concatenate(outs).astype(np.float32)).to(self._tdev)
        stem = (self._ispec(y) * self.params.compensate).cpu().numpy().astype(np.float32)
        if self.params.stem == "instrumental":
            stem = windows - stem
        return np.asarray(stem, dtype=np.float32)
