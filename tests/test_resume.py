"""Resume after Ready (client/resume.py): the replay buffer, the restart grid and the
filter that keeps delivered events from repeating; and a resumable stream on a real
server giving the solo cuts. The kill/drain/netns tests are still to come (issue 16).
"""

from __future__ import annotations

import numpy as np
import pytest
from seamcut.client import Client, CutEvent, ReadyEvent, StreamOptions
from seamcut.client.resume import Delivered, ReplayBuffer, grid_frames

from tests.corpus import default_corpus
from tests.helpers import ServerThread


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
