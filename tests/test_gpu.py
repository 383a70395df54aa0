"""CUDA paths: separation on the GPU agrees with the CPU (skipped without CUDA)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

from seamcut.server.config import AudioFormat, Encoding, Mode, load_config, stream_spec  # noqa: E402
from seamcut.server.engine.core import EngineCore  # noqa: E402
from seamcut.server.events import ChunkTrace, Cut, Ready  # noqa: E402
from seamcut.server.models.builtin import BuiltinSeparator  # noqa: E402
from seamcut.server.offline import analyze  # noqa: E402

SONG, RATE = sf.read(str(resources.files("seamcut.samples") / "song_en.flac"),
                     dtype="float32", always_2d=True)
SPEECH, SPEECH_RATE = sf.read(str(resources.files("seamcut.samples") / "speech_en.flac"),
                              dtype="float32", always_2d=True)


def windows(n: int) -> np.ndarray:
    size = BuiltinSeparator.window_samples
    starts = np.linspace(0, SONG.shape[0] - size, n).astype(int)
    return np.stack([SONG[s : s + size].T for s in starts]).astype(np.float32)


def test_builtin_separator_cuda_matches_cpu() -> None:
    x = windows(4)
    cpu = BuiltinSeparator("cpu").separate(x)
    gpu = BuiltinSeparator("cuda:0").separate(x)
    assert np.abs(cpu - gpu).max() <= 1e-3 * max(1.0, float(np.abs(cpu).max()))


def test_builtin_separator_cuda_batch_invariance() -> None:
    sep = BuiltinSeparator("cuda:0")
    x = windows(6)
    batch = sep.separate(x)
    alone = np.concatenate([sep.separate(x[i : i + 1]) for i in range(6)])
    assert np.abs(batch - alone).max() <= 1e-5


def stream_events(audio: np.ndarray, rate: int, mode: Mode, device: str, split: int,
                  lanes: str = "auto") -> list[object]:
    """Offline analysis of float32 ``audio`` [frames, channels], ``split`` frames per
    message, on ``device`` with ``engine.lanes = lanes``."""
    cfg = load_config(env={}, overrides={"engine": {"device": device, "lanes": lanes}})
    spec = stream_spec(cfg, format=AudioFormat(encoding=Encoding.F32LE, sample_rate_hz=rate,
                                               channels=audio.shape[1]),
                       mode=mode, policy_overrides={}, event_overrides={})
    data = audio.astype("<f4").tobytes()
    step = split * 4 * audio.shape[1]
    return analyze(cfg, spec, [data[i : i + step] for i in range(0, len(data), step)])


def song_events(device: str, split: int) -> list[object]:
    return stream_events(SONG, RATE, Mode.SONG, device, split)


def test_song_stream_on_cuda() -> None:
    gpu = song_events("cuda", RATE // 10)
    ready = gpu[0]
    assert isinstance(ready, Ready) and ready.device == "cuda:0"
    traces = [e for e in gpu if isinstance(e, ChunkTrace)]
    # The built-in separator and the analysis both ran as flights on the CUDA lanes.
    assert traces and all(t.gpu_pipeline_used and t.device == "cuda:0" for t in traces)
    cpu = song_events("cpu", RATE // 10)
    gcuts = [e.sample for e in gpu if isinstance(e, Cut)]
    ccuts = [e.sample for e in cpu if isinstance(e, Cut)]
    assert len(gcuts) == len(ccuts)
    # GPU FFTs differ from the CPU's in the last bits: allow a zero-crossing's worth.
    assert max(abs(a - b) for a, b in zip(gcuts, ccuts, strict=True)) <= RATE // 50
    sliced = [e.sample for e in song_events("cuda", 12_345) if isinstance(e, Cut)]
    assert sliced == gcuts


def test_engine_reports_cuda() -> None:
    eng = EngineCore(load_config(env={}, overrides={"engine": {"device": "cuda"}}))
    assert eng.device.name == "cuda:0" and eng.device.gpu


def test_torch_vad_on_cuda_matches_onnx_on_cpu() -> None:
    """Silero on the GPU (gathered per-stream states, one batched step per frame)
    against ONNX Runtime on the CPU: probabilities within 1e-4."""
    from seamcut.server.models.vad import SileroVad, VadState
    from seamcut.server.models.vad_torch import TorchVad

    rng = np.random.default_rng(0)
    mono = SONG.mean(axis=1)[: 16000 * 8 // 512 * 512 * 2 : 2][: 250 * 512]
    streams = [mono.reshape(-1, 512)[:200].astype(np.float32),
               (rng.standard_normal((120, 512)) * 0.05).astype(np.float32)] * 8
    start = [VadState.initial()] * len(streams)
    marks = [[len(s) // 2, len(s)] for s in streams]
    ref_p, _ = SileroVad(providers=["CPUExecutionProvider"]).run_batched(streams, start, marks)
    got_p, _ = TorchVad("cuda:0").run_marked(streams, start, marks)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(got_p, ref_p, strict=True))
    print(f"\ntorch VAD on CUDA vs ONNX on CPU: max |dp| = {worst:.2e}")
    assert worst <= 1e-4


def speech_events(device: str, split: int, lanes: str) -> list[object]:
    return stream_events(SPEECH, SPEECH_RATE, Mode.SPEECH, device, split, lanes)


def test_cuda_pipeline_speech_matches_the_cpu() -> None:
    """SPEECH through the CUDA-stream pipeline (S2 + S3 on two streams, pinned staging)
    against the CPU engine: cuts identical or within one 10 ms hop (reported), every
    block's trace says it ran through the pipeline, copies timed."""
    gpu = speech_events("cuda", 4_000, "auto")
    cpu = speech_events("cpu", 4_000, "off")
    traces = [e for e in gpu if isinstance(e, ChunkTrace)]
    assert traces and all(t.gpu_pipeline_used for t in traces)
    assert all(t.times.h2d_ms > 0 and t.times.d2h_ms > 0 for t in traces)
    gcuts = [e.sample for e in gpu if isinstance(e, Cut)]
    ccuts = [e.sample for e in cpu if isinstance(e, Cut)]
    assert len(gcuts) == len(ccuts)
    diffs = [abs(a - b) for a, b in zip(gcuts, ccuts, strict=True)]
    print(f"\nCUDA pipeline vs CPU: {sum(d > 0 for d in diffs)} of {len(diffs)} cuts differ, "
          f"max {max(diffs)} samples")
    assert max(diffs) <= SPEECH_RATE // 100  # one 10 ms hop
    sliced = [e.sample for e in speech_events("cuda", 777, "auto") if isinstance(e, Cut)]
    assert sliced == gcuts  # streaming == offline on the GPU path too


def test_mdx_converted_to_torch_on_cuda_matches_onnx_runtime_on_cpu(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The MDX graph run by torch on CUDA (what a GPU host without onnxruntime-gpu
    uses) within 1e-3 of ONNX Runtime on the CPU, through STFT, model and iSTFT."""
    from seamcut.bench.mdx_model import build_mdx_onnx
    from seamcut.server.models.mdx import MdxOnnxSeparator

    path = tmp_path / "mdx.onnx"
    build_mdx_onnx(path, n_fft=2048, hop=512, dim_f=512, dim_t=64, width=16, depth=1,
                   levels=2, weight_scale=1.0)
    cpu = MdxOnnxSeparator(path, providers=["CPUExecutionProvider"])
    gpu = MdxOnnxSeparator(path, providers=["CPUExecutionProvider"], device="cuda:0",
                           runtime="torch")
    x = np.random.default_rng(0).standard_normal((3, 2, cpu.window_samples)).astype(
        np.float32) * 0.1
    want = cpu.separate(x)
    err = float(np.abs(gpu.separate(x) - want).max() / np.abs(want).max())
    print(f"\nMDX in torch on CUDA vs ONNX Runtime on CPU: relative error {err:.2e}")
    assert err <= 1e-3


def test_mdx_song_on_the_cuda_lanes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SONG with an MDX model through lane s1 on CUDA: every trace says the pipeline
    ran it, and the cuts equal the CPU's or are within one zero crossing."""
    from seamcut.bench.mdx_model import build_mdx_onnx

    path = tmp_path / "mdx.onnx"
    build_mdx_onnx(path, n_fft=512, hop=128, dim_f=128, dim_t=32, width=8, depth=1)

    def run(device: str, lanes: str, split: int) -> list[object]:
        cfg = load_config(env={}, overrides={
            "engine": {"device": device, "lanes": lanes},
            "separator": {"default_backend": "mdx", "mdx_model_path": str(path)}})
        spec = stream_spec(cfg, format=AudioFormat(encoding=Encoding.F32LE,
                                                   sample_rate_hz=RATE, channels=2),
                           mode=Mode.SONG, policy_overrides={}, event_overrides={})
        data = SONG[: RATE * 20].astype("<f4").tobytes()
        step = split * 8
        return analyze(cfg, spec, [data[i : i + step] for i in range(0, len(data), step)])

    gpu = run("cuda", "auto", RATE // 10)
    traces = [e for e in gpu if isinstance(e, ChunkTrace)]
    assert traces and all(t.gpu_pipeline_used for t in traces)
    gcuts = [e.sample for e in gpu if isinstance(e, Cut)]
    ccuts = [e.sample for e in run("cpu", "off", RATE // 10) if isinstance(e, Cut)]
    assert len(gcuts) == len(ccuts)
    assert max((abs(a - b) for a, b in zip(gcuts, ccuts, strict=True)), default=0) <= RATE // 50
