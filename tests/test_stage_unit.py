"""Stage batching (arrival order, the stream cap, the per-stream cap) and the stage
guard: a failing job fails alone, and a dying stage thread is reported."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
from seamcut.server.engine.protocol import Kind, Request
from seamcut.server.engine.stages import Job, Stage

pytestmark = pytest.mark.unit


def job(stream: str, n: int) -> Job:
    return Job(Request(kind=Kind.ANALYSE, stream=stream, id=n, index=n,
                       audio=np.zeros(0, np.float32)))


def run_stage(items: list[Job], process: Callable[[list[Job]], list[Job]] | None = None,
              **kw: int) -> tuple[list[list[tuple[str, int]]], list[tuple[str, int]],
                                  list[tuple[str, int, str]], list[str]]:
    """(batches as processed, jobs forwarded, jobs failed, deaths) once all are settled."""
    batches: list[list[tuple[str, int]]] = []
    forwarded: list[tuple[str, int]] = []
    failed: list[tuple[str, int, str]] = []
    deaths: list[str] = []
    done = threading.Event()

    def settle() -> None:
        if len(forwarded) + len(failed) == len(items) or deaths:
            done.set()

    def default(batch: list[Job]) -> list[Job]:
        return batch

    body = process or default

    def recorded(batch: list[Job]) -> list[Job]:
        batches.append([(j.stream, j.req.index) for j in batch])
        return body(batch)

    def forward(j: Job) -> None:
        forwarded.append((j.stream, j.req.index))
        settle()

    def fail(j: Job, exc: BaseException) -> None:
        failed.append((j.stream, j.req.index, str(exc)))
        settle()

    def death(name: str, exc: BaseException) -> None:
        deaths.append(f"{name}: {exc}")
        settle()

    stage = Stage("t", recorded, forward=forward, fail=fail, on_death=death, wait_s=0.0, **kw)
    for it in items:  # queued before the thread starts: the first batch sees them all
        stage.put(it)
    stage.start()
    assert done.wait(10)
    stage.stop()
    return batches, forwarded, failed, deaths


def test_a_flooding_stream_takes_at_most_its_share_of_a_batch() -> None:
    items = [job("a", i) for i in range(40)] + [job("b", 0), job("b", 1)]
    items.insert(5, job("c", 0))
    out, _, _, _ = run_stage(items, max_streams=8, max_per_stream=16)
    assert out[0] == [("a", i) for i in range(5)] + [("c", 0)] + \
        [("a", i) for i in range(5, 16)] + [("b", 0), ("b", 1)]
    assert out[1] == [("a", i) for i in range(16, 32)]
    assert out[2] == [("a", i) for i in range(32, 40)]


def test_stream_cap_keeps_each_streams_jobs_in_order() -> None:
    items = [job("abc"[i % 3], i // 3) for i in range(12)]
    out, fwd, _, _ = run_stage(items, max_streams=2)
    assert [k for k, _ in out[0]] == ["a", "b"] * 4
    assert out[1] == [("c", n) for n in range(4)]
    assert sorted(fwd) == sorted((j.stream, j.req.index) for j in items)


def test_a_job_that_raises_fails_alone_and_the_stage_goes_on() -> None:
    def process(batch: list[Job]) -> list[Job]:
        if any(j.stream == "bad" for j in batch):
            raise ValueError("boom")
        return batch

    items = [job("a", 0), job("bad", 0), job("b", 0)]
    out, fwd, failed, deaths = run_stage(items, process, max_streams=8)
    assert out[0] == [("a", 0), ("bad", 0), ("b", 0)]  # the batch, then one by one
    assert sorted(fwd) == [("a", 0), ("b", 0)]
    assert failed == [("bad", 0, "boom")]
    assert not deaths


def test_a_stage_that_dies_is_reported() -> None:
    class Fatal(BaseException):
        pass

    def process(batch: list[Job]) -> list[Job]:
        raise Fatal("the thread itself goes")

    _, fwd, failed, deaths = run_stage([job("a", 0)], process, max_streams=8)
    assert deaths == ["t: the thread itself goes"] and not fwd
    assert failed == [("a", 0, "the thread itself goes")]  # what it held fails with it
