"""SONG mode's learned voice detector: is a dry voice sounding, per 10 ms hop?

The built-in separator leaks accompaniment into its vocal estimate, and under loud
music Silero on both the estimate and the mix says "voice" through pauses where no one
sings (docs/QUALITY.md, "Hard conditions"). This small recurrent network looks at what
Silero's two probabilities cannot: the log-mel spectra of the 16 kHz mix and of the
vocal estimate, their level against the mix's running level, and both probabilities.
Its output caps both probabilities before the detector uses them where it hears no
voice, and sets a floor under them where it is sure of one (``detect_step``,
``DetectorParams.voice_*``); it is trained to say "voice" wherever the dry voice
sounds, sung vowels that Silero scores as no speech included.

Causal and exact under any slicing: each hop reads the 20 ms ending at its end (the
framing of :func:`~seamcut.server.dsp.features.band_energy_db`) and the GRU's state,
which :class:`VoiceState` carries from block to block (and the resume token between
replicas). Weights: ``server/models/voice_gru.npz``, an ensemble of three GRUs trained
by ``scripts/voice_gru.py`` on songs the project generates; NumPy inference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from seamcut.server.dsp.features import HOP, WIN

MELS = 24
N_FFT = 512
_RATE = 16_000
LEVEL_ATTACK, LEVEL_RELEASE = 0.2, 0.01  # the mix's running level (log10 power units)
_HANN = np.hanning(WIN)


def mel_bank(mels: int = MELS, n_fft: int = N_FFT, rate: int = _RATE, lo: float = 100.0,
             hi: float = 7_600.0) -> np.ndarray:
    """Triangular mel filters [mels, n_fft // 2 + 1] from ``lo`` to ``hi`` Hz."""
    def mel(f: float) -> float:
        return float(2595 * np.log10(1 + f / 700))

    edges = 700 * (10 ** (np.linspace(mel(lo), mel(hi), mels + 2) / 2595) - 1)
    f = np.fft.rfftfreq(n_fft, 1 / rate)
    return np.stack([np.clip(np.minimum((f - a) / (b - a), (c - f) / (c - b)), 0, None)
                     for a, b, c in zip(edges, edges[1:], edges[2:], strict=False)])


_BANK = mel_bank()


def log_mel(x: np.ndarray, n_hops: int) -> np.ndarray:
    """[n_hops, MELS] log10 mel power; ``x`` is [HOP + HOP * n_hops] samples, hop ``i``'s
    window ``x[HOP * i : HOP * i + WIN]`` (the 20 ms that end at the hop's end).
    Shorter input reads zeros."""
    need = HOP * n_hops + HOP
    if x.shape[0] < need:
        x = np.concatenate([x, np.zeros(need - x.shape[0], x.dtype)])
    idx = np.arange(n_hops)[:, None] * HOP + np.arange(WIN)[None, :]
    power = np.abs(np.fft.rfft(x[idx].astype(np.float64) * _HANN, N_FFT, axis=1)) ** 2
    return np.asarray(np.log10(power @ _BANK.T + 1e-10))


@dataclass(frozen=True, slots=True)
class VoiceNet:
    """K GRUs of hidden size H over F inputs, averaged (arrays from voice_gru.npz)."""

    mu: np.ndarray  # [F] input standardisation
    sd: np.ndarray
    w_in: np.ndarray  # [K, F, H] input projection (ReLU)
    b_in: np.ndarray  # [K, H]
    w_ih: np.ndarray  # [K, H, 3H] GRU gates r, z, n (torch's order)
    b_ih: np.ndarray  # [K, 3H]
    w_hh: np.ndarray  # [K, H, 3H]
    b_hh: np.ndarray  # [K, 3H]
    w_out: np.ndarray  # [K, H]
    b_out: np.ndarray  # [K]

    @property
    def hidden(self) -> tuple[int, int]:
        return int(self.w_in.shape[0]), int(self.w_in.shape[2])


@dataclass(frozen=True, kw_only=True, slots=True)
class VoiceState:
    """What a stream's voice detector carries between blocks."""

    hidden: np.ndarray  # [K, H] float32
    level: float = 0.0  # the mix's running level (log10 power)
    started: bool = False  # ``level`` holds a value
    mix_tail: np.ndarray = dataclasses.field(  # the last HOP mix samples (the next halo)
        default_factory=lambda: np.zeros(HOP, np.float32))


def initial_state(net: VoiceNet) -> VoiceState:
    return VoiceState(hidden=np.zeros(net.hidden, np.float32))


def features(est: np.ndarray, mix: np.ndarray, probs: np.ndarray, probs_mix: np.ndarray,
             level: float, started: bool) -> tuple[np.ndarray, float]:
    """Network inputs [hops, 2 * MELS + 4] and the running level after them. ``est`` and
    ``mix`` are [HOP + HOP * hops] (a halo of HOP first), the probabilities per hop."""
    hops = probs.shape[0]
    m_mix, m_est = log_mel(mix, hops), log_mel(est, hops)
    m = m_mix.mean(axis=1)
    rel = np.empty(hops)
    for i, x in enumerate(m.tolist()):  # rises fast, falls slowly, per hop
        if not started:
            level, started = x, True
        level += (LEVEL_ATTACK if x > level else LEVEL_RELEASE) * (x - level)
        rel[i] = x - level
    x = np.concatenate([m_mix - m[:, None], m_est - m[:, None], rel[:, None],
                        (m_est.mean(axis=1) - m)[:, None], probs[:, None],
                        probs_mix[:, None]], axis=1)
    return x, level


def run(net: VoiceNet, state: VoiceState, est: np.ndarray, mix_block: np.ndarray,
        probs: np.ndarray, probs_mix: np.ndarray) -> tuple[np.ndarray, VoiceState]:
    """Voice probability per hop of one block, and the state after it. ``est`` is the
    vocal estimate with its halo ([HOP + HOP * hops]); ``mix_block`` the mix over the
    block alone (its halo is the state's tail)."""
    hops = probs.shape[0]
    mix = np.concatenate([state.mix_tail, mix_block.astype(np.float32)])
    x, level = features(est, mix, probs, probs_mix, state.level, state.started)
    x = (x - net.mu) / net.sd
    # The input side of every hop at once; only the recurrence runs hop by hop.
    u = np.maximum(np.einsum("tf,kfh->kth", x, net.w_in) + net.b_in[:, None, :], 0)
    gi = np.einsum("kth,khg->ktg", u, net.w_ih) + net.b_ih[:, None, :]
    h = state.hidden.astype(np.float64)[:, None, :]  # [K, 1, H]
    n_h = h.shape[2]
    gi_rz, gi_n = gi[:, :, : 2 * n_h], gi[:, :, 2 * n_h :]
    b_hh = net.b_hh[:, None, :]
    hs = np.empty((h.shape[0], hops, n_h))
    for t in range(hops):
        gh = h @ net.w_hh + b_hh  # [K, 1, 3H]
        rz = _sigmoid(gi_rz[:, t : t + 1] + gh[:, :, : 2 * n_h])
        n = np.tanh(gi_n[:, t : t + 1] + rz[:, :, :n_h] * gh[:, :, 2 * n_h :])
        z = rz[:, :, n_h:]
        h = (1 - z) * n + z * h
        hs[:, t] = h[:, 0]
    out = np.einsum("kth,kh->kt", hs, net.w_out) + net.b_out[:, None]
    q = _sigmoid(out).mean(axis=0)
    h = h[:, 0]
    tail = mix[-HOP:] if mix.shape[0] >= HOP else np.concatenate(
        [np.zeros(HOP - mix.shape[0], np.float32), mix])
    return q.astype(np.float32), VoiceState(hidden=h.astype(np.float32), level=level,
                                            started=state.started or hops > 0,
                                            mix_tail=tail.astype(np.float32))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-x)))


def load(path: str) -> VoiceNet:
    with np.load(path) as z:
        return VoiceNet(**{f.name: np.asarray(z[f.name], np.float64)
                           for f in dataclasses.fields(VoiceNet)})
