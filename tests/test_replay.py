"""The pure state behind a resume (client/replay.py): the replay buffer and its bound,
the check of a resumed stream's Ready, and the filter that keeps delivered events
(cuts, watermarks) from repeating or being contradicted. The resume loop on real
servers is tested in tests/test_resume.py.
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
from seamcut.client.replay import Delivered, Desync, ReplayBuffer, ready_mismatch


def cut(sample: int, index: int, kind: str = "pause") -> CutEvent:
    return CutEvent(sample=sample, seconds=0.0, kind=kind, score=1.0,  # type: ignore[arg-type]
                    pause_start_sample=sample, pause_end_sample=sample, index=index)


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
    """A checkpoint trims the buffer to its resume_from; audio sent since then is kept
    up to the bound, and past it the restart point is gone."""
    rate = 1000
    buf = ReplayBuffer(0, 2, max_frames=120 * rate)
    buf.append(bytes(2 * 40 * rate))
    buf.trim(37 * rate)  # a checkpoint at 40 s, its resume_from 3 s before
    assert buf.base == 37 * rate and buf.reaches(37 * rate) and not buf.reaches(36 * rate)
    buf.append(bytes(2 * 115 * rate))  # no checkpoint since (the analysis fell behind)
    assert buf.reaches(37 * rate)
    buf.append(bytes(2 * 6 * rate))  # 121 s: now past it
    assert not buf.reaches(37 * rate)


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
def test_a_resumed_stream_repeats_the_cuts_after_its_checkpoint_first() -> None:
    """Resumed from a checkpoint after 1 cut, the stream makes cuts 1 and 2 again: they
    are dropped, and cut 3 is new."""
    seen = Delivered()
    assert [seen.admit(cut(s, i)) for i, s in enumerate((10, 20))] == [cut(10, 0), cut(20, 1)]
    seen.checkpoint(1)
    assert seen.admit(cut(30, 2)) == cut(30, 2)
    seen.resumed(1)
    assert seen.catching_up
    assert seen.admit(cut(20, 1)) is None and seen.admit(cut(30, 2)) is None
    assert not seen.catching_up and seen.admit(cut(40, 3)) == cut(40, 3)
    assert seen.cuts == 4
    # No checkpoint yet: the stream restarts at its first sample and makes every cut
    # again (indexes from the first stream's first, 5 with a token of the application).
    seen = Delivered()
    assert seen.admit(cut(10, 5)) is not None
    seen.resumed(None)
    assert seen.admit(cut(10, 5)) is None and seen.admit(cut(20, 6)) == cut(20, 6)


@pytest.mark.unit
def test_a_resumed_stream_whose_repeats_differ_is_a_desync() -> None:
    def resumed() -> Delivered:
        seen = Delivered()
        for i, s in enumerate((100, 180)):
            seen.admit(cut(s, i))
        seen.resumed(0)
        return seen

    with pytest.raises(Desync, match="cut 1 is pause at sample 190, not the delivered one "
                                     r"\(pause at sample 180\)"):
        seen = resumed()
        seen.admit(cut(100, 0)) or seen.admit(cut(190, 1))
    with pytest.raises(Desync, match="forced"):  # the same sample, another decision
        resumed().admit(cut(100, 0, "forced"))
    with pytest.raises(Desync, match="skips cut 1"):  # a repeat missing
        seen = resumed()
        seen.admit(cut(100, 0)) or seen.admit(cut(250, 2))
    with pytest.raises(Desync, match="is not cut 2, the next one"):  # past the next
        seen = resumed()
        seen.admit(cut(100, 0)) or seen.admit(cut(180, 1)) or seen.admit(cut(300, 3))
    seen = Delivered()
    seen.admit(cut(5, 0))
    seen.checkpoint(1)
    with pytest.raises(ValueError, match="before the checkpoint"):
        seen.resumed(0)


@pytest.mark.unit
def test_watermarks_wait_for_the_resumed_stream_to_repeat_its_cuts() -> None:
    """A resumed stream's samples_final promises no cut before it; until the stream has
    repeated the delivered cuts after its checkpoint it may be off course, so its
    Progress is held back; the delivered samples_final never goes back, and a cut
    before it is a Desync."""
    def progress(processed: int, final: int) -> ProgressEvent:
        return ProgressEvent(samples_received=processed, samples_processed=processed,
                             samples_final=final, last_seq=0)

    def flushed(final: int) -> FlushedEvent:
        return FlushedEvent(flush_id=1, progress=progress(final, final))

    seen = Delivered()
    assert seen.admit(cut(100, 0)) is not None and seen.admit(progress(300, 250)) is not None
    seen.resumed(0)
    assert seen.admit(progress(400, 390)) is None  # not yet repeated: off course, maybe
    assert seen.admit(flushed(390)) is None
    assert seen.admit(cut(100, 0)) is None  # repeated
    late = seen.admit(progress(320, 200))
    assert isinstance(late, ProgressEvent) and late.samples_final == 250  # never back
    fl = seen.admit(flushed(240))
    assert isinstance(fl, FlushedEvent) and fl.progress.samples_final == 250
    with pytest.raises(Desync, match="before samples_final 250"):
        seen.admit(cut(200, 1))
    assert seen.admit(cut(250, 1)) is not None  # at the watermark: allowed
