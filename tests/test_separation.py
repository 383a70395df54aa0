"""SONG-mode separation: windows, overlap-add, MDX loader, batching, chunking invariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seamcut.bench.mdx_model import build_mdx_onnx
from seamcut.server.dsp.overlap_add import OverlapAdd
from seamcut.server.dsp.windows import WindowFeeder
from seamcut.server.errors import ConfigError
from seamcut.server.models.builtin import BuiltinSeparator
from seamcut.server.models.mdx import MdxOnnxSeparator

RNG = np.random.default_rng(3)
MIX = (RNG.standard_normal((30_000, 2)) * 0.2).astype(np.float32)
CPU = ["CPUExecutionProvider"]
SMALL = {"n_fft": 512, "hop": 128, "dim_f": 128, "dim_t": 32}  # window 3968 samples


def run_chain(sep_fn, size: int, hop: int, parts: list[np.ndarray], rate: int = 44_100):  # type: ignore[no-untyped-def]
    """WindowFeeder -> separator -> OverlapAdd over the given message slicing."""
    feeder = WindowFeeder(rate, 44_100, size, hop)
    ola = OverlapAdd(2, size, hop)
    out = []
    for p in parts:
        for w in feeder.push(p):
            out.append(ola.add(sep_fn(w[None])[0]))
    windows, total = feeder.finish()
    ola.set_total(total)
    for w in windows:
        out.append(ola.add(sep_fn(w[None])[0]))
    out.append(ola.finish(total))
    return np.concatenate(out, axis=1), total


@pytest.mark.unit
@settings(max_examples=30, deadline=None)
@given(size=st.integers(64, 4096), frac=st.floats(0.25, 1.0),
       cuts=st.lists(st.integers(0, 30_000), max_size=12))
def test_identity_model_reconstructs_input_exactly(size: int, frac: float,
                                                   cuts: list[int]) -> None:
    hop = max(1, int(size * frac))
    parts = np.split(MIX, sorted(set(cuts)))
    y, total = run_chain(lambda w: w, size, hop, parts)
    assert total == MIX.shape[0] and y.shape == (2, total)
    np.testing.assert_allclose(y.T, MIX, atol=1e-6)


@pytest.mark.unit
@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(0, 30_000), max_size=20), rate=st.sampled_from([44_100, 48_000]))
def test_chunked_separation_equals_whole(cuts: list[int], rate: int) -> None:
    sep = BuiltinSeparator()
    size, hop = 8192, 6144
    whole, _ = run_chain(sep.separate, size, hop, [MIX], rate)
    parts, _ = run_chain(sep.separate, size, hop, np.split(MIX, sorted(set(cuts))), rate)
    assert np.abs(whole - parts).max() <= 1e-5


@pytest.fixture(scope="module")
def mdx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mdx") / "small.onnx"
    build_mdx_onnx(path, **SMALL)
    return path


@pytest.mark.integration
def test_mdx_metadata_and_batch_invariance(mdx_path: Path) -> None:
    sep = MdxOnnxSeparator(mdx_path, providers=CPU)
    assert (sep.params.n_fft, sep.params.hop, sep.params.dim_f, sep.params.dim_t) == (
        512, 128, 128, 32)
    assert sep.window_samples == 128 * 31 and sep.rate_hz == 44_100
    x = (RNG.standard_normal((3, 2, sep.window_samples)) * 0.1).astype(np.float32)
    batch = sep.separate(x)
    assert batch.shape == x.shape and np.isfinite(batch).all()
    alone = sep.separate(x[1:2])
    np.testing.assert_array_equal(alone[0], batch[1])


@pytest.mark.integration
def test_mdx_instrumental_stem_is_subtracted(tmp_path: Path) -> None:
    voc, inst = tmp_path / "v.onnx", tmp_path / "i.onnx"
    build_mdx_onnx(voc, **SMALL, seed=1)
    build_mdx_onnx(inst, **SMALL, seed=1, stem="instrumental")
    x = (RNG.standard_normal((1, 2, 3968)) * 0.1).astype(np.float32)
    v = MdxOnnxSeparator(voc, providers=CPU).separate(x)
    i = MdxOnnxSeparator(inst, providers=CPU).separate(x)
    np.testing.assert_allclose(i, x - v, atol=1e-6)


@pytest.mark.integration
def test_mdx_config_overrides_and_refusals(tmp_path: Path) -> None:
    bare = tmp_path / "bare.onnx"
    build_mdx_onnx(bare, **SMALL, metadata=False, fixed_batch=True)
    with pytest.raises(ConfigError, match="lacks n_fft, hop, dim_f, dim_t, rate_hz"):
        MdxOnnxSeparator(bare, providers=CPU)
    sep = MdxOnnxSeparator(bare, providers=CPU, overrides={**SMALL, "rate_hz": 44_100})
    assert sep.max_batch == 1  # exported with a fixed batch of one: items run one by one
    x = (RNG.standard_normal((2, 2, 3968)) * 0.1).astype(np.float32)
    assert sep.separate(x).shape == x.shape
    with pytest.raises(ConfigError, match=r"contradicts the configured \[B, 4, dim_f=256"):
        MdxOnnxSeparator(bare, providers=CPU, overrides={**SMALL, "dim_f": 256,
                                                         "rate_hz": 44_100})
    with pytest.raises(ConfigError, match="cannot load"):
        MdxOnnxSeparator(tmp_path / "missing.onnx", providers=CPU)


@pytest.mark.integration
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 30_000), max_size=10))
def test_mdx_chunked_equals_whole(cuts: list[int], mdx_path: Path) -> None:
    sep = MdxOnnxSeparator(mdx_path, providers=CPU)
    size, hop = sep.window_samples, sep.window_samples * 3 // 4
    whole, _ = run_chain(sep.separate, size, hop, [MIX])
    parts, _ = run_chain(sep.separate, size, hop, np.split(MIX, sorted(set(cuts))))
    assert np.abs(whole - parts).max() <= 1e-5
