"""Streams that survive losing a replica, with real ``seamcut serve`` processes.

Three servers on loopback, one SDK client given all three with resume on: streams
spread over them; a replica SIGKILLed mid-stream, and one drained (SIGTERM), leave
every stream finishing on the others with exactly the cuts of an uninterrupted run;
and a replica inside a network namespace whose link is cut mid-stream is freed by
its idle limit while the SDK resumes elsewhere. client/resume.py is the mechanism,
tests/test_resume.py its property test on in-process servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
from seamcut.bench.localserver import LocalServer
from seamcut.client import (
    AsyncClient,
    Event,
    ProgressEvent,
    ReadyEvent,
    ResumedEvent,
    SummaryEvent,
)

from tests.test_resume import Cut, cut_tuples, program, solo

pytestmark = pytest.mark.integration
STREAMS = 6
# Audio seconds per wall second per stream: six streams of 35 s take ~4 s, so a kill
# at a third of the way lands while every stream is still sending.
PACE = 9.0


@dataclass
class Run:
    """One stream's events and where it started."""

    events: list[Event] = field(default_factory=list)

    @property
    def first_session(self) -> str:
        ready = self.events[0]
        assert isinstance(ready, ReadyEvent)
        return ready.session_id

    @property
    def resumed(self) -> list[ResumedEvent]:
        return [e for e in self.events if isinstance(e, ResumedEvent)]

    @property
    def finished_on(self) -> int:
        """The pid of the process that sent the Summary."""
        summary = self.events[-1]
        assert isinstance(summary, SummaryEvent) and summary.end_reason == "completed"
        return int(summary.instance_id.rsplit(":", 1)[1])


def start_servers(n: int, *args: str, env: dict[str, str] | None = None) -> list[LocalServer]:
    # In parallel: each loads its models (~1.5 s here).
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: LocalServer(
            ("--log-level", "DEBUG", *args), env=env), range(n)))


@contextlib.contextmanager
def replicas(n: int = 3, *args: str, env: dict[str, str] | None = None,
             ) -> Iterator[list[LocalServer]]:
    servers = start_servers(n, *args, env=env)
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()
            s.log_path.unlink(missing_ok=True)  # a SIGKILLed one keeps its log otherwise


def sessions_started(srv: LocalServer) -> set[str]:
    return set(re.findall(r"stream started session_id=(\w+)", srv.log_path.read_text()))


async def paced(audio: np.ndarray, rate: int) -> AsyncIterator[np.ndarray]:
    step = rate // 5
    for i in range(0, len(audio), step):
        await asyncio.sleep(step / rate / PACE)
        yield audio[i:i + step]


async def stream_all(targets: list[str], fail: Callable[[], None], at: float) -> list[Run]:
    """Open STREAMS resumable streams over ``targets`` at once; when the first has
    ``at`` of its audio final, call ``fail()`` (from the event loop's thread: it
    signals a process, which does not block)."""
    prog = program("speech")
    mark = int(at * len(prog.audio))
    runs = [Run() for _ in range(STREAMS)]
    failed = asyncio.Event()

    async def one(run: Run, client: AsyncClient) -> None:
        async with contextlib.aclosing(client.stream_cuts(
                prog.options, paced(prog.audio, prog.options.sample_rate_hz))) as events:
            async for ev in events:
                run.events.append(ev)
                if (run is runs[0] and not failed.is_set() and isinstance(ev, ProgressEvent)
                        and ev.samples_final >= mark):
                    failed.set()
                    fail()

    async with AsyncClient(targets, resume=True) as client:
        # round_robin picks only among connected replicas: a burst of streams on a
        # channel just opened would all land on whichever connected first.
        seen: set[str] = set()
        for _ in range(100):
            seen.add((await client.get_capabilities(timeout=10)).instance_id)
            if len(seen) == len(targets):
                break
        assert len(seen) == len(targets), seen
        await asyncio.gather(*(one(r, client) for r in runs))
    assert failed.is_set()
    return runs


def check_cuts(runs: list[Run]) -> None:
    expected: list[Cut] = list(solo("speech"))
    for i, run in enumerate(runs):
        # Every cut once, at the solo run's sample, kind and index.
        assert cut_tuples(run.events) == expected, f"stream {i}"


def test_streams_spread_and_survive_a_sigkilled_replica() -> None:
    with replicas() as servers:
        victim = servers[0]
        runs = asyncio.run(stream_all([s.target for s in servers],
                                      lambda: os.kill(victim.pid, signal.SIGKILL), at=0.35))
        check_cuts(runs)
        started = [sessions_started(s) for s in servers]
        homes = [next(i for i, ss in enumerate(started) if r.first_session in ss)
                 for r in runs]
        # round_robin: every replica took some of the streams.
        assert sorted(set(homes)) == [0, 1, 2], homes
        for run, home in zip(runs, homes, strict=True):
            if home == 0:  # on the killed replica: moved once, finished elsewhere
                assert len(run.resumed) == 1 and run.finished_on != victim.pid
                assert run.resumed[0].reason != "the server is draining"  # no notice: killed
                assert run.resumed[0].resume_sample > 0  # cuts were past the warm-up
            else:  # the others never noticed
                assert not run.resumed and run.finished_on == servers[home].pid
        assert victim.proc.wait(5) == -signal.SIGKILL


def test_streams_survive_a_drained_replica() -> None:
    with replicas() as servers:
        victim = servers[1]
        runs = asyncio.run(stream_all([s.target for s in servers],
                                      lambda: victim.proc.send_signal(signal.SIGTERM), at=0.35))
        check_cuts(runs)
        on_victim = [r for r in runs if r.first_session in sessions_started(victim)]
        assert on_victim
        for run in on_victim:
            # The draining Notice moved it while its audio was still coming.
            assert [r.reason for r in run.resumed] == ["the server is draining"]
            assert run.finished_on != victim.pid
        assert victim.proc.wait(15) == 0  # drained: its streams left, it exited cleanly

