"""Several replicas from the SDK: streams spread with gRPC's round_robin, and a stream
refused before its Ready (full, down) opened again on another replica, with the same
cuts as a solo run. Real servers on loopback (in-process, one engine each).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from seamcut.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    CutEvent,
    InvalidOptions,
    ReadyEvent,
    ServerBusy,
    StreamOptions,
    TlsError,
)
from seamcut.client.targets import channel_target

from tests.corpus import default_corpus
from tests.helpers import ServerThread, serving
from tests.test_security import dns_only_server_cert

pytestmark = pytest.mark.integration
CLIP = default_corpus()[0]
AUDIO = CLIP.audio[:, 0]
OPTS = StreamOptions(sample_rate_hz=CLIP.sample_rate_hz, chunk_traces=False)
BLOCK = CLIP.sample_rate_hz // 2


def blocks() -> Iterator[np.ndarray]:
    return (AUDIO[i:i + BLOCK] for i in range(0, len(AUDIO), BLOCK))


def cuts(client: Client) -> list[int]:
    return [ev.sample for ev in client.stream_cuts(OPTS, blocks()) if isinstance(ev, CutEvent)]


def opened(srv: ServerThread) -> int:
    return int(srv.running.servicer.counters.sessions_total)


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[ServerThread]]:
    with serving() as a, serving() as b, serving() as c:
        yield [a, b, c]


@pytest.mark.unit
def test_targets() -> None:
    one = channel_target("h.example:7")
    assert (one.target, one.options, one.replicas) == ("h.example:7", (), 1)
    many = channel_target(["127.0.0.1:1", "localhost:2", "127.0.0.3"])
    assert many.target == "ipv4:127.0.0.1:1,127.0.0.1:2,127.0.0.3:50051"
    assert many.replicas == 3 and "round_robin" in many.options[0][1]
    assert "round_robin" in channel_target("dns:///seamcut.example:50051").options[0][1]
    with pytest.raises(InvalidOptions, match="mix"):
        channel_target(["127.0.0.1:1", "[::1]:2"])
    with pytest.raises(InvalidOptions, match="port"):
        channel_target(["127.0.0.1:x", "127.0.0.1:2"])


def test_streams_spread_over_replicas_with_the_solo_cuts(replicas: list[ServerThread]) -> None:
    with Client(replicas[0].target) as solo:
        expected = cuts(solo)
    before = [opened(r) for r in replicas]
    with Client([r.target for r in replicas]) as client:
        runs = [cuts(client) for _ in range(9)]
    assert all(run == expected for run in runs)
    spread = [opened(r) - b for r, b in zip(replicas, before, strict=True)]
    # round_robin: 3 each once every subchannel is READY; a slow start may skew it.
    assert sum(spread) == 9 and min(spread) >= 1, spread


def test_a_full_replica_refuses_and_the_stream_opens_elsewhere() -> None:
    with serving(max_streams=1) as full, serving() as free:
        with Client(full.target) as c:
            expected = cuts(c)
        # Hold the full replica's one slot with a stream that has not ended.
        with Client(full.target) as holder, holder.stream(OPTS) as held:
            held.wait_ready(timeout=30)
            refused = int(full.running.servicer.counters.rejected)
            with Client([full.target, free.target]) as client:
                runs = [cuts(client) for _ in range(4)]
            # round_robin sent some of them to the full replica, which refused them, and
            # they completed on the other (the retry path, not luck of the draw).
            assert full.running.servicer.counters.rejected > refused
            with Client(full.target) as alone, pytest.raises(ServerBusy) as busy:
                cuts(alone)  # one address: no retry, the refusal reaches the caller
            assert busy.value.retry_after_ms is not None
        assert all(run == expected for run in runs)


def test_a_replica_that_is_down_is_skipped(replicas: list[ServerThread]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # closed once the block ends

    async def main() -> list[list[int]]:
        async with AsyncClient([dead, replicas[1].target], refused_retries=3) as client:
            out = []
            for _ in range(4):
                async with contextlib.aclosing(client.stream_cuts(OPTS, blocks())) as events:
                    evs = [ev async for ev in events]
                assert isinstance(evs[0], ReadyEvent)
                out.append([ev.sample for ev in evs if isinstance(ev, CutEvent)])
            return out

    with Client(replicas[1].target) as solo:
        expected = cuts(solo)
    assert all(run == expected for run in asyncio.run(main()))


def test_tls_replicas_given_by_one_host_name(tmp_path: Path) -> None:
    """The list is resolved to IP addresses for round_robin; the certificate check must
    still use the name the user gave (a certificate with no IP address in it)."""
    tls = dns_only_server_cert(tmp_path, "localhost")
    ca_pem = (tmp_path / "ca.pem").read_bytes()
    with serving(security=tls) as a, serving(security=tls) as b:
        names = [t.replace("127.0.0.1", "localhost") for t in (a.target, b.target)]
        with Client(names, tls_ca=ca_pem) as client:
            assert cuts(client)[-1] == len(AUDIO)
        with Client([a.target, b.target], tls_ca=ca_pem) as by_ip, \
                pytest.raises(TlsError):  # IP addresses the certificate does not hold
            cuts(by_ip)
        with Client([a.target, b.target], tls_ca=ca_pem, tls_server_name="localhost") as c:
            assert cuts(c)[-1] == len(AUDIO)


@pytest.mark.unit
def test_a_replica_name_that_does_not_resolve_is_a_connection_failure() -> None:
    with pytest.raises(ConnectionFailed, match="DNS resolution failed"):
        channel_target(["no-such-host.invalid:1", "127.0.0.1:2"])
