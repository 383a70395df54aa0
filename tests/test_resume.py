"""Resume after Ready (client/resume.py) on real in-process servers: the property that
matters, a stream whose replica is killed or drained at any point, with any message
slicing, ends on another replica with exactly the cuts of an uninterrupted run, from
the newest checkpoint; and the limits (another config, resumes in a row, a whole-file
block, the replay bound, finish_on_drain). The pure state (buffer, filter) is tested
in tests/test_replay.py, resume tokens on the server in tests/test_checkpoint.py, the
three-process SIGKILL, drain and network-namespace tests in
tests/test_resume_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from seamcut.client import (
    AsyncClient,
    CheckpointEvent,
    Client,
    CutEvent,
    Event,
    InvalidOptions,
    NoticeEvent,
    ProgressEvent,
    ReadyEvent,
    ResumedEvent,
    SeamcutRpcError,
    StreamOptions,
    SummaryEvent,
)
from seamcut.client.errors import rpc_error
from seamcut.client.resume import resume_stream, retry_delay
from seamcut.client.split import _drained_early

from tests.corpus import default_corpus
from tests.helpers import (
    Cut,
    Program,
    ServerThread,
    check_watermarks,
    cut_tuples,
    expected_restart,
    program,
    serving,
    solo,
)


@pytest.mark.integration
def test_resumable_stream_without_a_failure_equals_solo(server: ServerThread) -> None:
    clip = default_corpus()[0]
    audio = clip.audio[:, 0]
    opts = StreamOptions(sample_rate_hz=clip.sample_rate_hz, chunk_traces=False)
    blocks = [audio[i:i + 7000] for i in range(0, len(audio), 7000)]

    def run(resume: bool) -> list[int]:
        with Client(server.target, resume=resume) as c:
            evs = list(c.stream_cuts(opts, iter(blocks)))
        assert isinstance(evs[0], ReadyEvent)
        # The checkpoints the SDK asked for itself are its own business.
        assert not [e for e in evs if isinstance(e, CheckpointEvent)]
        return [e.sample for e in evs if isinstance(e, CutEvent)]

    solo = run(False)
    assert solo and run(True) == solo
    assert np.all(np.diff(solo) > 0)


# --- Resume under real failures: the property -----------------------------------------

def paced(prog: Program, sizes: list[int]) -> Iterator[np.ndarray]:
    pos, i = 0, 0
    while pos < len(prog.audio):
        n = sizes[i % len(sizes)]
        yield prog.audio[pos:pos + n]
        time.sleep(n / prog.options.sample_rate_hz / prog.pace)
        pos, i = pos + n, i + 1


def holder(servers: list[ServerThread]) -> ServerThread:
    """The replica the stream is on (fresh servers: the only one that opened one)."""
    (srv,) = [s for s in servers if s.running.servicer.counters.sessions_total]
    return srv


def run_killed(prog: Program, kill_at: float, abrupt: bool,
               sizes: list[int]) -> tuple[list[Event], ServerThread, ServerThread]:
    """Stream ``prog`` over two fresh replicas with resume on, and when the server has
    made the audio up to ``kill_at`` (fraction) final, take away the replica the
    stream is on: ``abrupt`` stops its transport with no notice (as a dead process),
    otherwise it drains with no grace (a draining Notice, then UNAVAILABLE)."""
    mark = int(kill_at * len(prog.audio))
    events: list[Event] = []
    with serving() as a, serving() as b, Client([a.target, b.target], resume=True) as client:
        victim: ServerThread | None = None
        for ev in client.stream_cuts(prog.options, paced(prog, sizes)):
            events.append(ev)
            if victim is None and isinstance(ev, ProgressEvent) and ev.samples_final >= mark:
                victim = holder([a, b])
                # The kill must reach a stream still open (kill_at <= 0.9 and the pace
                # leave it seconds of audio to go), or the test proves nothing.
                assert victim.running.resources().sessions_open == 1
                if abrupt:
                    victim.kill()
                else:
                    victim.call(victim.running.stop(0))
        assert victim is not None, "no Progress reached the kill point"
        survivor = b if victim is a else a
        return events, victim, survivor


def check_resumed(name: str, events: list[Event], survivor: ServerThread) -> None:
    expected = list(solo(name))
    got = cut_tuples(events)
    # Each cut once, at the uninterrupted run's sample, of its kind, with its index:
    # a lost, repeated or shifted cut, or a gap in the count, fails here.
    assert got == expected, f"\n  solo   {expected}\n  resumed {got}"
    resumed = [e for e in events if isinstance(e, ResumedEvent)]
    assert resumed, "the stream was never resumed: the kill did not reach it"
    assert survivor.running.servicer.counters.sessions_total >= 1
    assert isinstance(events[-1], SummaryEvent) and events[-1].end_reason == "completed"
    check_watermarks(events)


message_sizes = st.lists(st.one_of(st.integers(1, 2_000), st.integers(2_000, 150_000)),
                         min_size=1, max_size=6).map(lambda xs: [*xs, 48_000])


@pytest.mark.integration
@settings(max_examples=12, deadline=None, derandomize=True,
          phases=(Phase.explicit, Phase.generate),  # no shrinking: each example streams
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["speech", "speech_forced"]), kill_at=st.floats(0.0, 0.9),
       abrupt=st.booleans(), sizes=message_sizes)
@example(name="speech_forced", kill_at=0.8, abrupt=True, sizes=[1, 48_000])
def test_a_killed_replica_resumes_with_the_solo_cuts_speech(
        name: str, kill_at: float, abrupt: bool, sizes: list[int]) -> None:
    events, _, survivor = run_killed(program(name), kill_at, abrupt, sizes)
    check_resumed(name, events, survivor)
    (first, *_) = [e for e in events if isinstance(e, ResumedEvent)]
    # The newest checkpoint's resume_from (or the start).
    assert first.resume_sample == expected_restart(events)


@pytest.mark.integration
@settings(max_examples=4, deadline=None, derandomize=True,
          phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.too_slow])
@given(kill_at=st.floats(0.3, 0.9), abrupt=st.booleans(), sizes=message_sizes)
def test_a_killed_replica_resumes_with_the_solo_cuts_song(
        kill_at: float, abrupt: bool, sizes: list[int]) -> None:
    """SONG with separation resumes from its newest checkpoint too (re-analysis from a
    later point did not converge on music: docs/DESIGN.md)."""
    events, _, survivor = run_killed(program("song"), kill_at, abrupt, sizes)
    check_resumed("song", events, survivor)
    (first, *_) = [e for e in events if isinstance(e, ResumedEvent)]
    assert first.resume_sample == expected_restart(events) > 0


@pytest.mark.unit
def test_resume_is_on_by_default_with_several_replicas() -> None:
    assert AsyncClient(["127.0.0.1:1", "127.0.0.1:2"]).resume
    assert AsyncClient("dns:///seamcut.example:50051").resume  # any number of records
    assert not AsyncClient("127.0.0.1:1").resume
    assert not AsyncClient(["127.0.0.1:1", "127.0.0.1:2"], resume=False).resume
    assert AsyncClient("127.0.0.1:1", resume=True).resume  # one name behind a balancer


@pytest.mark.unit
def test_a_stream_refused_before_ready_by_a_server_going_away_is_retried() -> None:
    def refused(code: grpc.StatusCode) -> SeamcutRpcError:
        return rpc_error(code, "refused", (), answered=True)

    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                 grpc.StatusCode.CANCELLED):  # the last: reset by a server stopping
        assert retry_delay(refused(code), 0, 2) == 0.05
    assert retry_delay(refused(grpc.StatusCode.CANCELLED), 2, 2) is None  # retries spent
    assert retry_delay(refused(grpc.StatusCode.INVALID_ARGUMENT), 0, 2) is None


@pytest.mark.unit
def test_max_replay_s_is_validated_and_zero_turns_resume_off() -> None:
    assert AsyncClient(["127.0.0.1:1", "127.0.0.1:2"]).max_replay_s == 120.0
    assert not AsyncClient(["127.0.0.1:1", "127.0.0.1:2"], max_replay_s=0).resume
    assert AsyncClient(["127.0.0.1:1", "127.0.0.1:2"], max_replay_s=45).max_replay_s == 45.0
    with pytest.raises(InvalidOptions, match="resume=True needs max_replay_s > 0"):
        AsyncClient("127.0.0.1:1", resume=True, max_replay_s=0)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(InvalidOptions, match="max_replay_s"):
            AsyncClient(["127.0.0.1:1", "127.0.0.1:2"], max_replay_s=bad)


@pytest.mark.unit
def test_split_counts_a_drain_the_stream_moved_away_from_as_complete() -> None:
    notice = NoticeEvent(code="draining", message="10 s")
    summary = SummaryEvent(end_reason="completed", samples_received=500, samples_processed=500,
                           chunks=1, blocks=1, cuts=1, vad_segments=0, wall_seconds=1.0)
    moved = ResumedEvent(session_id="b", previous_session_id="a", resume_sample=0,
                         replayed_frames=0, reason="the server is draining", resumes=1)
    assert _drained_early([notice, summary], 1000) is not None  # stayed: incomplete
    assert _drained_early([notice, moved, summary], 1000) is None


async def paced_async(prog: Program) -> AsyncIterator[np.ndarray]:
    step = prog.options.sample_rate_hz // 5
    for i in range(0, len(prog.audio), step):
        await asyncio.sleep(step / prog.options.sample_rate_hz / prog.pace)
        yield prog.audio[i:i + step]


class Killer:
    """Kills the replica a stream is on (of ``servers``), each once."""

    def __init__(self, servers: list[ServerThread]) -> None:
        self.servers = servers
        self.dead: list[ServerThread] = []

    def when_final(self, ev: Event, mark: int) -> bool:
        """Kill the replica holding the stream once ``ev`` says the audio up to ``mark``
        is final; whether it did."""
        if not (isinstance(ev, ProgressEvent) and ev.samples_final >= mark):
            return False
        (srv,) = [s for s in self.servers
                  if s not in self.dead and s.running.resources().sessions_open]
        srv.kill()
        self.dead.append(srv)
        return True


@pytest.mark.integration
def test_a_replica_with_other_policy_defaults_is_not_resumed_on() -> None:
    """A replica whose effective config differs (here its default min_pause_ms, as
    during a rolling deploy of a new config) would cut elsewhere, and refuses the
    resume token: the stream ends with the error it lost its replica with and why it
    was not resumed."""
    prog = program("speech")
    events: list[Event] = []
    with serving() as a, serving(policy={"min_pause_ms": 250}) as b, \
            Client([a.target, b.target]) as client, pytest.raises(SeamcutRpcError) as err:
        killer = Killer([a, b])
        for ev in client.stream_cuts(prog.options, paced(prog, [9600])):
            events.append(ev)
            if not killer.dead:
                killer.when_final(ev, len(prog.audio) // 3)
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert ("(not resumed: INVALID_ARGUMENT: config.resume_token: made by another server "
            "version or for another config") in err.value.details, err.value.details
    assert not [e for e in events if isinstance(e, ResumedEvent)]


@pytest.mark.integration
def test_resumes_are_limited_in_a_row_not_over_the_streams_life() -> None:
    """With one resume allowed, a stream whose replica is lost twice, with cuts
    delivered in between, still ends with the solo cuts (a long stream outlives any
    number of rolling deploys)."""
    prog = program("speech")
    second = len(prog.audio) * 2 // 3

    async def main(servers: list[ServerThread]) -> list[Event]:
        events: list[Event] = []
        client = AsyncClient([s.target for s in servers])
        killer = Killer(servers)
        async with client, contextlib.aclosing(resume_stream(
                client, prog.options, paced_async(prog), ready_timeout=30,
                max_resumes=1)) as stream:
            async for ev in stream:
                events.append(ev)
                if not killer.dead:
                    killer.when_final(ev, len(prog.audio) // 3)
                elif len(killer.dead) == 1:
                    killer.when_final(ev, second)
        return events

    with serving() as a, serving() as b, serving() as c:
        events = asyncio.run(main([a, b, c]))
    assert cut_tuples(events) == list(solo("speech"))
    moves = [i for i, e in enumerate(events) if isinstance(e, ResumedEvent)]
    assert [events[i].resumes for i in moves] == [1, 2]  # type: ignore[union-attr]
    assert any(isinstance(e, CutEvent) for e in events[moves[0]:moves[1]])
    check_watermarks(events)


@pytest.mark.integration
def test_a_whole_file_block_stays_resumable() -> None:
    """One 175 s block, longer than the 120 s replay buffer: sent and buffered a second
    at a time (the sender runs up to ~36 s ahead of the final watermark here), the
    buffer keeps the restart point while the server works; whole, the block overflowed
    the buffer at once and a lost replica ended the stream."""
    prog = program("speech_long")
    events: list[Event] = []
    with serving() as a, serving() as b, \
            Client([a.target, b.target]) as client:
        killer = Killer([a, b])
        for ev in client.stream_cuts(prog.options, [prog.audio]):
            events.append(ev)
            if not killer.dead:
                killer.when_final(ev, 25 * 48_000)
    assert killer.dead
    (moved,) = [e for e in events if isinstance(e, ResumedEvent)]
    assert moved.resume_sample == expected_restart(events)
    assert cut_tuples(events) == list(solo("speech_long"))


@pytest.mark.integration
def test_the_error_of_a_resume_that_fails_keeps_the_lost_streams_session_id() -> None:
    """``finish_on_drain=False``: the stream stays through the draining notice until
    the server ends it (UNAVAILABLE, with its session id), then resumes; where the
    other replica cannot take it (other policy defaults: the token is refused) the
    stream ends with that error, its session id, and why."""
    prog = program("speech")
    kill_on = list(solo("speech"))[7][0]

    async def main(a: ServerThread, b: ServerThread) -> tuple[list[Event], SeamcutRpcError]:
        events: list[Event] = []
        client = AsyncClient([a.target, b.target])
        async with client, contextlib.aclosing(resume_stream(
                client, prog.options, paced_async(prog), ready_timeout=30,
                on_drain="stay")) as stream:
            try:
                async for ev in stream:
                    events.append(ev)
                    if isinstance(ev, CutEvent) and ev.sample == kill_on:
                        (srv,) = [s for s in (a, b) if s.running.resources().sessions_open]
                        asyncio.run_coroutine_threadsafe(srv.running.stop(0), srv.loop)
            except SeamcutRpcError as exc:
                return events, exc
        raise AssertionError("the stream did not fail")

    with serving() as a, serving(policy={"min_pause_ms": 250}) as b:
        events, err = asyncio.run(main(a, b))
    ready = events[0]
    assert isinstance(ready, ReadyEvent)
    assert [e.code for e in events if isinstance(e, NoticeEvent)] == ["draining"]
    assert not [e for e in events if isinstance(e, ResumedEvent)]
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert "(not resumed: INVALID_ARGUMENT: config.resume_token" in err.details, err.details
    assert err.session_id == ready.session_id


def drained_at_a_third(servers: list[ServerThread], prog: Program,
                       finish_on_drain: bool | None) -> tuple[list[Event], ServerThread]:
    """The events of a stream of ``prog`` whose replica (of ``servers``) is drained, with
    10 s of grace, once a third of the audio is final; and that replica."""
    events: list[Event] = []
    drained = None
    with Client([s.target for s in servers]) as client:
        for ev in client.stream_cuts(prog.options, paced(prog, [9600]),
                                     finish_on_drain=finish_on_drain):
            events.append(ev)
            if drained is None and isinstance(ev, ProgressEvent) \
                    and ev.samples_final >= len(prog.audio) // 3:
                srv = holder(servers)
                drained = asyncio.run_coroutine_threadsafe(srv.running.stop(10), srv.loop)
    assert drained is not None
    drained.result(15)
    return events, srv


def check_finished_where_it_was(events: list[Event], prog: Program,
                                reference: Sequence[Cut]) -> None:
    """No move; the stream completed with an END cut before the end of the audio, and
    its cuts of the audio final before the drain are ``reference``'s."""
    assert not [e for e in events if isinstance(e, ResumedEvent)]
    summary = events[-1]
    assert isinstance(summary, SummaryEvent) and summary.end_reason == "completed"
    cuts = cut_tuples(events)
    assert cuts[-1][1] == "end" and summary.samples_received < len(prog.audio)
    mark = len(prog.audio) // 3
    assert [c for c in cuts if c[0] <= mark] == [c for c in reference if c[0] <= mark]


@pytest.mark.integration
def test_finish_on_drain_with_resume_finishes_where_it_is() -> None:
    """``finish_on_drain=True`` with resume on: the draining notice half-closes the
    stream on its replica (the cuts of what was sent still come), no move."""
    prog = program("speech")
    with serving() as a, serving() as b:
        events, _ = drained_at_a_third([a, b], prog, finish_on_drain=True)
    check_finished_where_it_was(events, prog, solo("speech"))


@pytest.mark.integration
def test_a_drained_stream_finishes_where_it_is_when_the_next_replica_differs() -> None:
    """A drain with resume on (a drained stream moves), where the only other replica has
    other policy defaults (a rolling deploy of a new config): the SDK opens the next
    stream, sees its Ready differ, and the stream finishes on the draining replica with
    no error and no move, the cuts of what it was sent as an uninterrupted run's."""
    prog = program("speech")
    other_policy = {"min_pause_ms": 250}
    with serving() as a, serving(policy=other_policy) as b:
        events, srv = drained_at_a_third([a, b], prog, finish_on_drain=None)
        other = b if srv is a else a
        assert other.running.servicer.counters.sessions_total == 1  # the probe: it looked
    with serving(policy=other_policy if srv is b else {}) as alone, \
            Client(alone.target) as client:
        reference = cut_tuples(list(client.stream_cuts(prog.options, [prog.audio])))
    check_finished_where_it_was(events, prog, reference)


@pytest.mark.integration
def test_a_stream_past_its_replay_bound_says_why_it_is_not_resumed() -> None:
    """A replay buffer (1 s here) shorter than a checkpoint's pre-roll no longer holds
    the newest checkpoint's resume_from: a lost replica ends the stream with the real
    reason."""
    prog = program("song")

    async def main(a: ServerThread, b: ServerThread) -> SeamcutRpcError:
        client = AsyncClient([a.target, b.target])
        async with client, contextlib.aclosing(resume_stream(
                client, prog.options, paced_async(prog), ready_timeout=30,
                max_replay_s=1)) as stream:
            killer = Killer([a, b])
            try:
                async for ev in stream:
                    if not killer.dead:
                        killer.when_final(ev, 10 * 44_100)
            except SeamcutRpcError as exc:
                return exc
        raise AssertionError("the stream did not fail")

    with serving() as a, serving() as b:
        err = asyncio.run(main(a, b))
    assert re.search(r"\(not resumed: its restart point, frame \d+ \(the server's newest "
                     r"checkpoint\), is no longer in the replay buffer, which holds the last "
                     r"1 s sent", err.details), err.details
