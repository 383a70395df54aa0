"""`seamcut serve` and `seamcut split` as real subprocesses over real sockets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from seamcut.bench.localserver import LocalServer

from tests.corpus import default_corpus

pytestmark = pytest.mark.integration
SEAMCUT = [sys.executable, "-m", "seamcut.cli"]
SAMPLE = str(resources.files("seamcut.samples") / "speech_en.flac")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    # LocalServer logs to a file, so a chatty log can never block it on a full pipe.
    with LocalServer() as srv:
        yield srv.proc, srv.target


def split(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([*SEAMCUT, "split", *args], check=False, capture_output=True,
                         text=True, timeout=300)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def read_cuts(path: Path) -> list[int]:
    return [c["sample"] for c in json.loads(path.read_text())["cuts"]]


def test_split_over_grpc_equals_offline_and_segments_rebuild_input(
    served: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    _, target = served
    res = split(SAMPLE, "--server", target, "--json", str(tmp_path / "a.json"),
                "--segments", str(tmp_path / "seg"), "--chunk-ms", "37")
    split(SAMPLE, "--offline", "--json", str(tmp_path / "b.json"))
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["sample_rate"] == 16000 and doc["channels"] == 1 and doc["lookahead_ms"] > 0
    assert {"sample", "seconds", "kind", "score"} <= set(doc["cuts"][0])
    assert doc["cuts"][-1]["kind"] == "end"
    assert read_cuts(tmp_path / "a.json") == read_cuts(tmp_path / "b.json")
    assert "pause" in res.stdout  # the table
    original, _ = sf.read(SAMPLE, dtype="int16")
    pieces = [sf.read(str(p), dtype="int16")[0] for p in sorted((tmp_path / "seg").iterdir())]
    assert len(pieces) == len(doc["cuts"])
    np.testing.assert_array_equal(np.concatenate(pieces), original)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_stereo_segments_rebuild_input(served: tuple[subprocess.Popen[bytes], str],
                                       tmp_path: Path, subtype: str) -> None:
    _, target = served
    clip = next(c for c in default_corpus() if c.channels == 2)
    src = tmp_path / "in.wav"
    sf.write(str(src), clip.audio, clip.sample_rate_hz, subtype=subtype)
    split(str(src), "--server", target, "--segments", str(tmp_path / "seg"), "--quiet")
    dtype = "int16" if subtype == "PCM_16" else "float32"
    original, _ = sf.read(str(src), dtype=dtype, always_2d=True)
    pieces = [sf.read(str(p), dtype=dtype, always_2d=True)[0]
              for p in sorted((tmp_path / "seg").iterdir())]
    assert len(pieces) >= 3
    np.testing.assert_array_equal(np.concatenate(pieces), original)


def test_bad_file_and_unreachable_server_give_clear_errors(tmp_path: Path) -> None:
    res = split(str(tmp_path / "missing.wav"), check=False)
    assert res.returncode == 2 and "missing.wav" in res.stderr
    res = split(SAMPLE, "--server", "127.0.0.1:1", check=False)
    assert res.returncode == 4 and "cannot connect to 127.0.0.1:1" in res.stderr


def test_sigterm_drains_and_exits() -> None:
    srv = LocalServer(env={"SEAMCUT_SERVER_GRACE_S": "2"})
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 10


def test_song_mode_with_a_vocal_stem_file(served: tuple[subprocess.Popen[bytes], str],
                                          tmp_path: Path) -> None:
    from tests.song_corpus import default_song_corpus

    _, target = served
    clip = default_song_corpus()[2]
    sf.write(str(tmp_path / "mix.wav"), clip.mix, clip.sample_rate_hz, subtype="PCM_16")
    sf.write(str(tmp_path / "vocal.wav"), clip.vocal, clip.sample_rate_hz, subtype="PCM_16")
    split(str(tmp_path / "mix.wav"), "--vocal-stem", str(tmp_path / "vocal.wav"),
          "--server", target, "--json", str(tmp_path / "cuts.json"),
          "--segments", str(tmp_path / "seg"), "--quiet")
    cuts = read_cuts(tmp_path / "cuts.json")
    inner = cuts[:-1]
    assert not [c for c in inner if any(a < c < b for a, b in clip.speech)]
    long = [(a, b) for a, b in clip.pauses if b - a >= clip.sample_rate_hz // 2]
    assert all(any(a <= c <= b for c in inner) for a, b in long)
    original, _ = sf.read(str(tmp_path / "mix.wav"), dtype="int16", always_2d=True)
    pieces = [sf.read(str(p), dtype="int16", always_2d=True)[0]
              for p in sorted((tmp_path / "seg").iterdir())]
    np.testing.assert_array_equal(np.concatenate(pieces), original)
    bad = split(str(tmp_path / "mix.wav"), "--vocal-stem", SAMPLE, "--offline", check=False)
    assert bad.returncode == 2 and "must match" in bad.stderr
