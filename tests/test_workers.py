"""``seamcut serve --workers N``: transport workers sharing one port, engine processes
behind them, each restarted when it dies; limits per server; nothing left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import psutil
import pytest
from seamcut.bench.localserver import LocalServer
from seamcut.server.config import Encoding

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.corpus import default_corpus
from tests.helpers import audio_msgs, config_msg, cut_samples, encode, run_stream

pytestmark = pytest.mark.integration
CLIP = default_corpus()[0]  # 16 kHz mono speech, 12 s, 4 pauses
PCM = encode(CLIP.audio, Encoding.PCM_S16LE)


@contextmanager
def supervisor(*args: str, workers: int = 2,
               env: dict[str, str] | None = None) -> Iterator[LocalServer]:
    srv = LocalServer(("--workers", str(workers), "--log-level", "WARNING", *args),
                      env={"SEAMCUT_SERVER_GRACE_S": "3", **(env or {})}, listeners=workers)
    try:
        yield srv
    finally:
        if srv.proc.poll() is None:  # a test failed half-way: leave no child behind
            for child in psutil.Process(srv.proc.pid).children():
                child.kill()
            srv.proc.kill()
        srv.stop()


def children(srv: LocalServer, kind: str) -> list[psutil.Process]:
    """The supervisor's children whose command line is ``seamcut <kind> ...``."""
    return [c for c in psutil.Process(srv.pid).children()
            if kind in c.cmdline()[1:4] and "seamcut" in " ".join(c.cmdline()[1:3])]


def own_channel(target: str) -> grpc.Channel:
    """A channel with its own TCP connection (channels share one by default)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def caps(ch: grpc.Channel) -> pb.Capabilities:
    return pb_grpc.SeamcutStub(ch).GetCapabilities(pb.GetCapabilitiesRequest(), timeout=30)


def worker_of(ch: grpc.Channel) -> str:
    return caps(ch).instance_id.rsplit(":", 1)[1]


def channels_per_worker(target: str, each: int, workers: int = 2,
                        tries: int = 200) -> dict[str, list[grpc.Channel]]:
    """``each`` connections on every worker. The kernel spreads connections over the
    SO_REUSEPORT listeners by a hash of the client port, so a fixed handful can all
    land on one worker (8 did, in 1 CI run of a few dozen): open until each has its
    share, and close the rest."""
    got: dict[str, list[grpc.Channel]] = {}
    for _ in range(tries):
        ch = own_channel(target)
        mine = got.setdefault(worker_of(ch), [])
        if len(mine) < each:
            mine.append(ch)
        else:
            ch.close()
        if len(got) == workers and all(len(v) == each for v in got.values()):
            return got
    for chans in got.values():
        for ch in chans:
            ch.close()
    raise AssertionError(f"{tries} connections reached only {sorted(got)}")


def instance_ids(target: str, connections: int) -> set[str]:
    ids = set()
    for _ in range(connections):  # a new channel is a new TCP connection
        with grpc.insecure_channel(target) as ch:
            ids.add(caps(ch).instance_id)
    return ids


def stream_clip(target: str) -> list[int]:
    chunks = [PCM[i:i + 3200] for i in range(0, len(PCM), 3200)]
    return cut_samples(run_stream(target, [config_msg(), *audio_msgs(chunks)]))


def rundir(srv: LocalServer) -> Path:
    m = re.search(r"on ipc://(\S+)/engine-0\.sock", srv.log_path.read_text())
    assert m, srv.log_path.read_text()
    return Path(m.group(1))


def test_workers_share_the_port_and_an_engine_process() -> None:
    with supervisor() as srv:
        workers, engines = children(srv, "serve"), children(srv, "engine")
        assert len(workers) == 2 and len(engines) == 1  # one engine on a CPU host
        assert "seamcut engine --" in " ".join(engines[0].cmdline())  # as ps shows it
        ids = instance_ids(srv.target, 24)
        assert {i.rsplit(":", 1)[1] for i in ids} == {str(w.pid) for w in workers}
        with grpc.insecure_channel(srv.target) as ch:
            c = caps(ch)
        assert [(e.id, e.pid, e.serving) for e in c.engines] == [
            ("engine-0", engines[0].pid, True)]
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: stream_clip(srv.target), range(6)))
        assert len(results[0]) >= 4 and all(r == results[0] for r in results)
        # Workers load no model: their memory stays far below the engine's.
        assert all(w.memory_info().rss < engines[0].memory_info().rss for w in workers)


def test_max_streams_holds_across_workers() -> None:
    with supervisor("--max-streams", "4") as srv:
        (_, a), (_, b) = sorted(channels_per_worker(srv.target, 4).items())
        chans = [c for pair in zip(a, b, strict=True) for c in pair]  # alternate workers
        held: list[tuple[int, object, threading.Event]] = []  # the call: a dropped one ends
        try:
            refused = []
            for i in range(8):  # one stream per connection, alternating workers
                gate = threading.Event()

                def msgs(g: threading.Event = gate) -> Iterator[pb.ClientMessage]:
                    yield config_msg()
                    g.wait(30)

                call = pb_grpc.SeamcutStub(chans[i]).StreamCuts(msgs(), timeout=30)
                try:
                    first = next(call)
                    assert first.WhichOneof("msg") == "ready"
                    held.append((i, call, gate))
                except grpc.RpcError as exc:
                    refused.append(exc.code())
            # The first four, two on each worker, were held: the limit is the server's,
            # although either worker alone still had room for more.
            assert [i for i, _, _ in held] == [0, 1, 2, 3]
            assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4
        finally:
            for _, _, gate in held:
                gate.set()
            for c in chans:
                c.close()


def test_a_killed_worker_ends_only_its_streams_and_is_replaced() -> None:
    with supervisor() as srv:
        per_worker = channels_per_worker(srv.target, 1)
        chans = [c for v in per_worker.values() for c in v]
        (victim_pid, (victim_ch,)), (_, (other_ch,)) = sorted(per_worker.items())
        chunks = [PCM[i:i + 3200] for i in range(0, len(PCM), 3200)]

        def paced() -> Iterator[pb.ClientMessage]:
            yield config_msg()
            for m in audio_msgs(chunks):
                yield m
                time.sleep(0.02)

        results: dict[str, object] = {}

        def go(name: str, ch: grpc.Channel) -> None:
            try:
                results[name] = cut_samples(pb_grpc.SeamcutStub(ch).StreamCuts(paced(),
                                                                                 timeout=60))
            except grpc.RpcError as exc:
                results[name] = exc.code()

        threads = [threading.Thread(target=go, args=(n, c))
                   for n, c in (("victim", victim_ch), ("other", other_ch))]
        for t in threads:
            t.start()
        time.sleep(1.0)
        psutil.Process(int(victim_pid)).kill()
        for t in threads:
            t.join(60)
        assert results["victim"] is grpc.StatusCode.UNAVAILABLE
        assert results["other"] == stream_clip(srv.target)
        deadline = time.monotonic() + 60
        while len(children(srv, "serve")) != 2 or int(victim_pid) in {
                w.pid for w in children(srv, "serve")}:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        for c in chans:
            c.close()


def test_a_killed_engine_is_restarted_and_streams_finish_exactly() -> None:
    with supervisor() as srv:
        solo = stream_clip(srv.target)
        engine = children(srv, "engine")[0]
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(stream_clip, srv.target) for _ in range(4)]
            time.sleep(0.05)
            engine.kill()
            results = [f.result(60) for f in futures]
        assert all(r == solo for r in results)
        new = children(srv, "engine")
        assert len(new) == 1 and new[0].pid != engine.pid


def test_sigterm_leaves_no_process_socket_or_file_behind() -> None:
    with supervisor() as srv:
        kids = psutil.Process(srv.pid).children()
        assert len(kids) == 3
        run = rundir(srv)
        assert (run / "engine-0.sock").exists() and (run / "streams").exists()
        assert stream_clip(srv.target)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) == 0
        assert not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kids)
        assert not run.exists()


def test_an_engine_that_cannot_load_its_model_stops_serve_with_the_reason() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "seamcut.cli", "serve", "--host", "127.0.0.1", "--port", "0",
         "--workers", "2"],
        env={**os.environ, "SEAMCUT_SEPARATOR_MDX_MODEL_PATH": "/nonexistent.onnx"},
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert "engine 0 could not start" in proc.stderr and "nonexistent.onnx" in proc.stderr


def test_workers_load_no_model_and_no_model_library() -> None:
    """A worker maps neither ONNX Runtime nor torch (so no model and no CUDA context);
    the engine maps ONNX Runtime."""
    with supervisor() as srv:
        assert stream_clip(srv.target)

        def maps(p: psutil.Process) -> str:
            return Path(f"/proc/{p.pid}/maps").read_text()

        for w in children(srv, "serve"):
            m = maps(w)
            assert "onnxruntime" not in m and "libtorch" not in m, w.pid
        assert "onnxruntime" in maps(children(srv, "engine")[0])
