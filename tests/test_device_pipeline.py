"""The engine's device pipeline for S2 + S3, on fake lanes with CPU tensors.

``engine.lanes = "fake"`` runs the code a CUDA engine runs (staging ring, three lanes,
event hand-over, device-side state chaining, completion in order, fallback) with
threads for lanes: what CI can check without a GPU. The model numerics on CUDA are
``tests/test_gpu.py``'s.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from importlib import resources

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seamcut.server.config import AppConfig, Encoding, load_config
from seamcut.server.engine.client import InprocEngine
from seamcut.server.events import ChunkTrace, Cut
from seamcut.server.offline import analyze

from tests.helpers import encode, slice_bytes, speech_spec

pytestmark = pytest.mark.integration
SAMPLE = resources.files("seamcut.samples") / "speech_en.flac"
AUDIO, RATE = sf.read(str(SAMPLE), dtype="float32", always_2d=True)
TRUTH = json.loads((resources.files("seamcut.samples") / "speech_en.json").read_text())
DATA = encode(AUDIO, Encoding.PCM_S16LE)


def _cfg(**engine: object) -> AppConfig:
    return load_config(env={}, overrides={"engine": {"lanes": "fake", **engine}})


@pytest.fixture(scope="module")
def fake_engine() -> Iterator[InprocEngine]:
    eng = InprocEngine(_cfg())
    yield eng
    asyncio.run(eng.close())


def _run(cfg: AppConfig, engine: InprocEngine, split: list[int]) -> tuple[list[int], list[
        ChunkTrace]]:
    spec = speech_spec(cfg, RATE, 1, Encoding.PCM_S16LE)
    events = analyze(cfg, spec, slice_bytes(DATA, 2, split), engine)
    return ([e.sample for e in events if isinstance(e, Cut)],
            [e for e in events if isinstance(e, ChunkTrace)])


@pytest.fixture(scope="module")
def cpu_cuts(app_cfg: AppConfig, engine: InprocEngine) -> list[int]:
    return _run(app_cfg, engine, [5 * RATE])[0]


def test_the_device_pipeline_gives_the_cpu_cuts(fake_engine: InprocEngine,
                                                cpu_cuts: list[int]) -> None:
    cuts, traces = _run(_cfg(), fake_engine, [5 * RATE])
    assert cuts == cpu_cuts
    for a, b in TRUTH["pauses"]:
        assert any(a <= c <= b for c in cuts)
    # Honest traces: fake lanes are not a GPU, so no block claims the CUDA pipeline.
    assert traces and not any(t.gpu_pipeline_used for t in traces)


@settings(max_examples=8, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(split=st.lists(st.one_of(st.integers(1, 400), st.integers(401, 3 * RATE)),
                      min_size=1, max_size=8).filter(lambda s: sum(s) / len(s) >= 300))
def test_any_slicing_through_the_device_pipeline_gives_the_cpu_cuts(
        fake_engine: InprocEngine, cpu_cuts: list[int], split: list[int]) -> None:
    assert _run(_cfg(), fake_engine, split)[0] == cpu_cuts


def test_a_full_staging_ring_pushes_back_and_loses_nothing(cpu_cuts: list[int]) -> None:
    """Two 1.5 MiB slots (one full request of 16 blocks fits, two do not) for four
    streams: the ring fills and turns submits away, and every stream still gets
    exactly the CPU's cuts."""
    cfg = _cfg(staging_mib=1.5, staging_slots=2)
    eng = InprocEngine(cfg)
    try:
        assert all(c == cpu_cuts for c in _concurrent(cfg, eng, [RATE * 4, RATE, RATE, 777]))
        assert eng.pipeline is not None
        dev = eng.pipeline.core.device_analyse
        assert dev is not None and dev.flow.refused > 0  # the ring pushed back
        assert dev.flow.ring_in.in_use() == 0 and dev.flow.ring_out.in_use() == 0
    finally:
        asyncio.run(eng.close())


def _concurrent(cfg: AppConfig, eng: InprocEngine, splits: list[int]) -> list[list[int]]:
    """One stream per message size in ``splits``, all at once; their cuts."""
    from seamcut.server.offline import run_session

    async def many() -> list[list[int]]:
        await eng.start()
        spec = speech_spec(cfg, RATE, 1, Encoding.PCM_S16LE)
        runs = [run_session(eng, cfg, spec, slice_bytes(DATA, 2, [n])) for n in splits]
        return [[e.sample for e in evs if isinstance(e, Cut)]
                for evs in await asyncio.gather(*runs)]
    return asyncio.run(many())


def test_a_device_fault_mid_stream_falls_back_to_the_cpu_with_identical_cuts(
        cpu_cuts: list[int]) -> None:
    cfg = _cfg(test_fault="d2@20")
    eng = InprocEngine(cfg)
    try:
        cuts, traces = _run(cfg, eng, [RATE // 2])
        assert cuts == cpu_cuts
        assert eng.pipeline is not None
        dev = eng.pipeline.core.device_analyse
        assert dev is not None and "injected device fault at block 20" in dev.broken
        assert dev.flow.in_flight == 0
        assert dev.flow.ring_in.in_use() == 0 and dev.flow.ring_out.in_use() == 0
        assert len(traces) == -(-AUDIO.shape[0] * 16000 // RATE // 5120)
    finally:
        asyncio.run(eng.close())


def test_concurrent_streams_through_the_device_pipeline(cpu_cuts: list[int]) -> None:
    """Six streams share every batch: each gets the cuts it gets alone on the CPU (this
    caught a staging slot refilled while the fake device still read it)."""
    cfg = _cfg()
    eng = InprocEngine(cfg)
    try:
        for splits in ([RATE // (k + 1) for k in range(6)], [RATE // 6] * 6):
            assert all(c == cpu_cuts for c in _concurrent(cfg, eng, splits))
    finally:
        asyncio.run(eng.close())


def test_small_batches_on_the_cpu_large_ones_on_the_device(cpu_cuts: list[int]) -> None:
    """``engine.vad_cpu_streams = 2``: a batch of at most two streams runs on the CPU
    when the device is idle, the others on the device; a stream moves between the two
    (its state from the host or the device) and still gets exactly the CPU's cuts."""
    cfg = _cfg(vad_cpu_streams=2)
    eng = InprocEngine(cfg)
    try:
        assert _run(cfg, eng, [RATE // 3])[0] == cpu_cuts
        for splits in ([RATE // (k + 1) for k in range(5)], [RATE // 2, 999]):
            assert all(c == cpu_cuts for c in _concurrent(cfg, eng, splits))
        assert eng.pipeline is not None
        dev = eng.pipeline.core.device_analyse
        assert dev is not None and dev.cpu_streams == 2
        assert dev.on_cpu > 0 and dev.flow.completed > 0  # both paths were taken
    finally:
        asyncio.run(eng.close())


@pytest.mark.unit
def test_the_cpu_or_device_choice_follows_the_measurements() -> None:
    from seamcut.server.engine.vad_choice import Timing, cpu_streams, measure
    from seamcut.server.models.vad import SileroVad
    from seamcut.server.models.vad_torch import TorchVad

    rows = [Timing(1, 0.2, 1.0), Timing(2, 0.3, 1.0), Timing(4, 0.9, 1.0),
            Timing(8, 1.5, 1.1), Timing(16, 0.5, 1.2)]
    assert cpu_streams(rows) == 4  # the first size where the device wins ends it
    assert cpu_streams([Timing(1, 2.0, 1.0)]) == 0
    measured = measure(SileroVad(providers=["CPUExecutionProvider"]), TorchVad("cpu"),
                       lambda: None, sizes=(1, 4), reps=1)
    assert [t.streams for t in measured] == [1, 4]
    assert all(t.cpu_ms > 0 and t.device_ms > 0 for t in measured)


def test_lanes_settings_are_validated() -> None:
    from seamcut.server.engine.core import EngineCore
    from seamcut.server.errors import ConfigError

    with pytest.raises(ConfigError, match=r"engine\.lanes"):
        load_config(env={}, overrides={"engine": {"lanes": "gpu"}})
    with pytest.raises(ConfigError, match=r"engine\.staging_mib: a slot of 0\.5 MiB"):
        EngineCore(_cfg(staging_mib=0.5), separators=False)
    assert np.isfinite(_cfg().engine.staging_mib)


def test_a_failed_launch_falls_back_to_the_cpu(cpu_cuts: list[int]) -> None:
    """CUDA raises some errors when the work is queued, not when it runs."""
    cfg = _cfg()
    eng = InprocEngine(cfg)
    try:
        asyncio.run(eng.start())
        assert eng.pipeline is not None
        dev = eng.pipeline.core.device_analyse
        assert dev is not None
        calls = [0]
        real = dev.flow.submit

        def flaky(*args: object, **kw: object) -> bool:
            calls[0] += 1
            if calls[0] == 3:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return real(*args, **kw)  # type: ignore[arg-type]
        dev.flow.submit = flaky  # type: ignore[method-assign]
        assert _run(cfg, eng, [RATE // 3])[0] == cpu_cuts
        assert "at launch" in dev.broken and "illegal memory access" in dev.broken
    finally:
        asyncio.run(eng.close())


def test_a_pipeline_that_cannot_start_leaves_the_cpu_path(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from seamcut.server.engine.core import EngineCore
    from seamcut.server.models import vad_torch

    def broken(self: object, device: str = "cpu") -> None:
        raise RuntimeError("no kernel image is available for execution on the device")
    monkeypatch.setattr(vad_torch.TorchVad, "__init__", broken)
    core = EngineCore(_cfg(), separators=False)
    assert core.device_analyse is None
    assert "CUDA pipeline did not start" in core.device.fallback_reason


def test_the_gpu_pipeline_bench_runs_on_fake_lanes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``scripts/gpu_check.sh`` runs this bench on the card; here that both modes run
    and report the copy share from the flights' timeline."""
    from seamcut.bench.gpu_pipeline import run_song, run_speech
    from seamcut.bench.mdx_model import build_mdx_onnx

    model = tmp_path / "small.onnx"
    build_mdx_onnx(model, n_fft=512, hop=128, dim_f=128, dim_t=32, width=8, depth=1)
    for out in (run_speech("cpu", "fake", streams=4, blocks=1, rounds=1),
                run_song("cpu", "fake", model, batch=3, rounds=1)):
        assert set(out["rows"]) == {"serial", "pipelined", "batched", "cpu"}
        assert all(r["audio_s_per_s"] > 0 for r in out["rows"].values())
        assert 0 <= out["rows"]["batched"]["copy_hidden_pct"] <= 100


def _events(cfg: AppConfig, eng: InprocEngine, split: int) -> list[object]:
    spec = speech_spec(cfg, RATE, 1, Encoding.PCM_S16LE)
    return analyze(cfg, spec, slice_bytes(DATA, 2, [split]), eng)


def test_the_client_is_told_once_when_its_stream_falls_back() -> None:
    from seamcut.server.events import Notice

    cfg = _cfg(test_fault="d2@12")
    eng = InprocEngine(cfg)
    try:
        events = _events(cfg, eng, RATE // 2)
        notices = [e for e in events if isinstance(e, Notice)]
        assert [n.code for n in notices] == ["gpu_fallback"]
        assert "injected device fault at block 12" in notices[0].message
    finally:
        asyncio.run(eng.close())


def test_strict_gpu_ends_the_stream_with_where_to_resume() -> None:
    from seamcut.server.errors import Unavailable

    cfg = _cfg(test_fault="d2@12", strict_gpu=True)
    eng = InprocEngine(cfg)
    try:
        with pytest.raises(Unavailable, match=r"strict_gpu.*start_sample = \d+"):
            _events(cfg, eng, RATE // 2)
    finally:
        asyncio.run(eng.close())


def test_fallback_keeps_only_the_streams_the_cpu_can_carry(cpu_cuts: list[int]) -> None:
    """Four streams, a fault, a CPU that carries two: two finish with the CPU's cuts,
    two end UNAVAILABLE with the sample to resume from (never silently late)."""
    from seamcut.server.errors import Unavailable
    from seamcut.server.offline import run_session

    cfg = _cfg(test_fault="d2@6", fallback_streams=2)
    eng = InprocEngine(cfg)
    try:
        async def many() -> list[object]:
            await eng.start()
            spec = speech_spec(cfg, RATE, 1, Encoding.PCM_S16LE)
            return await asyncio.gather(*(run_session(eng, cfg, spec, slice_bytes(
                DATA, 2, [RATE // 4])) for _ in range(4)), return_exceptions=True)
        out = asyncio.run(many())
        ended = [o for o in out if isinstance(o, Unavailable)]
        done = [[e.sample for e in o if isinstance(e, Cut)] for o in out
                if isinstance(o, list)]
        assert len(ended) == 2 and len(done) == 2, out
        assert all(c == cpu_cuts for c in done)
        for exc in ended:
            assert "the CPU carries 2 streams" in str(exc)
            assert "start_sample = " in str(exc)
    finally:
        asyncio.run(eng.close())


def _song_cuts(lanes: str, split: int, separator: dict[str, object] | None = None,
               detector: dict[str, object] | None = None,
               **engine: object) -> tuple[list[int], list[ChunkTrace], tuple[int, int, str]]:
    """SONG cuts and traces; the batches S1 and S2 + S3 ran as device flights, and why
    S1 fell back ("" = it did not)."""
    from seamcut.server.config import AudioFormat, Mode, stream_spec

    song, rate = sf.read(str(resources.files("seamcut.samples") / "song_en.flac"),
                         dtype="float32", always_2d=True)
    cfg = load_config(env={}, overrides={"engine": {"lanes": lanes, **engine},
                                         "separator": separator or {},
                                         "detector": detector or {}})
    eng = InprocEngine(cfg)
    spec = stream_spec(cfg, format=AudioFormat(encoding=Encoding.F32LE, sample_rate_hz=rate,
                                               channels=2),
                       mode=Mode.SONG, policy_overrides={}, event_overrides={})
    data = song[: rate * 20].astype("<f4").tobytes()
    try:
        events = analyze(cfg, spec, slice_bytes(data, 8, [split]), eng)
        assert eng.pipeline is not None
        core = eng.pipeline.core
        flights = (core.device_separate.flow.completed if core.device_separate else 0,
                   core.device_analyse.flow.completed if core.device_analyse else 0,
                   core.device_separate.broken if core.device_separate else "")
    finally:
        asyncio.run(eng.close())
    return ([e.sample for e in events if isinstance(e, Cut)],
            [e for e in events if isinstance(e, ChunkTrace)], flights)


def test_song_separation_through_the_device_lane_gives_the_cpu_cuts() -> None:
    """S1 (the built-in separator) as flights on lane s1, then S2 + S3: the cuts of the
    CPU path, for two slicings."""
    cpu, _, _ = _song_cuts("off", 44_100)
    assert len(cpu) >= 2
    for split in (44_100, 7_777):
        cuts, traces, flights = _song_cuts("fake", split)
        assert cuts == cpu
        assert traces and not any(t.gpu_pipeline_used for t in traces)
        assert min(flights[:2]) > 0  # S1 and S2 + S3 really went through the lanes


def test_a_separation_fault_mid_song_falls_back_with_identical_cuts() -> None:
    cpu, _, _ = _song_cuts("off", 44_100)
    cuts, _, flights = _song_cuts("fake", 44_100, test_fault="d1@5")
    assert cuts == cpu
    assert flights[0] > 0  # some windows went through the lane before the fault
    assert "injected device fault at window 5" in flights[2]


@pytest.fixture(scope="module")
def mdx_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    from seamcut.bench.mdx_model import build_mdx_onnx

    path = tmp_path_factory.mktemp("mdx") / "small.onnx"
    build_mdx_onnx(path, n_fft=512, hop=128, dim_f=128, dim_t=32, width=8, depth=1)
    return str(path)


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_an_mdx_model_runs_on_the_separation_lane(mdx_file: str, runtime: str) -> None:
    """MDX through lane s1: ONNX Runtime through IOBinding (on CUDA: its provider on
    the lane's stream), or the graph run by torch. The cuts are those of the same
    runtime on the ordinary path; a fault re-runs on ONNX Runtime's CPU session."""
    sep = {"default_backend": "mdx", "mdx_model_path": mdx_file, "mdx_runtime": runtime}
    # This MDX network has random weights: its "vocal" is noise, which the voice
    # detector rightly hears as no voice, and how many cuts survive that is chance.
    # The lanes are what is tested here, so the cuts compared come without it.
    det = {"voice_cap": False}
    cpu, _, _ = _song_cuts("off", 44_100, sep, det)
    assert len(cpu) >= 2
    for split in (44_100, 9_999):
        cuts, _, flights = _song_cuts("fake", split, sep, det)
        assert cuts == cpu
        assert min(flights[:2]) > 0 and not flights[2]
    if runtime == "onnxruntime":  # the re-run is the same session type: identical cuts
        cuts, _, flights = _song_cuts("fake", 44_100, sep, det, test_fault="d1@40")
        assert cuts == cpu
        assert "injected device fault at window 40" in flights[2]


@pytest.mark.unit
def test_mdx_in_torch_matches_onnx_runtime(mdx_file: str) -> None:
    """The converted model within 1e-3 of ONNX Runtime on the CPU, end to end (STFT,
    model, iSTFT); tests/test_gpu.py checks the same on CUDA."""
    from seamcut.server.models.mdx import MdxOnnxSeparator

    windows = np.random.default_rng(3).standard_normal((3, 2, 3968)).astype(np.float32)
    ort_sep = MdxOnnxSeparator(mdx_file, providers=["CPUExecutionProvider"])
    torch_sep = MdxOnnxSeparator(mdx_file, providers=["CPUExecutionProvider"],
                                 runtime="torch")
    assert (ort_sep.runtime, torch_sep.runtime) == ("onnxruntime", "torch")
    want = ort_sep.separate(windows)
    err = np.max(np.abs(torch_sep.separate(windows) - want)) / np.max(np.abs(want))
    assert err <= 1e-3


@pytest.mark.unit
@pytest.mark.parametrize("analysis,separation,song,claimed", [
    ("cuda", "", False, True), ("", "", False, False), ("cuda", "cuda", True, True),
    ("cuda", "", True, False), ("", "cuda", True, False)])
def test_a_trace_claims_the_gpu_pipeline_only_for_what_ran_through_it(
        analysis: str, separation: str, song: bool, claimed: bool) -> None:
    from seamcut.server.dsp.reblock import GridBlock
    from seamcut.server.engine.protocol import Kind, Result
    from seamcut.server.events import StageTimes
    from seamcut.server.session.chain import Pending
    from seamcut.server.session.report import chunk_trace

    block = GridBlock(index=0, start16=0, length16=5120, samples16=np.zeros(
        5280, np.float32), client_start=0, client=np.zeros(5120, np.float32), is_last=False)
    p = Pending(block, 1, 0, 0, 0, 0, 0.0, separation_pipeline=separation)
    r = Result(kind=Kind.ANALYSE, stream="s", id=1, index=0, pipeline=analysis)
    trace = chunk_trace(p, r, StageTimes(), off=0, device="cuda:0", song=song)
    assert trace.gpu_pipeline_used is claimed


@pytest.mark.unit
def test_mdx_on_cpu_onnx_runtime_stays_off_the_lanes_of_a_gpu(mdx_file: str) -> None:
    """``mdx_runtime = onnxruntime`` without its CUDA provider on a GPU device cannot
    bind device tensors: the model keeps the ordinary path."""
    from seamcut.server.engine.device_separate import DeviceSeparate
    from seamcut.server.engine.lanes import FakeLanes
    from seamcut.server.models.mdx import MdxOnnxSeparator

    on_cpu = MdxOnnxSeparator(mdx_file, providers=["CPUExecutionProvider"],
                              runtime="onnxruntime")
    assert on_cpu.on_lanes  # CPU tensors bind on the CPU
    # torch's "meta" device stands in for a GPU here: tensors that are not on the host.
    sep = MdxOnnxSeparator(mdx_file, providers=["CPUExecutionProvider"], device="meta",
                           runtime="onnxruntime")
    assert not sep.on_lanes
    lanes = FakeLanes()
    try:
        dev = DeviceSeparate(lanes, {"mdx": sep}, lambda _n: sep, slot_bytes=1 << 20, slots=2)
        assert "mdx" not in dev.separators
        dev.flow.close()
    finally:
        lanes.close()
