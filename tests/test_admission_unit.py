"""The server-wide admission ledger, peer keys, bounded echoes and refusal logging."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from seamcut.server.errors import echo
from seamcut.server.transport import admission
from seamcut.server.transport.admission import Claim, Ledger
from seamcut.server.transport.refusals import RefusalLog
from seamcut.server.transport.servicer import peer_address

pytestmark = pytest.mark.unit


def test_two_workers_share_one_limit_and_a_dead_ones_counts_go(tmp_path: Path) -> None:
    path = tmp_path / "streams"
    admission.create(path, 2)
    w0, w1 = Ledger(str(path), 0), Ledger(str(path), 1)
    peer = w0.peer_column("10.0.0.7")
    assert peer == w1.peer_column("10.0.0.7")  # one key per server, from the file

    def claims(led: Ledger) -> list[Claim]:
        return [Claim(admission.STREAMS, 1, 10, "server.max_streams"),
                Claim(led.peer_column("10.0.0.7"), 1, 3, "server.max_streams_per_peer")]

    assert w0.acquire(claims(w0)) is None
    assert w1.acquire(claims(w1)) is None
    assert w1.acquire(claims(w1)) is None
    over = w0.acquire(claims(w0))
    assert over is not None and over.what == "server.max_streams_per_peer"
    # All or nothing: the refused claim took no stream slot either.
    assert w0.total(admission.STREAMS) == 3 and w0.mine(admission.STREAMS) == 1
    # Another address is not limited by this one's share.
    other = [Claim(w0.peer_column("10.0.0.8"), 1, 3, "server.max_streams_per_peer")]
    assert w0.acquire(other) is None
    admission.reset_row(path, 1)  # worker 1 died
    assert w0.total(peer) == 1 and w0.acquire(claims(w0)) is None
    w0.release(claims(w0))
    assert w0.total(peer) == 1


def test_a_single_process_ledger_needs_no_file() -> None:
    led = Ledger()
    c = [Claim(admission.BUFFERED, 600, 1000, "server.max_buffered_mib")]
    assert led.acquire(c) is None
    assert led.acquire(c) == c[0]
    led.release(c)
    assert led.total(admission.BUFFERED) == 0


def test_bucket_keys_differ_between_servers() -> None:
    cols = {Ledger().peer_column("198.51.100.1") for _ in range(8)}
    assert len(cols) > 1  # a client cannot know which addresses share its counter


@pytest.mark.parametrize("peer,key", [
    ("ipv4:10.1.2.3:5555", "10.1.2.3"),
    ("ipv6:[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"),
    ("ipv6:[2001:db8:1:2:ffff::1]:9", "2001:db8:1:2::/64"),
    ("ipv6:[::ffff:192.0.2.1]:80", "192.0.2.1"),
    ("unix:/run/seamcut.sock", "unix:/run/seamcut.sock"),
    ("ipv4:garbage", "ipv4:garbage"),
])
def test_peer_address_keys(peer: str, key: str) -> None:
    assert peer_address(peer) == key


def test_echo_bounds_client_text() -> None:
    assert echo("builtin") == "'builtin'"
    long = echo("x" * 900_000)
    assert len(long) < 100 and long.endswith("… (900000 chars)")


def test_refusal_log_keeps_a_burst_per_window_and_counts_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rl = RefusalLog(logging.getLogger("t"), burst=3, window_s=10, clock=lambda: now[0])
    with caplog.at_level("INFO", logger="t"):
        for _ in range(50):
            rl.note("RESOURCE_EXHAUSTED", "refused %s", "x" * 1000)
        rl.note("INVALID_ARGUMENT", "bad")
        assert len(caplog.records) == 4
        assert all(len(r.getMessage()) < 400 for r in caplog.records)
        now[0] = 11.0
        rl.note("RESOURCE_EXHAUSTED", "again")
    msgs = [r.getMessage() for r in caplog.records]
    assert "47 more refused or failed streams" in msgs[4] and "RESOURCE_EXHAUSTED 47" in msgs[4]
    assert msgs[5] == "again"
    assert rl.total["RESOURCE_EXHAUSTED"] == 51


def test_grpc_options_set_the_abuse_limits() -> None:
    from seamcut.server.config import load_config
    from seamcut.server.transport.app import grpc_options

    opts = dict(grpc_options(load_config(env={})))
    assert opts["grpc.max_concurrent_streams"] == 128
    assert opts["grpc.max_allowed_incoming_connections"] == 2048
    assert opts["grpc.http2.bdp_probe"] == 0
    assert opts["grpc.http2.lookahead_bytes"] == 256 * 1024
    assert "grpc.max_connection_age_ms" not in opts
    aged = dict(grpc_options(load_config(env={}, overrides={
        "server": {"connection_max_age_s": 600}})))
    assert aged["grpc.max_connection_age_ms"] == 600_000
    assert aged["grpc.max_connection_age_grace_ms"] == (14_400 + 10) * 1000


@pytest.mark.parametrize("key,value", [
    ("http2_max_concurrent_streams", 64),  # must exceed max_streams_per_connection
    ("max_streams_per_peer", -1), ("stream_buffer_mib", 0), ("max_buffered_mib", 1),
    ("stream_window_kib", 16), ("connection_idle_s", 0)])
def test_abuse_settings_are_validated(key: str, value: object) -> None:
    from seamcut.server.config import load_config
    from seamcut.server.errors import ConfigError

    with pytest.raises(ConfigError, match=f"server.{key}"):
        load_config(env={}, overrides={"server": {key: value}})


def test_one_engine_per_gpu_each_seeing_its_own_card() -> None:
    from seamcut.server.config import load_config
    from seamcut.server.transport.workers import engine_env, visible_gpus

    auto = load_config(env={})
    dev = ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"]
    assert visible_gpus(auto, env={}, dev=dev) == ["0", "1"]
    assert visible_gpus(auto, env={"CUDA_VISIBLE_DEVICES": "3, 5"}, dev=dev) == ["3", "5"]
    cpu = load_config(env={}, overrides={"engine": {"device": "cpu"}})
    assert visible_gpus(cpu, env={}, dev=dev) == []
    envs = [engine_env(auto, k, ["3", "5"]) for k in range(3)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs if e] == ["3", "5", "3"]
    pinned = load_config(env={}, overrides={"engine": {"device": "cuda:1"}})
    assert engine_env(pinned, 0, ["0", "1"]) is None  # the config names its card
    assert engine_env(auto, 0, []) is None  # a CPU host: inherit
