"""SONG mode's voice detector (server/dsp/voice.py): the shipped weights, NumPy inference
equal to the trained PyTorch network, block-by-block equal to one pass, a cap that
lowers Silero's probabilities where it hears no voice and a floor that raises them only
where it is sure of one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seamcut.server.config import HOP_SAMPLES, load_config
from seamcut.server.dsp import voice
from seamcut.server.dsp.detector import BlockInput, DetectorParams, DetectorState, detect_step
from seamcut.server.models import voice_weights
from seamcut.server.session.session import voice_net

pytestmark = pytest.mark.unit


def _stream(hops: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A vocal estimate and a mix (voice-like bursts over a tone), with probabilities."""
    rng = np.random.default_rng(seed)
    n = hops * HOP_SAMPLES
    t = np.arange(n) / 16_000
    bursts = (np.sin(2 * np.pi * 0.7 * t) > 0).astype(np.float32)
    est = (0.3 * bursts * np.sin(2 * np.pi * 220 * t * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)))
           + 0.01 * rng.standard_normal(n)).astype(np.float32)
    mix = (est + 0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    probs = np.clip(bursts[::HOP_SAMPLES] * 0.9 + 0.05 * rng.random(hops), 0, 1)
    probs_mix = np.clip(probs * 0.6 + 0.1 * rng.random(hops), 0, 1)
    return est, mix, probs.astype(np.float32), probs_mix.astype(np.float32)


def _blocks(net: voice.VoiceNet, est: np.ndarray, mix: np.ndarray, probs: np.ndarray,
            probs_mix: np.ndarray, sizes: list[int]) -> np.ndarray:
    """The network run block by block (``sizes`` in hops), as the session runs it."""
    state, out, pos = voice.initial_state(net), [], 0
    halo_est = np.concatenate([np.zeros(HOP_SAMPLES, np.float32), est])
    for size in sizes:
        a, b = pos * HOP_SAMPLES, (pos + size) * HOP_SAMPLES
        q, state = voice.run(net, state, halo_est[a : b + HOP_SAMPLES], mix[a:b],
                             probs[pos : pos + size], probs_mix[pos : pos + size])
        out.append(q)
        pos += size
    return np.concatenate(out)


def test_the_shipped_weights_load_and_are_small() -> None:
    assert voice_weights.PATH.stat().st_size < 5 * 1024 * 1024
    net = voice_net()
    k, h = net.hidden
    assert (k, h) == (3, 48)
    assert net.mu.shape == net.sd.shape == (2 * voice.MELS + 4,)
    assert all(np.isfinite(getattr(net, f.name)).all() for f in dataclasses.fields(net))


def test_numpy_inference_equals_the_torch_network() -> None:
    """The server's NumPy recurrence is the trained torch GRU, model by model."""
    torch = pytest.importorskip("torch")
    net = voice_net()
    est, mix, probs, probs_mix = _stream(300)
    x, _ = voice.features(np.concatenate([np.zeros(HOP_SAMPLES, np.float32), est]),
                          np.concatenate([np.zeros(HOP_SAMPLES, np.float32), mix]),
                          probs, probs_mix, 0.0, False)
    z = torch.from_numpy(((x - net.mu) / net.sd).astype(np.float32))[None]
    outs = []
    for k in range(net.hidden[0]):
        inp = torch.nn.Linear(z.shape[2], net.hidden[1])
        gru = torch.nn.GRU(net.hidden[1], net.hidden[1], batch_first=True)
        with torch.no_grad():
            inp.weight.copy_(torch.from_numpy(net.w_in[k].T.copy()))
            inp.bias.copy_(torch.from_numpy(net.b_in[k]))
            gru.weight_ih_l0.copy_(torch.from_numpy(net.w_ih[k].T.copy()))
            gru.weight_hh_l0.copy_(torch.from_numpy(net.w_hh[k].T.copy()))
            gru.bias_ih_l0.copy_(torch.from_numpy(net.b_ih[k]))
            gru.bias_hh_l0.copy_(torch.from_numpy(net.b_hh[k]))
            h, _ = gru(torch.relu(inp(z.float())))
            logit = h[0].double().numpy() @ net.w_out[k] + net.b_out[k]
        outs.append(1 / (1 + np.exp(-logit)))
    expected = np.mean(outs, axis=0)
    got = _blocks(net, est, mix, probs, probs_mix, [300])
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert got.min() < 0.3 and got.max() > 0.7  # it does tell the bursts apart


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=12))
def test_block_by_block_equals_one_pass(sizes: list[int]) -> None:
    """Whatever the block lengths, the carried state makes the same outputs."""
    net = voice_net()
    hops = sum(sizes)
    est, mix, probs, probs_mix = _stream(hops, seed=len(sizes))
    whole = _blocks(net, est, mix, probs, probs_mix, [hops])
    np.testing.assert_allclose(_blocks(net, est, mix, probs, probs_mix, sizes), whole,
                               atol=1e-6)


def test_the_cap_lowers_the_floor_raises_and_only_on_songs() -> None:
    cfg = load_config(env={})
    song = DetectorParams.build(cfg.policy, cfg.detector, 44_100, separated=True, song=True)
    stem = DetectorParams.build(cfg.policy, cfg.detector, 44_100, separated=False, song=True)
    speech = DetectorParams.build(cfg.policy, cfg.detector, 16_000)
    assert song.voice_cap and not stem.voice_cap and not speech.voice_cap
    assert song.voice_floor and stem.voice_floor and not speech.voice_floor
    assert song.mix_votes and not stem.mix_votes and not speech.mix_votes
    rng = np.random.default_rng(1)
    hops = 32
    block = BlockInput(start_hop=0, probs=rng.random(hops).astype(np.float32),
                       probs_mix=rng.random(hops).astype(np.float32),
                       energy_db=np.full(hops, -20.0, np.float32), client_start=0,
                       client=np.zeros(0, np.float32), voice=rng.random(hops).astype(np.float32))
    assert block.voice is not None
    capped, _ = detect_step(DetectorState(), song, block)
    plain, _ = detect_step(DetectorState(), song, dataclasses.replace(block, voice=None))
    unsure, sure = block.voice < song.voice_high, block.voice > song.voice_floor_low
    assert np.all(capped.hist_p[~sure] <= plain.hist_p[~sure] + 1e-7)
    assert np.any(capped.hist_p[unsure] < plain.hist_p[unsure] - 0.1)
    assert np.all(capped.hist_p[sure] >= plain.hist_p[sure] - 1e-7)
    assert np.any(capped.hist_p[sure] > plain.hist_p[sure] + 0.1)

    def at(q: float, params: DetectorParams = song) -> np.ndarray:
        one = dataclasses.replace(block, voice=np.full(hops, q, np.float32))
        return detect_step(DetectorState(), params, one)[0].hist_p

    # Between the cap's top and the floor's foot nothing changes; above the floor's top
    # every hop is voice; with the floor off, a sure verdict changes nothing.
    middle = (song.voice_high + song.voice_floor_low) / 2
    np.testing.assert_array_equal(at(middle), plain.hist_p)
    np.testing.assert_array_equal(at(1.0), np.ones(hops, np.float32))
    np.testing.assert_array_equal(
        at(1.0, dataclasses.replace(song, voice_floor=False)), plain.hist_p)
