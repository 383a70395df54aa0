"""An ONNX graph run by torch, so an MDX-Net model can run on the S1 lane.

Why not onnx2torch: it imports torchvision at import time (one more CUDA-matched
wheel to pin), and it cannot convert the opset-20 ``Gelu`` our own test models use.
A separator graph needs few operators, and interpreting the graph node by node
with torch functions is small enough to read and to test against ONNX Runtime
(``tests/test_onnx_torch.py``).

Float tensors live on the model's device; integer tensors (shapes, axes, indices)
stay on the host, so ``Shape -> Gather -> Concat -> Reshape`` chains never read a
device tensor: the graph queues device work only and never synchronises, which is
what a lane needs. An operator outside the table is refused at load with its name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from seamcut.server.errors import ConfigError

Op = Callable[..., Any]


class TorchGraph:
    """``graph(x) -> y`` for a one-input, one-output ONNX model, on ``device``."""

    def __init__(self, path: str | Path, device: str) -> None:
        import onnx
        import torch
        from onnx import numpy_helper

        self._torch = torch
        self.device = torch.device(device)
        model = onnx.load(str(path))
        graph = model.graph
        missing = sorted({n.op_type for n in graph.node if n.op_type not in _OPS})
        if missing:
            raise ConfigError(
                f"separator model {path}: operators {', '.join(missing)} cannot run in "
                "torch here; use separator.mdx_runtime = \"onnxruntime\"")
        self._consts: dict[str, Any] = {
            t.name: self._tensor(numpy_helper.to_array(t)) for t in graph.initializer}
        inputs = [i.name for i in graph.input if i.name not in self._consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ConfigError(f"separator model {path}: needs one input and one output")
        self.input, self.output = inputs[0], graph.output[0].name
        self._nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n, self))
                       for n in graph.node]

    def _tensor(self, a: np.ndarray) -> Any:
        """Floats on the device, integers on the host (see the module's note)."""
        t = self._torch.from_numpy(np.array(a))
        return t.to(self.device) if t.is_floating_point() else t

    def __call__(self, x: Any) -> Any:
        env: dict[str, Any] = dict(self._consts)
        env[self.input] = x
        for op, ins, outs, attrs in self._nodes:
            args = [env[i] if i else None for i in ins]
            got = _OPS[op](*args, **attrs)
            for name, value in zip(outs, got if isinstance(got, tuple) else (got,),
                                   strict=False):
                if name:
                    env[name] = value
        return env[self.output]


def _attrs(node: Any, graph: TorchGraph) -> dict[str, Any]:
    from onnx import helper, numpy_helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if a.type == a.TENSOR:
            value = graph._tensor(numpy_helper.to_array(value))
        elif isinstance(value, bytes):
            value = value.decode()
        out[a.name] = value
    if node.op_type == "Constant":
        return {"value": _constant(out, graph)}
    if node.op_type == "ConstantOfShape":  # the fill value is made where it belongs
        value = out.get("value")
        fill = np.zeros(1, np.float32) if value is None else np.asarray(value.cpu())
        return {"fill": fill.reshape(-1)[:1],
                "device": graph.device if fill.dtype.kind == "f" else None}
    return out


def _constant(attrs: dict[str, Any], graph: TorchGraph) -> Any:
    if "value" in attrs:
        return attrs["value"]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return graph._tensor(np.asarray(attrs[key], dtype))
    raise ConfigError(f"ONNX Constant with attributes {sorted(attrs)} is not supported")


# ------------------------------------------------------------------ operators
def _t() -> Any:
    import torch

    return torch


def _F() -> Any:
    import torch.nn.functional as F

    return F


def _ints(t: Any) -> list[int]:
    """A host integer tensor (shape, axes) as a list; never a device read."""
    return [int(v) for v in (t.reshape(-1).tolist() if hasattr(t, "tolist") else t)]


def _pads(pads: Sequence[int], rank: int) -> tuple[list[int], list[int] | None]:
    """ONNX pads [b1..bn, e1..en] -> symmetric padding, or a F.pad list when uneven."""
    begin, end = list(pads[:rank]), list(pads[rank:])
    if begin == end:
        return begin, None
    flat: list[int] = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        flat += [b, e]
    return [0] * rank, flat


def _conv(x: Any, w: Any, b: Any = None, *, group: int = 1, pads: Sequence[int] = (),
          strides: Sequence[int] = (), dilations: Sequence[int] = (),
          auto_pad: str = "NOTSET", kernel_shape: Sequence[int] = ()) -> Any:
    rank = w.dim() - 2
    if auto_pad not in ("NOTSET", "VALID"):
        raise ConfigError(f"ONNX Conv auto_pad={auto_pad} is not supported")
    pad, uneven = _pads(list(pads) or [0] * 2 * rank, rank)
    if uneven:
        x = _F().pad(x, uneven)
    fn = (_F().conv1d, _F().conv2d, _F().conv3d)[rank - 1]
    return fn(x, w, b, list(strides) or 1, pad, list(dilations) or 1, group)


def _conv_transpose(x: Any, w: Any, b: Any = None, *, group: int = 1,
                    pads: Sequence[int] = (), strides: Sequence[int] = (),
                    dilations: Sequence[int] = (), output_padding: Sequence[int] = (),
                    auto_pad: str = "NOTSET", kernel_shape: Sequence[int] = (),
                    output_shape: Sequence[int] = ()) -> Any:
    rank = w.dim() - 2
    if auto_pad not in ("NOTSET", "VALID") or output_shape:
        raise ConfigError("ONNX ConvTranspose with auto_pad or output_shape is not supported")
    pad, uneven = _pads(list(pads) or [0] * 2 * rank, rank)
    if uneven:
        raise ConfigError("ONNX ConvTranspose with uneven pads is not supported")
    fn = (_F().conv_transpose1d, _F().conv_transpose2d, _F().conv_transpose3d)[rank - 1]
    return fn(x, w, b, list(strides) or 1, pad, list(output_padding) or 0, group,
              list(dilations) or 1)


def _batch_norm(x: Any, scale: Any, bias: Any, mean: Any, var: Any, *,
                epsilon: float = 1e-5, momentum: float = 0.9,
                training_mode: int = 0) -> Any:
    return _F().batch_norm(x, mean, var, scale, bias, False, 0.0, epsilon)


def _instance_norm(x: Any, scale: Any, bias: Any, *, epsilon: float = 1e-5) -> Any:
    return _F().instance_norm(x, weight=scale, bias=bias, eps=epsilon)


def _layer_norm(x: Any, scale: Any, bias: Any = None, *, axis: int = -1,
                epsilon: float = 1e-5, stash_type: int = 1) -> Any:
    axis = axis % x.dim()
    return _F().layer_norm(x, x.shape[axis:], scale, bias, epsilon)


def _gelu(x: Any, *, approximate: str = "none") -> Any:
    return _F().gelu(x, approximate=approximate)


def _gemm(a: Any, b: Any, c: Any = None, *, alpha: float = 1.0, beta: float = 1.0,
          **trans: int) -> Any:  # transA, transB: ONNX's attribute names
    a = a.t() if trans.get("transA") else a
    b = b.t() if trans.get("transB") else b
    y = alpha * (a @ b)
    return y + beta * c if c is not None else y


def _reshape(x: Any, shape: Any, *, allowzero: int = 0) -> Any:
    dims = _ints(shape)
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _axes(axes_in: Any, attr: Sequence[int] | None) -> list[int] | None:
    if axes_in is not None:
        return _ints(axes_in)
    return list(attr) if attr is not None else None


def _unsqueeze(x: Any, axes_in: Any = None, *, axes: Sequence[int] | None = None) -> Any:
    dims = _axes(axes_in, axes) or []
    rank = x.dim() + len(dims)
    for d in sorted(a % rank for a in dims):
        x = x.unsqueeze(d)
    return x


def _squeeze(x: Any, axes_in: Any = None, *, axes: Sequence[int] | None = None) -> Any:
    dims = _axes(axes_in, axes)
    if dims is None:
        return x.squeeze()
    for d in sorted((a % x.dim() for a in dims), reverse=True):
        x = x.squeeze(d)
    return x


def _slice(x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    s, e = _ints(starts), _ints(ends)
    ax = _ints(axes) if axes is not None else list(range(len(s)))
    st = _ints(steps) if steps is not None else [1] * len(s)
    for axis, start, end, step in zip(ax, s, e, st, strict=True):
        a = axis % x.dim()
        size = x.shape[a]
        lo, hi = (start + size if start < 0 else start), (end + size if end < 0 else end)
        if step > 0:
            lo, hi = max(0, min(size, lo)), max(0, min(size, hi))
        else:  # ONNX clamps a backward slice to [0, size-1] and [-1, size-1]
            lo, hi = max(0, min(size - 1, lo)), max(-1, min(size - 1, hi))
        index = [slice(None)] * x.dim()
        if step > 0:
            index[a] = slice(lo, hi, step)
        else:  # backwards = forwards over the flipped axis (no index tensor to copy in)
            x = x.flip(a)
            index[a] = slice(size - 1 - lo, size - 1 - hi, -step)
        x = x[tuple(index)]
    return x


def _split(x: Any, split: Any = None, *, axis: int = 0, num_outputs: int = 0,
           **old: Any) -> tuple[Any, ...]:
    sizes = _ints(split) if split is not None else old.get("split")
    if sizes:
        return tuple(_t().split(x, list(sizes), dim=axis))
    return tuple(_t().chunk(x, num_outputs, dim=axis))


def _gather(x: Any, idx: Any, *, axis: int = 0) -> Any:
    axis %= x.dim()
    idx = idx.to(x.device)  # host indices into a device tensor: rare in separators
    idx = idx.where(idx >= 0, idx + x.shape[axis])
    return x.index_select(axis, idx.reshape(-1)).reshape(
        x.shape[:axis] + idx.shape + x.shape[axis + 1:])


def _shape(x: Any, *, start: int = 0, end: int | None = None) -> Any:
    return _t().tensor(list(x.shape)[start:end], dtype=_t().int64)


def _cast(x: Any, *, to: int, saturate: int = 1) -> Any:
    from onnx import helper

    dtype = _t().from_numpy(np.zeros(0, helper.tensor_dtype_to_np_dtype(to))).dtype
    return x.to(dtype)


def _pad(x: Any, pads: Any = None, value: Any = None, axes: Any = None, *,
         mode: str = "constant", **old: Any) -> Any:
    p = _ints(pads) if pads is not None else list(old["pads"])
    rank = x.dim()
    ax = _ints(axes) if axes is not None else list(range(rank))
    flat = [0] * 2 * rank
    for k, axis in enumerate(ax):
        a = axis % rank
        flat[2 * (rank - 1 - a)], flat[2 * (rank - 1 - a) + 1] = p[k], p[k + len(ax)]
    while len(flat) > 2 and flat[-2:] == [0, 0]:
        flat = flat[:-2]  # torch pads non-constant modes only on the last dims
    if mode == "constant":
        fill = float(value.reshape(-1)[0]) if value is not None and value.numel() else 0.0
        return _F().pad(x, flat, mode="constant", value=fill)
    return _F().pad(x, flat, mode={"reflect": "reflect", "edge": "replicate"}[mode])


def _reduce(fn: str) -> Op:
    def op(x: Any, axes_in: Any = None, *, axes: Sequence[int] | None = None,
           keepdims: int = 1, noop_with_empty_axes: int = 0) -> Any:
        dims = _axes(axes_in, axes)
        if not dims:
            dims = list(range(x.dim()))
        return getattr(x, fn)(dim=dims, keepdim=bool(keepdims))
    return op


def _clip(x: Any, lo: Any = None, hi: Any = None, **old: Any) -> Any:
    lo = lo if lo is not None else old.get("min")
    hi = hi if hi is not None else old.get("max")
    return x.clamp(min=lo, max=hi)


def _expand(x: Any, shape: Any) -> Any:
    dims = _ints(shape)
    out = list(np.broadcast_shapes(tuple(x.shape), tuple(dims)))
    return x.expand(out)


def _constant_of_shape(shape: Any, *, fill: np.ndarray, device: Any) -> Any:
    value = _t().from_numpy(fill)
    return _t().full(_ints(shape), value.item(), dtype=value.dtype, device=device)


def _pool(kind: str) -> Op:
    def op(x: Any, *, kernel_shape: Sequence[int], strides: Sequence[int] = (),
           pads: Sequence[int] = (), ceil_mode: int = 0, count_include_pad: int = 0,
           auto_pad: str = "NOTSET", dilations: Sequence[int] = (),
           storage_order: int = 0) -> Any:
        rank = len(kernel_shape)
        pad, uneven = _pads(list(pads) or [0] * 2 * rank, rank)
        if uneven or auto_pad not in ("NOTSET", "VALID"):
            raise ConfigError(f"ONNX {kind} with uneven or automatic pads is not supported")
        if kind == "MaxPool":
            fn = (_F().max_pool1d, _F().max_pool2d, _F().max_pool3d)[rank - 1]
            return fn(x, list(kernel_shape), list(strides) or None, pad,
                      list(dilations) or 1, bool(ceil_mode))
        fn = (_F().avg_pool1d, _F().avg_pool2d, _F().avg_pool3d)[rank - 1]
        return fn(x, list(kernel_shape), list(strides) or None, pad, bool(ceil_mode),
                  bool(count_include_pad))
    return op


def _variadic(fn: str) -> Op:
    def op(*xs: Any) -> Any:
        out = xs[0]
        for x in xs[1:]:
            out = getattr(_t(), fn)(out, x)
        return out
    return op


def _softmax(x: Any, *, axis: int = -1) -> Any:
    return _t().softmax(x, dim=axis)


_OPS: dict[str, Op] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose,
    "BatchNormalization": _batch_norm, "InstanceNormalization": _instance_norm,
    "LayerNormalization": _layer_norm,
    "Relu": lambda x: _t().relu(x), "Sigmoid": lambda x: _t().sigmoid(x),
    "Tanh": lambda x: _t().tanh(x), "Gelu": _gelu, "Erf": lambda x: _t().erf(x),
    "LeakyRelu": lambda x, alpha=0.01: _F().leaky_relu(x, alpha),
    "Elu": lambda x, alpha=1.0: _F().elu(x, alpha),
    "Softplus": lambda x: _F().softplus(x), "Softmax": _softmax,
    "Exp": lambda x: _t().exp(x), "Log": lambda x: _t().log(x),
    "Sqrt": lambda x: _t().sqrt(x), "Abs": lambda x: _t().abs(x),
    "Neg": lambda x: -x, "Reciprocal": lambda x: 1.0 / x,
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b,
    "Div": lambda a, b: a / b if a.is_floating_point() else _t().div(a, b,
                                                                      rounding_mode="trunc"),
    "Pow": lambda a, b: _t().pow(a, b), "Max": _variadic("maximum"),
    "Min": _variadic("minimum"), "Sum": _variadic("add"),
    "MatMul": lambda a, b: _t().matmul(a, b), "Gemm": _gemm,
    "Transpose": lambda x, perm=None: x.permute(
        list(perm) if perm is not None else list(reversed(range(x.dim())))),
    "Reshape": _reshape,
    "Flatten": lambda x, axis=1: x.reshape(int(np.prod(x.shape[:axis])), -1),
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Concat": lambda *xs, axis: _t().cat(list(xs), dim=axis),
    "Split": _split, "Slice": _slice, "Gather": _gather, "Shape": _shape, "Cast": _cast,
    "Constant": lambda value: value, "Identity": lambda x: x,
    "Dropout": lambda x, *rest, seed=0, ratio=0.5: x,
    "Pad": _pad, "Clip": _clip, "Expand": _expand, "ConstantOfShape": _constant_of_shape,
    "ReduceMean": _reduce("mean"), "ReduceSum": _reduce("sum"),
    "MaxPool": _pool("MaxPool"), "AveragePool": _pool("AveragePool"),
    "GlobalAveragePool": lambda x: x.mean(dim=list(range(2, x.dim())), keepdim=True),
}
