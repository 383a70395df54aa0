"""Stage batching: arrival order, the stream cap and the per-stream block cap."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
from seamcut.server.engine.stages import Stage

pytestmark = pytest.mark.unit


@dataclass
class _Stream:
    key: str
    closed: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Item:
    stream: _Stream
    n: int
    t_enqueued: float = 0.0
    t_queue: float = 0.0


def batches_of(items: list[_Item], **kw: int) -> list[list[tuple[str, int]]]:
    out: list[list[tuple[str, int]]] = []
    done = threading.Event()

    def process(batch: list[_Item]) -> None:
        out.append([(i.stream.key, i.n) for i in batch])
        if sum(map(len, out)) == len(items):
            done.set()

    stage: Stage[_Item] = Stage("t", process, wait_s=0.0, on_drop=lambda _: None, **kw)
    for it in items:  # queued before the thread starts: the first batch sees them all
        stage.put(it)
    stage.start()
    assert done.wait(10)
    stage.stop()
    return out


def test_a_flooding_stream_takes_at_most_its_share_of_a_batch() -> None:
    a, b, c = _Stream("a"), _Stream("b"), _Stream("c")
    items = [_Item(a, i) for i in range(40)] + [_Item(b, 0), _Item(b, 1)]
    items.insert(5, _Item(c, 0))
    out = batches_of(items, max_streams=8, max_per_stream=16)
    assert out[0] == [("a", i) for i in range(5)] + [("c", 0)] + \
        [("a", i) for i in range(5, 16)] + [("b", 0), ("b", 1)]
    assert out[1] == [("a", i) for i in range(16, 32)]
    assert out[2] == [("a", i) for i in range(32, 40)]


def test_stream_cap_keeps_each_streams_blocks_in_order() -> None:
    s = [_Stream(k) for k in "abc"]
    items = [_Item(s[i % 3], i // 3) for i in range(12)]
    out = batches_of(items, max_streams=2)
    assert [k for k, _ in out[0]] == ["a", "b"] * 4
    assert out[1] == [("c", n) for n in range(4)]
