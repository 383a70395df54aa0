"""SONG mode end to end: separation + vocal-domain detection over real gRPC."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seamcut.bench.mdx_model import build_mdx_onnx
from seamcut.server.config import AppConfig, load_config

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.helpers import ServerThread, audio_msgs, cut_samples, run_stream, slice_bytes
from tests.song_corpus import SongClip, default_song_corpus

pytestmark = pytest.mark.integration
SONGS = default_song_corpus()
SONG = SONGS[1]  # 44.1 kHz, strings + reverb
EXCERPT = SONG.mix[: 7 * SONG.sample_rate_hz]  # two phrases and a pause: keeps runs short


def song_config(clip: SongClip, *, channels: int = 2, backend: str = "",
                stems: tuple[int, ...] = (), hop_ms: int | None = None) -> pb.ClientMessage:
    sep = pb.SeparationOptions(backend=backend, vocal_stem_channels=list(stems))
    if hop_ms is not None:
        sep.window_hop_ms = hop_ms
    return pb.ClientMessage(config=pb.StreamConfig(
        format=pb.AudioFormat(encoding=pb.F32LE, sample_rate_hz=clip.sample_rate_hz,
                              channels=channels),
        mode=pb.SONG, separation=sep,
    ))


def song_msgs(clip: SongClip, split: list[int], audio: np.ndarray | None = None,
              **kw: object) -> list[pb.ClientMessage]:
    x = clip.mix if audio is None else audio
    data = x.astype("<f4").tobytes()
    return [song_config(clip, channels=x.shape[1], **kw),  # type: ignore[arg-type]
            *audio_msgs(slice_bytes(data, 4 * x.shape[1], split))]


def quality(clip: SongClip, cuts: list[int]) -> tuple[int, int, int]:
    inner = cuts[:-1]
    in_words = sum(any(a < c < b for a, b in clip.speech) for c in inner)
    long = [(a, b) for a, b in clip.pauses if b - a >= clip.sample_rate_hz // 2]
    return in_words, sum(any(a <= c <= b for c in inner) for a, b in long), len(long)


@pytest.fixture(scope="module")
def song_reference(server: ServerThread) -> list[int]:
    return cut_samples(run_stream(server.target,
                                  song_msgs(SONG, [SONG.sample_rate_hz], EXCERPT)))


def test_ready_reports_the_song_lookahead(server: ServerThread) -> None:
    out = run_stream(server.target, song_msgs(SONG, [SONG.sample_rate_hz // 2]))
    ready = out[0].ready
    assert ready.config.mode == pb.SONG and ready.config.separation.backend == "builtin"
    assert 2000 < ready.lookahead_ms < 4000  # a 1.49 s window on top of SPEECH's ~1.05 s
    traces = [m.trace for m in out if m.WhichOneof("msg") == "trace"]
    assert traces and all(t.separation_ms > 0 for t in traces)
    with grpc.insecure_channel(server.target) as ch:
        caps = pb_grpc.SeamcutStub(ch).GetCapabilities(pb.GetCapabilitiesRequest())
    assert pb.SONG in caps.modes and "builtin" in caps.separators


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(split=st.lists(st.one_of(st.integers(1, 64), st.integers(65, 30_000),
                                st.integers(30_001, 100_000)), min_size=1, max_size=8)
       .filter(lambda s: sum(s) / len(s) >= 2000))
def test_song_cuts_do_not_depend_on_slicing(split: list[int], server: ServerThread,
                                            song_reference: list[int]) -> None:
    got = cut_samples(run_stream(server.target, song_msgs(SONG, split, EXCERPT)))
    assert got == song_reference
    assert len(song_reference) >= 2


STEM_AUDIO = np.concatenate([SONG.mix, SONG.vocal[:, :1]], axis=1)[: 9 * SONG.sample_rate_hz]


@pytest.fixture(scope="module")
def stem_reference(server: ServerThread) -> list[int]:
    return cut_samples(run_stream(server.target, song_msgs(
        SONG, [SONG.sample_rate_hz], STEM_AUDIO, stems=(2,))))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(split=st.lists(st.one_of(st.integers(1, 64), st.integers(65, 30_000),
                                st.integers(30_001, 80_000)), min_size=1, max_size=8)
       .filter(lambda s: sum(s) / len(s) >= 2000))  # 3 channels: messages under 1 MiB
def test_stem_cuts_do_not_depend_on_slicing(split: list[int], server: ServerThread,
                                            stem_reference: list[int]) -> None:
    """With a stem the voice detector runs on it and on the mix (Silero on both)."""
    got = cut_samples(run_stream(server.target, song_msgs(SONG, split, STEM_AUDIO,
                                                          stems=(2,))))
    assert got == stem_reference
    assert len(stem_reference) >= 2


def test_builtin_separator_quality_on_the_song_corpus(server: ServerThread) -> None:
    """The issue's bar: 0 cuts in words and >= 90 % of pauses >= 0.5 s cut (measured:
    0 and 92 %, docs/QUALITY.md)."""
    words = hits = total = 0
    for clip in SONGS:
        w, h, n = quality(clip, cut_samples(run_stream(
            server.target, song_msgs(clip, [clip.sample_rate_hz // 5]))))
        words, hits, total = words + w, hits + h, total + n
    assert hits >= 0.9 * total, (hits, total)
    assert words == 0


@pytest.mark.parametrize("clip", SONGS, ids=[c.name for c in SONGS])
def test_clean_vocal_stem_is_perfect(clip: SongClip, server: ServerThread) -> None:
    audio = np.concatenate([clip.mix, clip.vocal[:, :1]], axis=1)
    out = run_stream(server.target, song_msgs(clip, [clip.sample_rate_hz // 4], audio,
                                              stems=(2,)))
    assert out[0].ready.config.separation.backend == "none"
    in_words, hits, total = quality(clip, cut_samples(out))
    assert in_words == 0 and hits == total
    assert cut_samples(out)[-1] == clip.frames


def test_mono_song_input_works(server: ServerThread) -> None:
    mono = SONG.mix.mean(axis=1, keepdims=True)
    cuts = cut_samples(run_stream(server.target, song_msgs(SONG, [44_100], mono)))
    assert cuts[-1] == SONG.frames and len(cuts) >= 2


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"backend": "mdx"}, "not loaded on this server"),
        ({"backend": "nope"}, "not loaded on this server"),
        ({"stems": (2,)}, "vocal_stem_channels"),
        ({"stems": (0, 1)}, "at least one channel must carry the mix"),
        ({"hop_ms": 100}, "window_hop_ms"),
    ],
)
def test_bad_song_options(server: ServerThread, kw: dict[str, object], needle: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        run_stream(server.target, song_msgs(SONG, [44_100], **kw))  # type: ignore[arg-type]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in info.value.details()


def test_separation_options_need_song_mode(server: ServerThread) -> None:
    msg = pb.ClientMessage(config=pb.StreamConfig(
        format=pb.AudioFormat(encoding=pb.F32LE, sample_rate_hz=44100, channels=2),
        mode=pb.SPEECH, separation=pb.SeparationOptions(vocal_stem_channels=[1])))
    with pytest.raises(grpc.RpcError) as info:
        run_stream(server.target, [msg])
    assert "need mode SONG" in info.value.details()


@pytest.fixture(scope="module")
def mdx_server(tmp_path_factory: pytest.TempPathFactory) -> object:
    path = tmp_path_factory.mktemp("mdx") / "model.onnx"
    build_mdx_onnx(path, n_fft=1024, hop=256, dim_f=256, dim_t=64)
    cfg: AppConfig = load_config(env={}, overrides={
        "server": {"host": "127.0.0.1", "port": 0},
        "separator": {"default_backend": "mdx", "mdx_model_path": str(path)},
    })
    srv = ServerThread(cfg)
    yield srv
    srv.stop()


def test_mdx_backend_streams_and_is_slicing_invariant(mdx_server: ServerThread) -> None:
    clip = SONGS[0]
    whole = run_stream(mdx_server.target, song_msgs(clip, [clip.sample_rate_hz]))
    assert whole[0].ready.config.separation.backend == "mdx"
    sliced = run_stream(mdx_server.target, song_msgs(clip, [777, 12_345, 3]))
    assert cut_samples(sliced) == cut_samples(whole)
    assert cut_samples(whole)[-1] == clip.frames
