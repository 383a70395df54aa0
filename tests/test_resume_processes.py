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
import shutil
import signal
import subprocess
import time
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

from tests.helpers import Cut, cut_tuples, program, solo

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


async def stream_all(targets: list[str], fail: Callable[[], None], at: float,
                     options: tuple[tuple[str, int], ...] = ()) -> list[Run]:
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

    async with AsyncClient(targets, resume=True, options=options) as client:
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



# --- A real network cut -----------------------------------------------------------------

IDLE_S = 3.0  # the namespaced replica's idle limit: it must free a cut-off stream by then
# The client notices a silent connection by keepalive; 1 s pings need servers that
# allow them (server.min_ping_interval_ms).
FAST_PINGS = (("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 1000))
PING_ENV = {"SEAMCUT_SERVER_MIN_PING_INTERVAL_MS": "500"}


@dataclass
class Namespace:
    """A network namespace joined to this one by a veth pair: ``host_if`` here with
    ``host_ip``, the peer inside with ``inner_ip`` (a /30 of their own)."""

    name: str
    host_if: str
    host_ip: str
    inner_ip: str


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(("netns", "exec", ns, "ip") if ns else ()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode:
        raise OSError(f"{' '.join(cmd)}: {done.stderr.strip()}")


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to create a network namespace")
    tag = f"{os.getpid() % 100_000}"
    net = f"10.213.{os.getpid() % 250}"
    ns = Namespace(name=f"seamcut-t{tag}", host_if=f"sch{tag}", host_ip=f"{net}.1",
                   inner_ip=f"{net}.2")
    try:
        _ip("netns", "add", ns.name)
    except OSError as exc:
        pytest.skip(f"cannot create a network namespace here (needs root or "
                    f"CAP_SYS_ADMIN): {exc}")
    try:
        try:
            _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", f"scn{tag}")
            _ip("link", "set", f"scn{tag}", "netns", ns.name)
        except OSError as exc:
            pytest.skip(f"cannot join a network namespace by a veth pair here: {exc}")
        _ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
        _ip("link", "set", ns.host_if, "up")
        _ip("addr", "add", f"{ns.inner_ip}/30", "dev", f"scn{tag}", ns=ns.name)
        _ip("link", "set", f"scn{tag}", "up", ns=ns.name)
        _ip("link", "set", "lo", "up", ns=ns.name)
        yield ns
    finally:
        # Deleting the namespace deletes its end of the pair, and with it ours.
        with contextlib.suppress(OSError):
            _ip("netns", "del", ns.name)
        with contextlib.suppress(OSError):
            _ip("link", "del", ns.host_if)


def ended_lines(srv: LocalServer, session: str) -> list[str]:
    return [ln for ln in srv.log_path.read_text().splitlines()
            if session in ln and "started" not in ln]


def test_a_replica_cut_off_the_network_frees_its_stream_and_the_sdk_resumes(
        namespace: Namespace) -> None:
    inner = LocalServer(("--log-level", "DEBUG"), host=namespace.inner_ip,
                        prefix=("ip", "netns", "exec", namespace.name),
                        env={**PING_ENV, "SEAMCUT_SERVER_IDLE_TIMEOUT_S": str(IDLE_S)})
    try:
        with replicas(2, env=PING_ENV) as local:
            cut_at: list[float] = []

            def cut() -> None:
                _ip("link", "set", namespace.host_if, "down")
                cut_at.append(time.monotonic())

            servers = [inner, *local]
            runs = asyncio.run(stream_all([s.target for s in servers], cut, at=0.35,
                                          options=FAST_PINGS))
            check_cuts(runs)
            cut_off = [r for r in runs if r.first_session in sessions_started(inner)]
            assert cut_off, "no stream was on the namespaced replica"
            for run in cut_off:
                assert len(run.resumed) == 1 and run.finished_on != inner.pid
            # The server, which never heard from the client again, freed each stream
            # by its idle limit. The limit counts from the last audio it read (which
            # can trail the cut while it works off a backlog) and is checked on a
            # timer that, finding the stream busy, looks again one limit later: at
            # most twice the limit after the cut (measured: 5.4 s with a 3 s limit).
            freed: dict[str, float] = {}
            deadline = cut_at[0] + 2 * IDLE_S + 1
            while len(freed) < len(cut_off) and time.monotonic() < deadline:
                for run in cut_off:
                    if run.first_session not in freed and ended_lines(inner, run.first_session):
                        freed[run.first_session] = time.monotonic() - cut_at[0]
                time.sleep(0.05)
            assert len(freed) == len(cut_off), inner.log_path.read_text()[-3000:]
            lines = [ln for r in cut_off for ln in ended_lines(inner, r.first_session)]
            assert all("DEADLINE_EXCEEDED" in ln and "idle_timeout_s" in ln for ln in lines), lines
    finally:
        inner.stop()
        inner.log_path.unlink(missing_ok=True)
