"""``python -m seamcut.bench.engine_kill``: what streams see when an engine dies.

Plays the bundled speech sample on ``--streams`` paced streams (real time, 20 ms
messages, a loop of the file from a different offset each) against a ``seamcut
serve --engine process`` supervisor, SIGKILLs its engine process ``--kill-at-s``
into the run, and reports, before, around and after the kill: the acknowledgement
latency (chunk sent -> Progress that covers it); how long until the engine's
replacement answered (``engine_resumed`` notice), and the time from sending a chunk
to the server having analysed it (``Progress.samples_processed``), which is where the
engine's absence shows; and whether every stream's cuts
equal a solo run of the same audio (the replay promise). Imports the stubs, numpy
and psutil only.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import psutil
from seamcut.bench.source import bundled_sample, stream_offset
from seamcut.client.audio import encode, read_for_wire

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    a = np.asarray(values)
    return {"count": len(values), "p50": round(float(np.percentile(a, 50)), 2),
            "p99": round(float(np.percentile(a, 99)), 2), "max": round(float(a.max()), 2)}


class _Stream:
    def __init__(self, target: str, pcm: bytes, rate: int, chunk: int, gap_s: float) -> None:
        self.target, self.pcm, self.rate, self.chunk, self.gap_s = target, pcm, rate, chunk, gap_s
        self.sent: dict[int, float] = {}
        self.ends: list[int] = []  # frames sent up to and including chunk seq
        self.acks: list[tuple[float, float]] = []  # (send time, latency ms)
        self.done: list[tuple[float, float]] = []  # (send time, ms until analysed)
        self.cuts: list[int] = []
        self.notices: list[tuple[float, str]] = []
        self.error = ""

    def _messages(self) -> Iterator[pb.ClientMessage]:
        yield pb.ClientMessage(config=pb.StreamConfig(
            format=pb.AudioFormat(encoding=pb.PCM_S16LE, sample_rate_hz=self.rate,
                                  channels=1), mode=pb.SPEECH,
            events=pb.EventOptions(chunk_traces=False)))
        step = 2 * self.chunk
        t0 = time.monotonic()
        for seq, i in enumerate(range(0, len(self.pcm), step)):
            if self.gap_s:
                time.sleep(max(0.0, t0 + seq * self.gap_s - time.monotonic()))
            self.sent[seq] = time.monotonic()
            self.ends.append(min(len(self.pcm), i + step) // 2)
            yield pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=self.pcm[i:i + step]))

    def run(self) -> None:
        acked = -1
        analysed = 0  # chunks whose every frame is in samples_processed
        try:
            with grpc.insecure_channel(self.target) as ch:
                for m in pb_grpc.SeamcutStub(ch).StreamCuts(self._messages(), timeout=600):
                    kind = m.WhichOneof("msg")
                    now = time.monotonic()
                    if kind == "progress":
                        for s in range(acked + 1, m.progress.last_seq + 1):
                            if s in self.sent:
                                self.acks.append((self.sent[s], (now - self.sent[s]) * 1000))
                        acked = max(acked, m.progress.last_seq)
                        while (analysed < len(self.ends)
                               and self.ends[analysed] <= m.progress.samples_processed):
                            sent = self.sent[analysed]
                            self.done.append((sent, (now - sent) * 1000))
                            analysed += 1
                    elif kind == "cut":
                        self.cuts.append(m.cut.sample)
                    elif kind == "notice":
                        self.notices.append((now, m.notice.code))
        except grpc.RpcError as exc:
            self.error = f"{exc.code().name}: {exc.details()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="127.0.0.1:50061")
    p.add_argument("--supervisor-pid", type=int, required=True,
                   help="pid of `seamcut serve`: its child `seamcut engine` is killed")
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    p.add_argument("--kill-at-s", type=float, default=8.0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    audio, info = read_for_wire(bundled_sample())
    rate = info.sample_rate_hz
    mono = np.asarray(audio)[:, 0].copy()
    n = int(args.seconds * rate)
    chunk = rate // 50  # 20 ms
    loops = [np.resize(np.roll(mono, -stream_offset(i, mono.shape[0])), n)
             for i in range(args.streams)]
    pcms = [encode(x.reshape(-1, 1), "pcm_s16le") for x in loops]
    solo = []
    for pcm in pcms:  # reference cuts: each stream's audio alone, flooded
        s = _Stream(args.server, pcm, rate, rate, 0.0)
        s.run()
        solo.append(s.cuts)
    streams = [_Stream(args.server, pcm, rate, chunk, 0.02) for pcm in pcms]
    threads = [threading.Thread(target=s.run) for s in streams]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(args.kill_at_s)
    engines = [c for c in psutil.Process(args.supervisor_pid).children()
               if "engine" in c.cmdline()[1:4]]
    killed_at = time.monotonic()
    for e in engines:
        e.kill()
    for t in threads:
        t.join()
    resumed = [t for s in streams for t, code in s.notices if code == "engine_resumed"]
    def windows(samples: list[tuple[float, float]]) -> dict[str, dict[str, float]]:
        return {"before": _stats([ms for t, ms in samples if t < killed_at - 1.0]),
                "kill_to_5s_after": _stats([ms for t, ms in samples
                                            if killed_at - 1.0 <= t < killed_at + 5.0]),
                "after": _stats([ms for t, ms in samples if t >= killed_at + 5.0])}
    report = {
        "streams": args.streams, "audio_seconds_per_stream": args.seconds,
        "killed_engines": [e.pid for e in engines], "kill_at_s": round(killed_at - t0, 2),
        "resumed_after_s": round(min(resumed) - killed_at, 2) if resumed else None,
        # Progress acknowledgement: the worker answers it without the engine.
        "ack_ms": windows([a for s in streams for a in s.acks]),
        # Chunk sent -> samples_processed covers it: this is where the engine's absence
        # shows (analysis waits for the replacement, then catches up).
        "analysed_ms": windows([a for s in streams for a in s.done]),
        "cuts_identical_to_solo": all(s.cuts == c for s, c in zip(streams, solo, strict=True)),
        "cuts_per_stream": [len(c) for c in solo],
        "errors": [s.error for s in streams if s.error],
        "notices": sorted({code for s in streams for _, code in s.notices}),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if report["cuts_identical_to_solo"] and not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
