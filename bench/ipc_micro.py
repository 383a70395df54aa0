"""``python -m seamcut.bench.ipc_micro``: the two IPC designs for engine processes, side
by side, before choosing one (docs/DESIGN.md, "IPC").

(a) ZeroMQ ``ipc://`` DEALER -> ROUTER with a msgpack header frame and the arrays as
separate frames (what seamcut uses); (b) a shared-memory slot ring with eventfd
wake-ups (the request is copied into a slot, the peer is woken, the answer comes back
the same way). The peer is a second process that answers every message with one of
the same size (a result is about as large as its request). Reported: round trip per
message (µs) at a given payload, one message in flight (latency) and 32 in flight
(throughput). Imports the stdlib, numpy and pyzmq only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import struct
import tempfile
import time
from multiprocessing import shared_memory

import numpy as np
import zmq

SLOTS = 64


def _zmq_peer(endpoint: str) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.bind(endpoint)
    while True:
        frames = s.recv_multipart(copy=False)
        if frames[1].bytes == b"stop":
            break
        s.send_multipart(frames, copy=False)
    s.close(0)
    ctx.term()


def bench_zmq(payload: int, n: int, window: int) -> float:
    d = tempfile.mkdtemp()
    ep = f"ipc://{d}/micro.sock"
    p = mp.Process(target=_zmq_peer, args=(ep,))
    p.start()
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.connect(ep)
    arr = np.random.default_rng(0).standard_normal(payload // 4).astype(np.float32)
    head = b"x" * 120  # a msgpack header of about this size
    s.send_multipart([head, arr.data])
    s.recv_multipart()
    t = time.perf_counter()
    sent = got = 0
    while got < n:
        while sent < n and sent - got < window:
            s.send_multipart([head, arr.data], copy=False)
            sent += 1
        s.recv_multipart(copy=False)
        got += 1
    dt = time.perf_counter() - t
    s.send_multipart([b"stop"])
    p.join()
    s.close(0)
    ctx.term()
    return dt / n * 1e6


def _shm_peer(name: str, size: int, to_peer: int, to_me: int) -> None:
    shm = shared_memory.SharedMemory(name=name)
    buf = shm.buf
    assert buf is not None
    half = SLOTS * size
    while True:
        k = os.eventfd_read(to_peer)  # k messages are in the request slots
        for _ in range(k):
            (idx,) = struct.unpack_from("<q", buf, 2 * half)
            if idx < 0:
                del buf
                shm.close()
                return
            slot = idx % SLOTS
            lo = slot * size
            buf[half + lo : half + lo + size] = buf[lo : lo + size]
            struct.pack_into("<q", buf, 2 * half, idx + 1)
        os.eventfd_write(to_me, k)


def bench_shm(payload: int, n: int, window: int) -> float:
    window = min(window, SLOTS)
    shm = shared_memory.SharedMemory(create=True, size=2 * SLOTS * payload + 8)
    to_peer, to_me = os.eventfd(0), os.eventfd(0)
    p = mp.Process(target=_shm_peer, args=(shm.name, payload, to_peer, to_me))
    p.start()
    buf = shm.buf
    assert buf is not None
    arr = np.random.default_rng(0).standard_normal(payload // 4).astype(np.float32)
    raw = arr.tobytes()
    out = bytearray(payload)
    half = SLOTS * payload
    struct.pack_into("<q", buf, 2 * half, 0)
    t = time.perf_counter()
    sent = got = 0
    while got < n:
        burst = 0
        while sent < n and sent - got < window:
            slot = sent % SLOTS
            buf[slot * payload : (slot + 1) * payload] = raw
            sent += 1
            burst += 1
        if burst:
            os.eventfd_write(to_peer, burst)
        k = os.eventfd_read(to_me)
        for _ in range(k):
            slot = got % SLOTS
            out[:] = buf[half + slot * payload : half + (slot + 1) * payload]
            got += 1
    dt = time.perf_counter() - t
    struct.pack_into("<q", buf, 2 * half, -1)
    os.eventfd_write(to_peer, 1)
    p.join()
    del buf
    shm.close()
    shm.unlink()
    return dt / n * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    # 1 block (20 KiB + state), 16 blocks (330 KiB), one 1.5 s SONG window (512 KiB).
    for payload in (21_760, 329_000, 524_288):
        for window in (1, 32):
            n = args.messages if payload < 100_000 else args.messages // 8
            rows.append({"payload_bytes": payload, "in_flight": window,
                         "zmq_us_per_msg": round(bench_zmq(payload, n, window), 1),
                         "shm_us_per_msg": round(bench_shm(payload, n, window), 1)})
            print(rows[-1], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
