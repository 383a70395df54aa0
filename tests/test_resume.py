"""Resume after Ready (client/resume.py): the replay buffer, the restart grid and the
filter that keeps delivered events from repeating; and, on real servers, the property
that matters: a stream whose replica is killed or drained at any point, with any
message slicing, ends on another replica with exactly the cuts of an uninterrupted
run. The three-process SIGKILL, drain and network-namespace tests are in
tests/test_resume_processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from seamcut.client import (
    AsyncClient,
    Client,
    CutEvent,
    Event,
    NoticeEvent,
    ProgressEvent,
    ReadyEvent,
    ResumedEvent,
    StreamOptions,
    SummaryEvent,
)
from seamcut.client.resume import Delivered, Desync, ReplayBuffer, grid_frames, resume_stream
from seamcut.client.split import _drained_early

from tests.corpus import default_corpus
from tests.helpers import ServerThread, serving
from tests.song_corpus import default_song_corpus


@pytest.mark.unit
def test_grid_is_whole_blocks_in_client_frames() -> None:
    assert grid_frames(320, 16_000) == 5120
    assert grid_frames(320, 44_100) == 14_112
    assert grid_frames(160, 8_000) == 1280
    g = grid_frames(320, 44_101)  # an odd rate: the first whole number of both
    assert g * 16_000 % (5120 * 44_101) == 0


@pytest.mark.unit
def test_replay_buffer_trims_and_overflows() -> None:
    buf = ReplayBuffer(100, 2, max_frames=10)
    buf.append(bytes(range(12)))  # frames 100..105
    assert (buf.base, buf.end) == (100, 106) and buf.exact
    buf.trim(103)
    assert buf.since(103) == bytes(range(6, 12))
    with pytest.raises(ValueError):
        buf.since(102)
    buf.append(bytes(16))  # 11 frames now: over the cap
    assert not buf.exact and buf.end - buf.base == 10


@pytest.mark.unit
def test_delivered_drops_repeats_and_renumbers_cuts() -> None:
    seen = Delivered()

    def cut(sample: int, index: int) -> CutEvent:
        return CutEvent(sample=sample, seconds=0.0, kind="pause", score=1.0,
                        pause_start_sample=sample, pause_end_sample=sample, index=index)

    first = [seen.admit(cut(s, i)) for i, s in enumerate((10, 20))]
    again = [seen.admit(cut(s, i)) for i, s in enumerate((20, 30))]  # a resumed stream
    assert [c.index for c in first if c] == [0, 1]
    assert again[0] is None and isinstance(again[1], CutEvent) and again[1].index == 2


@pytest.mark.unit
def test_a_resumed_stream_must_find_the_last_delivered_cut_again() -> None:
    def cut(sample: int, kind: str = "pause") -> CutEvent:
        return CutEvent(sample=sample, seconds=0.0, kind=kind, score=1.0,  # type: ignore[arg-type]
                        pause_start_sample=sample, pause_end_sample=sample, index=0)

    seen = Delivered()
    assert seen.admit(cut(100)) is not None
    seen.expect_last_cut()
    assert seen.admit(cut(40)) is None and seen.admit(cut(100)) is None  # re-found
    assert seen.admit(cut(180)) is not None
    seen.expect_last_cut()
    # Past the last cut without it (its policy state differs: the next cuts may too).
    with pytest.raises(Desync, match="pause at sample 180"):
        seen.admit(cut(200))
    seen.expect_last_cut()
    with pytest.raises(Desync):  # the same sample but another kind is another decision
        seen.admit(cut(180, "forced")) or seen.admit(cut(190))


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
        return [e.sample for e in evs if isinstance(e, CutEvent)]

    solo = run(False)
    assert solo and run(True) == solo
    assert np.all(np.diff(solo) > 0)


# --- Resume under real failures: the property -----------------------------------------

@dataclass(frozen=True)
class Program:
    """A long clip (several corpus clips end to end, so that cuts lie further than the
    warm-up from the start) and the options it is streamed with."""

    name: str
    audio: np.ndarray
    options: StreamOptions
    pace: float  # audio seconds sent per wall second, so kills land while audio flows


@functools.cache
def program(name: str) -> Program:
    if name.startswith("speech"):
        clips = {c.name: c for c in default_corpus()}
        audio = np.concatenate([clips[n].audio[:, :1] for n in SPEECH_CLIPS])
        # max_segment 3 s: FORCED cuts between the pauses, whose chain counts from the
        # last cut (the policy state a resume must reproduce).
        policy = {"max_segment_ms": 3000} if name == "speech_forced" else {}
        return Program(name, audio, StreamOptions(
            sample_rate_hz=48_000, chunk_traces=False, **policy), pace=20.0)  # type: ignore[arg-type]
    songs = {c.name: c for c in default_song_corpus()}
    return Program(name, np.concatenate([songs[n].mix for n in SONG_CLIPS]), StreamOptions(
        sample_rate_hz=44_100, channels=2, mode="song", chunk_traces=False), pace=20.0)


SPEECH_CLIPS = ("en_us_f5_snr10", "de_m3_clean", "pt_m5_clean")  # 48 kHz, 35 s
SONG_CLIPS = ("strings_reverb_44k", "organ_44k")  # 44.1 kHz, 26 s
Cut = tuple[int, str, int]


def cut_tuples(events: list[Event]) -> list[Cut]:
    return [(e.sample, e.kind, e.index) for e in events if isinstance(e, CutEvent)]


@functools.cache
def solo(name: str) -> tuple[Cut, ...]:
    """The uninterrupted run, on a server of its own (no resume involved)."""
    prog = program(name)
    with serving() as srv, Client(srv.target) as client:
        return tuple(cut_tuples(list(client.stream_cuts(prog.options, [prog.audio]))))


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
    if kill_at >= 0.6:  # cuts delivered past 20 s: a restart on the grid, not the start
        assert first.resume_sample > 0 and first.resume_sample % grid_frames(320, 48_000) == 0


@pytest.mark.integration
@settings(max_examples=3, deadline=None, derandomize=True,
          phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.too_slow])
@given(kill_at=st.floats(0.3, 0.9), abrupt=st.booleans(), sizes=message_sizes)
def test_a_killed_replica_resumes_with_the_solo_cuts_song(
        kill_at: float, abrupt: bool, sizes: list[int]) -> None:
    """SONG resumes from the stream's first sample (client/resume.py, restart_grid:
    a restart on the block grid, even with a 960 ms separation hop, moved cuts)."""
    events, _, survivor = run_killed(program("song"), kill_at, abrupt, sizes)
    check_resumed("song", events, survivor)
    assert all(e.resume_sample == 0 for e in events if isinstance(e, ResumedEvent))


@pytest.mark.unit
def test_resume_is_on_by_default_with_several_replicas() -> None:
    assert AsyncClient(["127.0.0.1:1", "127.0.0.1:2"]).resume
    assert AsyncClient("dns:///seamcut.example:50051").resume  # any number of records
    assert not AsyncClient("127.0.0.1:1").resume
    assert not AsyncClient(["127.0.0.1:1", "127.0.0.1:2"], resume=False).resume
    assert AsyncClient("127.0.0.1:1", resume=True).resume  # one name behind a balancer


@pytest.mark.unit
def test_split_counts_a_drain_the_stream_moved_away_from_as_complete() -> None:
    notice = NoticeEvent(code="draining", message="10 s")
    summary = SummaryEvent(end_reason="completed", samples_received=500, samples_processed=500,
                           chunks=1, blocks=1, cuts=1, vad_segments=0, wall_seconds=1.0)
    moved = ResumedEvent(session_id="b", previous_session_id="a", resume_sample=0,
                         replayed_frames=0, reason="the server is draining", resumes=1)
    assert _drained_early([notice, summary], 1000) is not None  # stayed: incomplete
    assert _drained_early([notice, moved, summary], 1000) is None


@pytest.mark.integration
def test_a_resume_that_does_not_refind_the_last_cut_is_retried_from_further_back() -> None:
    """With no warm-up the new stream starts inside the last delivered cut's pause,
    with no speech before it, so it cannot find that cut again: the resume is dropped
    and retried with the next warm-up, which does, and the cuts are the solo run's."""
    prog = program("speech")
    expected = list(solo("speech"))
    kill_on = expected[7][0]  # a cut 20 s in: the 10 s warm-up starts after the origin

    async def main(a: ServerThread, b: ServerThread) -> list[Event]:
        events: list[Event] = []
        client = AsyncClient([a.target, b.target])
        async with client, contextlib.aclosing(resume_stream(
                client, prog.options, paced_async(prog), ready_timeout=30,
                warmups_s=(0.0, 10.0))) as stream:
            async for ev in stream:
                events.append(ev)
                if isinstance(ev, CutEvent) and ev.sample == kill_on:
                    holder([a, b]).kill()
        return events

    with serving() as a, serving() as b:
        events = asyncio.run(main(a, b))
    assert cut_tuples(events) == expected
    first, second = [e for e in events if isinstance(e, ResumedEvent)]
    grid = grid_frames(320, 48_000)
    assert first.resume_sample == kill_on // grid * grid  # no warm-up
    assert "did not find the last delivered cut again" in second.reason
    assert second.resume_sample == (kill_on - 10 * 48_000) // grid * grid


async def paced_async(prog: Program) -> AsyncIterator[np.ndarray]:
    step = prog.options.sample_rate_hz // 5
    for i in range(0, len(prog.audio), step):
        await asyncio.sleep(step / prog.options.sample_rate_hz / prog.pace)
        yield prog.audio[i:i + step]
