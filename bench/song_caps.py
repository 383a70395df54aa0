"""SONG throughput on the CPU with the hard-conditions work on and off.

The hard-conditions issue's budget: SONG throughput with the built-in separator stays
at least 0.9 of what it was before. Both parts of that work are settings, so one build
measures both ways: the level caps (``detector.vocal_valley_db``; 0 turns them off)
and the voice detector (``detector.voice_cap``); ``--off`` picks what "off" turns off
(default both, which is exactly the detector before): the packaged song sample (44.1 kHz stereo),
repeated to ``--seconds``, through the offline path (same engine, session and detector
as a stream), alternating on / off ``--rounds`` times; throughput = audio seconds /
wall seconds, the median per setting.

``--stem``: SONG with a client's vocal stem instead (the sample's mono mix as a third
channel standing in for one; content hardly changes the cost): "off" is then the
voice detector off (``detector.voice_floor``), which with a stem also drops Silero on
the mix that only the voice detector reads.

Usage::

    python -m seamcut.bench.song_caps [--seconds 60] [--rounds 3] [--off both|caps|voice]
                                      [--stem] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf
from seamcut.server.config import AudioFormat, Encoding, Mode, load_config, stream_spec
from seamcut.server.engine.client import InprocEngine
from seamcut.server.offline import analyze

OFF = {"caps": {"SEAMCUT_DETECTOR_VOCAL_VALLEY_DB": "0"},
       "voice": {"SEAMCUT_DETECTOR_VOICE_CAP": "false", "SEAMCUT_DETECTOR_VOICE_FLOOR": "false"}}
OFF["both"] = OFF["caps"] | OFF["voice"]


def _throughput(audio: np.ndarray, rate: int, env: dict[str, str], stem: bool) -> float:
    cfg = load_config(env=env)
    spec = stream_spec(cfg, format=AudioFormat(encoding=Encoding.F32LE, sample_rate_hz=rate,
                                               channels=audio.shape[1]),
                       mode=Mode.SONG, policy_overrides={}, event_overrides={},
                       vocal_stem_channels=(2,) if stem else ())
    data = audio.astype("<f4").tobytes()
    step = rate // 5 * audio.shape[1] * 4  # 200 ms messages
    chunks = [data[i:i + step] for i in range(0, len(data), step)]
    engine = InprocEngine(cfg, separators=True)
    analyze(cfg, spec, chunks[:10], engine)  # warm: models loaded, first calls done
    t0 = time.perf_counter()
    analyze(cfg, spec, chunks, engine)
    return float(audio.shape[0] / rate / (time.perf_counter() - t0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--off", choices=sorted(OFF), default="both")
    ap.add_argument("--stem", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with resources.as_file(resources.files("seamcut.samples") / "song_en.flac") as path:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    reps = int(np.ceil(args.seconds * rate / audio.shape[0]))
    audio = np.tile(audio, (reps, 1))[: int(args.seconds * rate)]
    if args.stem:
        audio = np.concatenate([audio, audio.mean(axis=1, keepdims=True)], axis=1)
    off_env = {"SEAMCUT_DETECTOR_VOICE_FLOOR": "false"} if args.stem else OFF[args.off]
    runs: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for name in ("on", "off"):
            runs[name].append(_throughput(audio, rate, {} if name == "on" else off_env,
                                          args.stem))
    on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or
        platform.machine(), "cpus": os.cpu_count(), "audio_s": args.seconds,
        "audio_s_per_s": runs, "median_on": on, "median_off": off, "ratio": on / off,
        "off": "voice floor" if args.stem else args.off, "stem": args.stem,
        "command": f"python -m seamcut.bench.song_caps --seconds {args.seconds:g} "
                   f"--rounds {args.rounds} " + ("--stem" if args.stem else f"--off {args.off}"),
    }
    what = "a client's stem" if args.stem else "built-in separator"
    print(f"SONG, {what}, {args.seconds:g} s of audio: on {on:.2f} audio s/s, "
          f"{report['off']} off {off:.2f} (medians of {args.rounds}); ratio {on / off:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
