"""examples/node/split.js against a real server: the same cuts as `seamcut split`.

The Node client is the proof that docs/OTHER_LANGUAGES.md's recipe works from another
language (proto-loader options, flow control, half-close, statuses); comparing it with
the Python CLI on the same file and server catches a drift in either.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.corpus import default_corpus
from tests.helpers import ServerThread

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "node"
NODE = shutil.which("node")
SAMPLE = resources.files("seamcut.samples") / "speech_en.flac"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        NODE is None or not (EXAMPLE / "node_modules").is_dir(),
        reason="needs node and examples/node/node_modules: run scripts/setup.sh --test "
               "(CI does, so there this test always runs)"),
]


def node_split(*args: str) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run([NODE, str(EXAMPLE / "split.js"), *args], check=False,
                          capture_output=True, text=True, timeout=300)


def python_split(wav: Path, target: str, out: Path) -> list[tuple[int, str]]:
    res = subprocess.run([sys.executable, "-m", "seamcut.cli", "split", str(wav),
                          "--server", target, "--json", str(out), "--quiet"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return [(c["sample"], c["kind"]) for c in json.loads(out.read_text())["cuts"]]


def speech_wav(tmp_path: Path) -> Path:
    """The bundled English sample (16 kHz mono FLAC) as a 16-bit WAV."""
    audio, rate = sf.read(str(SAMPLE), dtype="int16")
    path = tmp_path / "speech_en.wav"
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return path


def stereo_wav(tmp_path: Path) -> Path:
    """A 44.1 kHz stereo corpus clip as a 16-bit WAV (chunking by frames, not bytes)."""
    clip = next(c for c in default_corpus() if c.channels == 2 and c.sample_rate_hz == 44100)
    path = tmp_path / f"{clip.name}.wav"
    sf.write(str(path), clip.audio, clip.sample_rate_hz, subtype="PCM_16")
    return path


@pytest.mark.parametrize("make_wav", [speech_wav, stereo_wav], ids=["speech", "stereo"])
def test_node_client_gets_the_same_cuts_as_the_python_cli(
    server: ServerThread, tmp_path: Path, make_wav: Callable[[Path], Path]
) -> None:
    wav = make_wav(tmp_path)
    info = sf.info(str(wav))

    res = node_split(str(wav), "--server", server.target, "--json")
    assert res.returncode == 0, res.stderr
    node_cuts = [(c["sample"], c["kind"]) for c in json.loads(res.stdout)["cuts"]]
    # With --json the per-cut lines ("sample seconds kind", as they arrive) go to stderr.
    lines = [line.split(" ") for line in res.stderr.splitlines()]
    assert [(int(s), k) for s, _, k in lines] == node_cuts
    assert all(abs(float(sec) - int(s) / info.samplerate) <= 0.0005 for s, sec, _ in lines)

    assert node_cuts == python_split(wav, server.target, tmp_path / "py.json")
    assert sum(k == "pause" for _, k in node_cuts) >= 2
    assert node_cuts[-1] == (info.frames, "end")


def test_node_client_errors_have_exit_codes_and_one_line(
    server: ServerThread, tmp_path: Path
) -> None:
    wav = speech_wav(tmp_path)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    res = node_split(str(wav), "--server", closed)
    assert res.returncode == 4, res.stderr
    assert res.stderr.startswith("error: UNAVAILABLE: ") and res.stderr.count("\n") == 1
    assert res.stdout == ""

    # A FLAC is not a WAV: refused before connecting (the server is not needed).
    res = node_split(str(SAMPLE), "--server", closed)
    assert res.returncode == 2
    assert res.stderr == f"error: {SAMPLE}: not a WAV file (no RIFF/WAVE header); " \
                         "convert it to 16-bit PCM WAV\n"
    float_wav = tmp_path / "float.wav"
    sf.write(str(float_wav), np.zeros((1600, 1), np.float32), 16000, subtype="FLOAT")
    res = node_split(str(float_wav), "--server", closed)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "only 16-bit integer PCM is supported" in res.stderr

    # The server's own refusal: a status line and exit 1.
    low_rate = tmp_path / "7k.wav"
    sf.write(str(low_rate), np.zeros((7000, 1), np.int16), 7000, subtype="PCM_16")
    res = node_split(str(low_rate), "--server", server.target)
    assert res.returncode == 1
    assert res.stderr.startswith("error: INVALID_ARGUMENT: config.format.sample_rate_hz: ")
    assert res.stderr.count("\n") == 1
