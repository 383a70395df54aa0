"""Resume tokens: a stream resumed from any Checkpoint, with its audio from the
Checkpoint's resume_from sliced any way, makes exactly the cuts of the uninterrupted
run after it (sample, kind and index), on speech, FORCED chains and continuous music
with separation, also when resumed twice; and a token that cannot be used is refused
with a message that says why."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seamcut.server.config import (
    AppConfig,
    AudioFormat,
    Encoding,
    Mode,
    StreamSpec,
    stream_spec,
)
from seamcut.server.dsp.detector import BlockInput, DetectorParams, DetectorState, detect_step
from seamcut.server.engine.client import InprocEngine
from seamcut.server.engine.protocol import SeparatorInfo
from seamcut.server.errors import ConfigError, InvalidAudio
from seamcut.server.events import Checkpoint, Cut, Event, Flushed, Progress, Summary
from seamcut.server.offline import analyze
from seamcut.server.session import checkpoint

from seamcut.v1 import seamcut_pb2 as pb
from tests.helpers import ServerThread, audio_msgs, encode, program, run_stream, slice_bytes

CutTuple = tuple[int, str, int]
sizes = st.lists(st.one_of(st.integers(1, 4000), st.integers(4001, 150_000)),
                 min_size=1, max_size=6).filter(lambda s: sum(s) / len(s) >= 500)


@dataclass(frozen=True)
class Run:
    """A program's uninterrupted run with checkpoints every second of audio."""

    audio: np.ndarray
    rate: int
    mode: Mode
    policy: tuple[tuple[str, int], ...]
    cuts: tuple[CutTuple, ...]
    checkpoints: tuple[Checkpoint, ...]
    stems: tuple[int, ...] = ()  # SONG with a client's vocal stem in these channels

    @property
    def frame_bytes(self) -> int:
        return 4 * self.audio.shape[1]

    def spec(self, cfg: AppConfig, start: int = 0, token: bytes = b"",
             **policy: int) -> StreamSpec:
        return stream_spec(
            cfg, format=AudioFormat(encoding=Encoding.F32LE, sample_rate_hz=self.rate,
                                    channels=self.audio.shape[1]),
            mode=self.mode, policy_overrides={**dict(self.policy), **policy},
            event_overrides={"checkpoint_interval_ms": 1000, "chunk_traces": False},
            start_sample=start, resume_token=token, vocal_stem_channels=self.stems)

    def stream(self, cfg: AppConfig, engine: InprocEngine, cp: Checkpoint | None,
               split: list[int]) -> list[Event]:
        start = cp.resume_from if cp is not None else 0
        data = encode(self.audio[start:], Encoding.F32LE)
        spec = self.spec(cfg, start, cp.token if cp is not None else b"")
        return analyze(cfg, spec, slice_bytes(data, self.frame_bytes, split), engine)


def cut_tuples(events: list[Event]) -> list[CutTuple]:
    return [(e.sample, e.kind.value, e.index) for e in events if isinstance(e, Cut)]


@functools.cache
def uninterrupted(name: str) -> Run:
    if name == "song_stem":  # the voice detector on a stem, with Silero on the mix
        from tests.song_corpus import default_song_corpus

        clip = default_song_corpus()[0]
        audio = np.tile(np.concatenate([clip.mix, clip.vocal[:, :1]], axis=1), (3, 1))
        run = Run(audio.astype(np.float32), clip.sample_rate_hz, Mode.SONG, (), (), (), (2,))
        events = run.stream(_cfg(), _engine(), None, [run.rate // 5])
        cps = tuple(e for e in events if isinstance(e, Checkpoint))
        return Run(run.audio, run.rate, Mode.SONG, (), tuple(cut_tuples(events)), cps, (2,))
    prog = program(name.removesuffix("_48k"))
    mode = Mode.SONG if prog.options.mode == "song" else Mode.SPEECH
    policy = (("max_segment_ms", 3000),) if name == "speech_forced" else ()
    audio, rate = prog.audio, prog.options.sample_rate_hz
    if name.endswith("_48k"):  # two resamplers before the separator's and Silero's rates
        import soxr

        audio, rate = soxr.resample(audio, rate, 48_000).astype(np.float32), 48_000
    run = Run(audio, rate, mode, policy, (), ())
    cfg = _cfg()
    events = run.stream(cfg, _engine(), None, [run.rate // 5])
    cps = tuple(e for e in events if isinstance(e, Checkpoint))
    return Run(run.audio, run.rate, mode, policy, tuple(cut_tuples(events)), cps)


@functools.cache
def _cfg() -> AppConfig:
    from seamcut.server.config import load_config

    return load_config(env={})


@functools.cache
def _engine() -> InprocEngine:
    return InprocEngine(_cfg())


def after(run: Run, cp: Checkpoint) -> list[CutTuple]:
    return [c for c in run.cuts if c[2] >= cp.cuts]


# ---------------------------------------------------------------- the property

@pytest.mark.integration
@pytest.mark.parametrize("name", ["speech", "speech_forced", "song", "song_48k", "song_stem"])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pick=st.integers(0, 10_000), split=sizes, again=st.integers(0, 10_000))
def test_a_stream_resumed_from_any_checkpoint_makes_the_uninterrupted_cuts(
    name: str, pick: int, split: list[int], again: int,
) -> None:
    run = uninterrupted(name)
    assert len(run.checkpoints) >= 4 and len(run.cuts) >= 8, (name, run)
    cfg, engine = _cfg(), _engine()
    cp = run.checkpoints[pick % len(run.checkpoints)]
    assert cp.resume_from <= cp.sample and cp.cuts <= len(run.cuts)
    events = run.stream(cfg, engine, cp, split)
    assert cut_tuples(events) == after(run, cp)
    promises_kept(events)
    summary = events[-1]  # this stream's own counts, not the first stream's
    assert isinstance(summary, Summary)
    assert summary.samples_received == summary.samples_processed == (
        run.audio.shape[0] - cp.resume_from)
    assert summary.cuts == len(after(run, cp))
    # The resumed stream's own checkpoints resume it again, on the same grid.
    later = [e for e in events if isinstance(e, Checkpoint)]
    assert all(e.sample > cp.sample for e in later)
    if later:
        cp2 = later[again % len(later)]
        assert cut_tuples(run.stream(cfg, engine, cp2, split[::-1])) == after(run, cp2)


def promises_kept(events: list[Event]) -> None:
    """No cut before a samples_final the stream has already sent ("no cut before it"),
    and received >= processed >= final in every Progress (PROTOCOL.md)."""
    final = -1
    for ev in events:
        if isinstance(ev, Progress | Flushed):
            p = ev if isinstance(ev, Progress) else ev.progress
            assert p.samples_received >= p.samples_processed >= p.samples_final, p
            final = max(final, p.samples_final)
        elif isinstance(ev, Cut):
            assert ev.sample >= final, f"cut {ev.index} at {ev.sample} after samples_final {final}"


@pytest.mark.integration
@pytest.mark.parametrize("name", ["speech", "song"])
def test_a_resumed_stream_promises_no_more_than_its_checkpoint_knew(name: str) -> None:
    """A checkpoint lies at a block end, but the detector's watermark there is always
    behind it (a cut snaps up to a few hundred frames either way, and a pause before
    it may still be undecided). A resumed stream's first Progress, sent as its audio
    arrives, before any block is analysed, says final only what the checkpoint's
    detector said. It once said the checkpoint's sample, and a client resuming from a
    checkpoint whose own Progress had not reached it yet was promised no cut before a
    cut the resumed stream then made (a CI run of tests/test_resume.py, 2026-12-06)."""
    run = uninterrupted(name)
    cfg, engine = _cfg(), _engine()
    for cp in run.checkpoints[1:4]:
        events = run.stream(cfg, engine, cp, [run.rate // 10])
        first = next(e for e in events if isinstance(e, Progress))
        assert first.samples_final < cp.sample, (first, cp.sample)
        assert cut_tuples(events) == after(run, cp)
        promises_kept(events)


@pytest.mark.integration
def test_checkpoints_are_block_ends_an_interval_apart_with_their_preroll() -> None:
    """A checkpoint comes at the end of an analysis request (where both VAD states and
    the detector stand at one block's end), at least an interval of audio after the
    last; resume_from is on the grid, at least the pre-roll before it."""
    run = uninterrupted("speech")
    cfg = _cfg()
    block = cfg.engine.block_samples * run.rate // 16_000
    cps = run.checkpoints
    assert np.diff([0] + [c.sample for c in cps]).min() >= run.rate
    step = checkpoint.grid_step(cfg, run.rate, None)
    pre = checkpoint.preroll_frames(cfg, run.rate, None)
    for c in cps:
        assert c.sample % block == 0 and c.resume_from % step == 0
        assert c.resume_from <= c.sample - pre or c.resume_from == 0
        assert len(c.token) < 8192
    assert [c.cuts for c in cps] == [sum(1 for x in run.cuts if x[0] < c.sample) for c in cps]


# ---------------------------------------------------------------- refusals

@pytest.mark.integration
def test_a_token_that_cannot_be_used_is_refused_with_why() -> None:
    run = uninterrupted("speech")
    cfg, engine = _cfg(), _engine()
    cp = run.checkpoints[2]
    data = encode(run.audio[cp.resume_from:], Encoding.F32LE)
    chunks = slice_bytes(data, run.frame_bytes, [run.rate])

    def refusal(spec: StreamSpec, audio: list[bytes] = chunks) -> str:
        with pytest.raises((ConfigError, InvalidAudio)) as info:
            analyze(cfg, spec, audio, engine)
        return str(info.value)

    assert "not a resume token" in refusal(run.spec(cfg, cp.resume_from, b"\x93garbage"))
    assert "another server version or for another config" in refusal(
        run.spec(cfg, cp.resume_from, cp.token, min_segment_ms=2000))
    step = checkpoint.grid_step(cfg, run.rate, None)
    for start in (cp.resume_from + step, cp.resume_from - 1):
        assert "config.start_sample" in refusal(run.spec(cfg, start, cp.token))
    short = slice_bytes(data[: (cp.sample - cp.resume_from - run.rate) * run.frame_bytes],
                        run.frame_bytes, [run.rate])
    assert "before its resume token's checkpoint" in refusal(
        run.spec(cfg, cp.resume_from, cp.token), short)
    # A token of another stream's positions: fields that do not add up.
    import msgspec

    t = msgspec.msgpack.decode(cp.token)
    t[5] = t[4] + 1  # resume_from after the checkpoint
    assert "does not add up" in refusal(run.spec(cfg, cp.resume_from, msgspec.msgpack.encode(t)))


@pytest.mark.integration
def test_a_bad_token_is_invalid_argument_over_grpc(server: ServerThread) -> None:
    cfg = pb.StreamConfig(format=pb.AudioFormat(encoding=pb.PCM_S16LE, sample_rate_hz=16000,
                                                channels=1), resume_token=b"not a token")
    with pytest.raises(grpc.RpcError) as info:
        run_stream(server.target, [pb.ClientMessage(config=cfg),
                                   *audio_msgs([b"\0\0" * 16000])])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.resume_token: not a resume token" in (info.value.details() or "")


# ---------------------------------------------------------------- pieces

@pytest.mark.unit
@pytest.mark.parametrize("rate,sep_rate,step", [  # with 320 ms blocks (5120 at 16 kHz)
    (16_000, None, 5120), (44_100, None, 14112), (48_000, None, 15360), (8_000, None, 2560),
    (48_000, 44_100, 15360), (12_345, None, 5 * 3950.4), (16_000, 12_345, 5 * 5120)])
def test_the_restart_grid_is_whole_blocks_and_frames(rate: int, sep_rate: int | None,
                                                     step: float) -> None:
    cfg = _cfg()
    assert cfg.engine.block_samples == 5120
    sep = None if sep_rate is None else SeparatorInfo(
        name="builtin", rate_hz=sep_rate, window_samples=4096, default_hop_samples=2048)
    got = checkpoint.grid_step(cfg, rate, sep)
    assert got == step
    blocks16 = got * 16_000 / rate
    assert blocks16 % cfg.engine.block_samples == 0
    assert sep_rate is None or (blocks16 * sep_rate / 16_000).is_integer()


@pytest.mark.unit
def test_a_token_round_trips_the_detector_state() -> None:
    run = uninterrupted("speech")
    cfg = _cfg()
    spec = run.spec(cfg)
    digest = checkpoint.config_digest(cfg, spec, None)
    for cp in run.checkpoints:
        p = checkpoint.decode(cp.token, digest, mix_vad=False,
                              block_samples=cfg.engine.block_samples, rate_hz=run.rate)
        again = checkpoint.encode(p, digest)
        assert again == cp.token
        assert p.sample == cp.sample and p.cuts == cp.cuts
        assert p.detector.ring.size == 0 and p.detector.next_hop * 160 == (
            p.block * cfg.engine.block_samples)


@pytest.mark.unit
def test_a_long_decided_silence_does_not_grow_the_detector_history() -> None:
    """The history a token carries stays bounded: once a pause is decided its start
    is not looked at again (before, an hour of silence kept an hour of hops)."""
    cfg = _cfg()
    params = DetectorParams.build(cfg.policy, cfg.detector, 16_000)
    state = DetectorState()
    hops = 16  # a 160 ms block
    for k in range(400):  # 2 s of speech, then 62 s of silence
        prob = 0.9 if k < 12 else 0.01
        state, _ = detect_step(state, params, BlockInput(
            start_hop=k * hops, probs=np.full(hops, prob, np.float32),
            energy_db=np.full(hops, -20.0 if prob > 0.5 else -70.0, np.float32),
            client_start=k * hops * 160, client=np.zeros(hops * 160, np.float32)))
    assert state.silence_start == 12 * hops and state.pause_decided
    assert state.hist_e.shape[0] <= params.search + params.min_gap + 2 * hops


@pytest.mark.integration
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.integers(0, 1_000), value=st.one_of(
    st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.binary(max_size=64)), pick=st.integers(0, 100))
def test_a_tampered_token_is_refused_or_only_changes_its_own_cuts(
    field: int, value: object, pick: int,
) -> None:
    """The token is the client's to keep, so it may come back altered. Whatever is
    changed, the stream is refused with INVALID_ARGUMENT or runs to its end, with cuts
    inside its own audio: no other error, no exception from inside the server."""
    import msgspec

    run = uninterrupted("speech")
    cfg, engine = _cfg(), _engine()
    cp = run.checkpoints[pick % len(run.checkpoints)]
    t = msgspec.msgpack.decode(cp.token)
    paths = [(i,) for i in range(len(t)) if not isinstance(t[i], list)]
    paths += [(len(t) - 1, j) for j in range(len(t[-1]))]
    path = paths[field % len(paths)]
    holder = t if len(path) == 1 else t[path[0]]
    holder[path[-1]] = value
    data = encode(run.audio[cp.resume_from:], Encoding.F32LE)
    spec = run.spec(cfg, cp.resume_from, msgspec.msgpack.encode(t))
    try:
        events = analyze(cfg, spec, slice_bytes(data, run.frame_bytes, [run.rate]), engine)
    except (ConfigError, InvalidAudio):
        return
    assert isinstance(events[-1], Summary)
    for c in (e for e in events if isinstance(e, Cut)):
        assert cp.resume_from <= c.sample <= run.audio.shape[0]
