"""Progress rate limiting (events.progress_interval_ms) over real gRPC streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import numpy as np
import pytest

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.helpers import ServerThread, config_msg, serving

pytestmark = pytest.mark.integration
CHUNK = 320  # 20 ms at 16 kHz


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with serving() as srv:
        yield srv


def chunk(seq: int) -> pb.ClientMessage:
    rng = np.random.default_rng(seq)
    data = (rng.standard_normal(CHUNK) * 300).astype("<i2").tobytes()
    return pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=data))


async def stream(target: str, n: int, gap_s: float,
                 interval_ms: int | None) -> list[tuple[float, pb.ServerMessage]]:
    """Send ``n`` chunks ``gap_s`` apart (0 = all at once); return (receive time, message)."""
    cfg = config_msg()
    if interval_ms is not None:
        cfg.config.events.progress_interval_ms = interval_ms

    async def requests() -> AsyncIterator[pb.ClientMessage]:
        yield cfg
        for seq in range(n):
            yield chunk(seq)
            if gap_s:
                await asyncio.sleep(gap_s)

    out = []
    async with grpc.aio.insecure_channel(target) as ch:
        async for msg in pb_grpc.SeamcutStub(ch).StreamCuts(requests()):
            out.append((time.monotonic(), msg))
    return out


def progresses(msgs: list[tuple[float, pb.ServerMessage]]) -> list[tuple[float, pb.Progress]]:
    return [(t, m.progress) for t, m in msgs if m.WhichOneof("msg") == "progress"]


def test_a_flood_gets_fewer_progress_messages_than_chunks(server: ServerThread) -> None:
    n = 400
    msgs = asyncio.run(stream(server.target, n, 0.0, None))
    prog = progresses(msgs)
    assert 1 <= len(prog) < n / 2
    seqs = [p.last_seq for _, p in prog]
    assert seqs == sorted(seqs)
    # The last Progress comes before the Summary and acknowledges everything.
    kinds = [m.WhichOneof("msg") for _, m in msgs]
    assert kinds[-1] == "summary" and kinds.index("summary") > kinds.index("progress")
    assert prog[-1][1].last_seq == n - 1 and prog[-1][1].samples_received == n * CHUNK
    assert prog[-1][1].samples_processed == n * CHUNK


def test_paced_stream_is_acknowledged_at_the_interval(server: ServerThread) -> None:
    n, gap = 60, 0.02  # 1.2 s of paced 20 ms chunks
    every = asyncio.run(stream(server.target, n, gap, 0))
    limited = asyncio.run(stream(server.target, n, gap, 100))
    p_every, p_limited = progresses(every), progresses(limited)
    # Interval 0: practically every chunk is acknowledged on its own.
    assert len({p.last_seq for _, p in p_every}) >= 0.9 * n
    # 100 ms: at most one per 100 ms (the final one, flushed before the Summary, may
    # come sooner), and every chunk is still acknowledged.
    times = [t for t, _ in p_limited]
    gaps = np.diff(times[:-1])
    assert (gaps >= 0.09).all(), gaps
    assert len(p_limited) <= (times[-1] - times[0]) / 0.1 + 2
    assert p_limited[-1][1].last_seq == n - 1


def test_interval_out_of_range_is_invalid_argument(server: ServerThread) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        # Config only: an audio message racing the server's abort could fail the
        # client's own send first (grpc reports that as INTERNAL).
        asyncio.run(stream(server.target, 0, 0.0, 5000))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events.progress_interval_ms" in (info.value.details() or "")
