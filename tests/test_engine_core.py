"""The engine step is a pure function of its requests: however a stream's blocks are
grouped into requests, and whether a request carries its state or names the request
it continues from, the probabilities and states are the same, bit for bit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soxr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seamcut.server.config import HOP_SAMPLES, AppConfig
from seamcut.server.engine.core import EngineCore, StateMissing
from seamcut.server.engine.protocol import ErrorCode, Kind, Request, Result, initial_vad_state

from tests.corpus import default_corpus

pytestmark = pytest.mark.integration
BLOCK = 5120  # 320 ms at 16 kHz


@pytest.fixture(scope="module")
def core(app_cfg: AppConfig) -> EngineCore:
    return EngineCore(app_cfg, separators=False)


def analysis_audio(i: int) -> np.ndarray:
    clip = default_corpus()[i]
    x = soxr.resample(clip.audio.mean(axis=1), clip.sample_rate_hz, 16000)
    return np.concatenate([np.zeros(HOP_SAMPLES), x]).astype(np.float32)


def request(stream: str, rid: int, x: np.ndarray, first: int, n: int, *,
            prev: int = 0, state: np.ndarray | None = None) -> Request:
    total = (x.shape[0] - HOP_SAMPLES)
    lengths = tuple(min(BLOCK, total - b * BLOCK) for b in range(first, first + n))
    lo = first * BLOCK
    return Request(kind=Kind.ANALYSE, stream=stream, id=rid, index=first,
                   audio=x[lo : lo + HOP_SAMPLES + sum(lengths)], lengths=lengths,
                   vad_state=initial_vad_state() if state is None else state,
                   state_from=prev)


def whole(core: EngineCore, stream: str, x: np.ndarray) -> Result:
    n = -(-(x.shape[0] - HOP_SAMPLES) // BLOCK)
    r = request(stream, 1, x, 0, n)
    vad = core.vad_batch([r])[0]
    core.forget(stream)
    return core.features(r, vad)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(groups=st.lists(st.integers(1, 7), min_size=1, max_size=8),
       per_batch=st.integers(1, 3), explicit_every=st.integers(0, 3),
       seed=st.integers(0, 1000))
def test_any_grouping_and_state_by_reference_give_identical_results(
    core: EngineCore, groups: list[int], per_batch: int, explicit_every: int, seed: int
) -> None:
    streams = {f"s{i}": analysis_audio(i) for i in range(4)}  # > 2 streams: batched path
    refs = {s: whole(core, s, x) for s, x in streams.items()}
    plans: dict[str, list[Request]] = {}
    rid = 100
    for s, x in streams.items():
        n_blocks = -(-(x.shape[0] - HOP_SAMPLES) // BLOCK)
        reqs, b, k = [], 0, 0
        while b < n_blocks:
            n = min(groups[k % len(groups)], n_blocks - b)
            rid += 1
            reqs.append(request(s, rid, x, b, n, prev=reqs[-1].id if reqs else 0))
            b, k = b + n, k + 1
        plans[s] = reqs
    results: dict[str, list[Result]] = {s: [] for s in streams}
    step = 0
    while any(plans.values()):
        batch = []
        for s, reqs in plans.items():  # up to per_batch requests of each stream
            take, plans[s] = reqs[:per_batch], reqs[per_batch:]
            for r in take:
                if explicit_every and step % explicit_every == 0 and results[s] and \
                        r.state_from == results[s][-1].id:  # the caller resolved it
                    batch.append(dataclasses.replace(r, state_from=0,
                                                     vad_state=results[s][-1].vad_state))
                else:
                    batch.append(r)
                step += 1
        # Interleave the streams at random, each stream's requests still in order.
        rng = np.random.default_rng(seed + step)
        keys = [r.stream for r in batch]
        rng.shuffle(keys)
        queues = {s: [r for r in batch if r.stream == s] for s in streams}
        batch = [queues[k].pop(0) for k in keys]
        for r, res in zip(batch, core.vad_batch(batch), strict=True):
            assert (res.stream, res.id) == (r.stream, r.id)
            results[r.stream].append(core.features(r, res))
    for s in streams:
        got = results[s]
        np.testing.assert_array_equal(np.concatenate([r.probs for r in got]), refs[s].probs)
        np.testing.assert_array_equal(np.concatenate([r.energy_db for r in got]),
                                      refs[s].energy_db)
        np.testing.assert_array_equal(got[-1].vad_state, refs[s].vad_state)
        core.forget(s)


def test_a_reference_the_engine_does_not_hold_is_refused(core: EngineCore) -> None:
    x = analysis_audio(0)
    with pytest.raises(StateMissing, match="continues from request 41"):
        core.vad_batch([request("lost", 42, x, 3, 2, prev=41)])
    first = request("kept", 1, x, 0, 2)
    core.vad_batch([first])
    core.forget("kept")  # a cancelled stream: its state is gone
    with pytest.raises(StateMissing):
        core.vad_batch([request("kept", 2, x, 2, 2, prev=1)])


def test_separation_results_come_in_the_batch_order_across_backends(app_cfg: AppConfig,
                                                                      tmp_path: Path) -> None:
    """Requests for two backends and an unknown one, interleaved: each result answers
    its own request (the pipeline pairs them by position)."""
    from seamcut.bench.mdx_model import build_mdx_onnx

    from tests.test_separation import SMALL

    build_mdx_onnx(tmp_path / "m.onnx", **SMALL)
    cfg = dataclasses.replace(app_cfg, separator=dataclasses.replace(
        app_cfg.separator, mdx_model_path=str(tmp_path / "m.onnx")))
    core = EngineCore(cfg)
    rng = np.random.default_rng(3)
    reqs = []
    for i, backend in enumerate(["mdx", "builtin", "nope", "builtin", "mdx"]):
        size = core.separators[backend].window_samples if backend != "nope" else 16
        windows = (rng.standard_normal((i % 2 + 1, 2, size)) * 0.1).astype(np.float32)
        reqs.append(Request(kind=Kind.SEPARATE, stream=f"s{i}", id=i + 1, index=0,
                            audio=windows, backend=backend))
    out = core.separate_batch(reqs)
    assert [(r.stream, r.id) for r in out] == [(q.stream, q.id) for q in reqs]
    assert out[2].error is ErrorCode.BAD_REQUEST and "nope" in out[2].message
    for q, r in zip(reqs, out, strict=True):
        if q.backend != "nope":
            alone = core.separators[q.backend].separate(q.audio)
            np.testing.assert_array_equal(r.vocal, alone)
