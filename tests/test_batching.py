"""Many concurrent streams share batched model calls and get their solo results."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from seamcut.server.config import Encoding

from seamcut.v1 import seamcut_pb2 as pb
from tests.corpus import SpeechClip, default_corpus
from tests.helpers import ServerThread, audio_msgs, config_msg, cut_samples, encode, run_stream

pytestmark = pytest.mark.integration


def stream_msgs(clip: SpeechClip, chunk_ms: int) -> list[pb.ClientMessage]:
    data = encode(clip.audio, Encoding.PCM_S16LE)
    step = clip.sample_rate_hz * chunk_ms // 1000 * 2 * clip.channels
    return [config_msg(rate=clip.sample_rate_hz, channels=clip.channels),
            *audio_msgs([data[i:i + step] for i in range(0, len(data), step)])]


def test_concurrent_streams_batch_and_match_solo_runs(server: ServerThread) -> None:
    clips = default_corpus()
    solo = {c.name: cut_samples(run_stream(server.target, stream_msgs(c, 200))) for c in clips}
    jobs = [clips[i % len(clips)] for i in range(24)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        outs = list(pool.map(lambda c: run_stream(server.target, stream_msgs(c, 40)), jobs))
    batch_sizes = [m.trace.batch_size for out in outs for m in out
                   if m.WhichOneof("msg") == "trace"]
    assert max(batch_sizes) > 1, "no trace reports a shared model call"
    for clip, out in zip(jobs, outs, strict=True):
        assert cut_samples(out) == solo[clip.name], clip.name
    traces = [m.trace for m in outs[0] if m.WhichOneof("msg") == "trace"]
    assert [t.block_index for t in traces] == list(range(len(traces)))
    assert all(t.vad_ms > 0 and t.total_ms >= t.vad_ms and t.device == "cpu" for t in traces)
    assert traces[-1].end_sample == jobs[0].frames
