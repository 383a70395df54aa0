"""Does a SONG stream restarted at W converge to the uninterrupted run? By re-analysis
(``start_sample = W``, the audio from W), and with a resume token. docs/DESIGN.md,
"Replicas and resume".

Five 44.1 kHz songs of the quality corpora back to back (67 s) go through the
in-process engine once from the start and once from W on the block grid; the
detector's per-hop inputs of the restarted run are compared with the full run's over
the same hops, and so is the mono mix at 16 kHz that Silero hears. Then the same
program with a checkpoint every second of audio, resumed from each checkpoint with its
token: how many continuations make exactly the uninterrupted run's cuts.

Usage (from the repo root; ~1 min):
    .venv/bin/python scripts/resume_convergence.py [W_BLOCKS]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seamcut.server.config import (
    ANALYSIS_RATE_HZ,
    HOP_SAMPLES,
    AppConfig,
    AudioFormat,
    Encoding,
    Mode,
    StreamSpec,
    load_config,
    stream_spec,
)
from seamcut.server.engine.client import InprocEngine
from seamcut.server.events import Checkpoint, Cut, Event
from seamcut.server.offline import analyze

from scripts.fusion_study import Spy, spying
from tests.hard_corpus import hard_songs
from tests.helpers import encode, slice_bytes
from tests.song_corpus import default_song_corpus

RATE = 44_100


def main() -> None:
    blocks = int(sys.argv[1]) if len(sys.argv) > 1 else 70
    cfg = load_config(env={})
    engine = InprocEngine(cfg)
    songs = [c for c in (*default_song_corpus(), *hard_songs()) if c.sample_rate_hz == RATE]
    mix = np.concatenate([c.mix for c in songs[:5]])

    def run(spy: Spy, start: int) -> tuple[list[int], dict[str, np.ndarray], np.ndarray]:
        spy.clear()
        spec = stream_spec(cfg, format=AudioFormat(encoding=Encoding.F32LE, sample_rate_hz=RATE,
                                                   channels=2),
                           mode=Mode.SONG, policy_overrides={}, event_overrides={},
                           start_sample=start)
        data = encode(mix[start:], Encoding.F32LE)
        cuts = [e.sample for e in analyze(cfg, spec, slice_bytes(data, 8, [RATE // 5]), engine)
                if isinstance(e, Cut)]
        per_hop = {name: np.concatenate([getattr(b, name) for _, b in spy.inputs])
                   for name in ("probs", "probs_mix", "energy_db")}
        return cuts, per_hop, np.concatenate(spy.mix)

    w = blocks * cfg.engine.block_samples * RATE // ANALYSIS_RATE_HZ
    w16 = w * ANALYSIS_RATE_HZ // RATE
    try:
        with spying() as spy:
            full_cuts, full, full_mix = run(spy, 0)
            cuts, part, part_mix = run(spy, w)
    finally:
        asyncio.run(engine.close())
    h0 = w16 // HOP_SAMPLES
    print(f"{mix.shape[0] / RATE:.1f} s of song, restarted at W = {w} ({w / RATE:.2f} s)")
    d = np.abs(full_mix[w16 : w16 + part_mix.shape[0]] - part_mix)
    print(f"mix at 16 kHz: max |diff| {d.max():.2g}; after 1 s {d[ANALYSIS_RATE_HZ:].max():.2g}")
    for name, values in part.items():
        d = np.abs(full[name][h0 : h0 + values.shape[0]] - values)
        print(f"{name}: max |diff| after " + ", ".join(
            f"{t / 100:.0f} s {d[t:].max():.3g}" for t in (100, 500, 1000, 1500)))
    after = w + 12 * RATE
    print("cuts after W + 12 s identical:",
          [c for c in full_cuts if c > after] == [c for c in cuts if c > after])
    engine = InprocEngine(cfg)
    try:
        tokens(cfg, engine, mix)
    finally:
        asyncio.run(engine.close())


def tokens(cfg: AppConfig, engine: InprocEngine, mix: np.ndarray) -> None:
    """Resume from every checkpoint of the uninterrupted run, with its token."""
    def spec(start: int = 0, token: bytes = b"") -> StreamSpec:
        return stream_spec(cfg, format=AudioFormat(encoding=Encoding.F32LE,
                                                   sample_rate_hz=RATE, channels=2),
                           mode=Mode.SONG, policy_overrides={},
                           event_overrides={"checkpoint_interval_ms": 1000},
                           start_sample=start, resume_token=token)

    def cuts(events: list[Event]) -> list[tuple[int, str, int]]:
        return [(e.sample, e.kind.value, e.index) for e in events if isinstance(e, Cut)]

    data = encode(mix, Encoding.F32LE)
    full = analyze(cfg, spec(), slice_bytes(data, 8, [RATE // 5]), engine)
    cps = [e for e in full if isinstance(e, Checkpoint)]
    same = 0
    for cp in cps:
        resumed = analyze(cfg, spec(cp.resume_from, cp.token),
                          slice_bytes(data[cp.resume_from * 8:], 8, [RATE // 3]), engine)
        same += cuts(resumed) == [c for c in cuts(full) if c[2] >= cp.cuts]
    print(f"with a resume token: {same} of {len(cps)} checkpoints "
          f"({cps[0].sample / RATE:.1f} .. {cps[-1].sample / RATE:.1f} s, pre-roll "
          f"{min(c.sample - c.resume_from for c in cps) / RATE:.1f} .. "
          f"{max(c.sample - c.resume_from for c in cps) / RATE:.1f} s, token "
          f"{max(len(c.token) for c in cps)} bytes) continue with the uninterrupted cuts")


if __name__ == "__main__":
    main()
