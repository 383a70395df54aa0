"""``seamcut serve --workers N``: processes sharing one port, restarted, drained."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

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
def supervisor(workers: int) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    srv = LocalServer(("--workers", str(workers), "--log-level", "WARNING"),
                      env={"SEAMCUT_SERVER_GRACE_S": "3"}, listeners=workers)
    try:
        yield srv.proc, srv.target
    finally:
        if srv.proc.poll() is None:  # a test failed half-way: leave no worker behind
            for child in psutil.Process(srv.proc.pid).children():
                child.kill()
            srv.proc.kill()
        srv.stop()


def instance_ids(target: str, connections: int) -> set[str]:
    ids = set()
    for _ in range(connections):  # a new channel is a new TCP connection
        with grpc.insecure_channel(target) as ch:
            caps = pb_grpc.SeamcutStub(ch).GetCapabilities(pb.GetCapabilitiesRequest(),
                                                           timeout=30)
            ids.add(caps.instance_id)
    return ids


def stream_clip(target: str) -> list[int]:
    chunks = [PCM[i:i + 3200] for i in range(0, len(PCM), 3200)]
    return cut_samples(run_stream(target, [config_msg(), *audio_msgs(chunks)]))


def test_workers_share_the_port_and_cut_alike() -> None:
    with supervisor(2) as (proc, target):
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        ids = instance_ids(target, 24)
        assert {i.rsplit(":", 1)[1] for i in ids} == {str(w.pid) for w in workers}
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: stream_clip(target), range(6)))
        assert len(results[0]) >= 4 and all(r == results[0] for r in results)


def test_a_dead_worker_is_replaced_and_sigterm_drains_all() -> None:
    with supervisor(2) as (proc, target):
        sup = psutil.Process(proc.pid)
        victim, survivor = sup.children()
        victim.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = {c.pid for c in sup.children()}
            if len(pids) == 2 and victim.pid not in pids:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the killed worker was not replaced")
        replacement = next(c for c in sup.children() if c.pid != survivor.pid)
        deadline = time.monotonic() + 60
        while str(replacement.pid) not in {i.rsplit(":", 1)[1] for i in
                                           instance_ids(target, 8)}:
            assert time.monotonic() < deadline, "the replacement never answered"
        assert stream_clip(target)  # service goes on
        children = sup.children()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE
                       for c in children)
