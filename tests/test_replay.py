"""The pure state behind a resume (client/replay.py): the restart grid, the replay
buffer and its bound, the check of a resumed stream's Ready, and the filter that keeps
delivered events (cuts, watermarks) from repeating or being contradicted. The resume
loop on real servers is tested in tests/test_resume.py.
"""

from __future__ import annotations

import dataclasses

import pytest
from seamcut.client import (
    CutEvent,
    FlushedEvent,
    ProgressEvent,
    ReadyEvent,
    StreamOptions,
)
from seamcut.client.replay import (
    Delivered,
    Desync,
    ReplayBuffer,
    grid_frames,
    ready_mismatch,
    restart_point,
)


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
    assert (buf.base, buf.end) == (100, 106) and buf.reaches(100)
    buf.trim(103)
    assert buf.since(103) == bytes(range(6, 12)) and not buf.reaches(102)
    with pytest.raises(ValueError):
        buf.since(102)
    buf.append(bytes(16))  # 11 frames now: over the cap, the oldest go
    assert (buf.base, buf.end) == (104, 114) and buf.reaches(104)


@pytest.mark.unit
def test_the_restart_point_is_checked_against_what_the_buffer_still_holds() -> None:
    """The bound is the restart point, not the buffer's age: with 120 s kept and the
    last cut 100 s back, the point 10 s before that cut is still there (a flag set
    when the buffer first dropped audio said no once it ran 90 s past the cut)."""
    rate, grid = 1000, 320
    buf = ReplayBuffer(0, 2, max_frames=120 * rate)
    cut = 40 * rate
    buf.append(bytes(2 * (cut + 1)))
    buf.trim(restart_point(cut, 0, 30 * rate, grid))
    buf.append(bytes(2 * 100 * rate))  # 100 s with no cut: the oldest audio goes
    assert buf.base > restart_point(cut, 0, 30 * rate, grid)
    assert buf.reaches(restart_point(cut, 0, 10 * rate, grid))
    buf.append(bytes(2 * 15 * rate))  # 115 s: now past it
    assert not buf.reaches(restart_point(cut, 0, 10 * rate, grid))


@pytest.mark.unit
def test_an_anchored_buffer_is_freed_once_it_cannot_reach_its_first_frame() -> None:
    """A SONG stream with separation resumes only from its first frame: past the bound
    the buffer would only cost memory."""
    buf = ReplayBuffer(500, 4, max_frames=10)
    buf.anchor()
    buf.append(bytes(4 * 10))
    assert buf.reaches(500) and buf.since(500) == bytes(40)
    buf.append(bytes(4))
    assert buf.spent and not buf.reaches(500) and buf.end == 511
    buf.append(bytes(400))
    assert buf.spent and len(buf._data) == 0 and buf.end == 611


@pytest.mark.unit
def test_a_resumed_stream_on_another_version_or_config_is_a_mismatch() -> None:
    opts = StreamOptions(sample_rate_hz=48_000, mode="speech", min_pause_ms=300)

    def ready(version: str = "1.2", block_ms: int = 320, **cfg: int) -> ReadyEvent:
        return ReadyEvent(session_id="s", lookahead_ms=0, lookahead_samples=0,
                          block_ms=block_ms, device="cpu", server_version=version,
                          config=dataclasses.replace(opts, **cfg))  # type: ignore[arg-type]

    first = ready()
    assert ready_mismatch(first, ready(start_sample=96_000)) == ""  # the restart point
    assert ready_mismatch(first, ready("1.3")) == "server 1.3 (the stream began on 1.2)"
    assert ready_mismatch(first, ready(block_ms=160)) == "block_ms 160 (not 320)"
    assert ready_mismatch(first, ready(min_pause_ms=250)) == "config min_pause_ms 250 (not 300)"


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


@pytest.mark.unit
def test_watermarks_wait_for_the_resumed_stream_to_refind_the_last_cut() -> None:
    """A resumed stream's samples_final promises no cut before it; until the stream has
    re-found the last delivered cut it may be off course (and dropped), so its Progress
    is held back; the delivered samples_final never goes back, and a cut before it is
    a Desync."""
    def cut(sample: int) -> CutEvent:
        return CutEvent(sample=sample, seconds=0.0, kind="pause", score=1.0,
                        pause_start_sample=sample, pause_end_sample=sample, index=0)

    def progress(processed: int, final: int) -> ProgressEvent:
        return ProgressEvent(samples_received=processed, samples_processed=processed,
                             samples_final=final, last_seq=0)

    def flushed(final: int) -> FlushedEvent:
        return FlushedEvent(flush_id=1, progress=progress(final, final))

    seen = Delivered()
    assert seen.admit(cut(100)) is not None and seen.admit(progress(300, 250)) is not None
    seen.expect_last_cut()
    assert seen.admit(progress(400, 390)) is None  # not yet re-found: off course, maybe
    assert seen.admit(flushed(390)) is None
    assert seen.admit(cut(100)) is None  # re-found
    late = seen.admit(progress(320, 200))
    assert isinstance(late, ProgressEvent) and late.samples_final == 250  # never back
    fl = seen.admit(flushed(240))
    assert isinstance(fl, FlushedEvent) and fl.progress.samples_final == 250
    with pytest.raises(Desync, match="before samples_final 250"):
        seen.admit(cut(200))
    assert seen.admit(cut(250)) is not None  # at the watermark: allowed
