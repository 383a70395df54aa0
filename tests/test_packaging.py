"""Packaging: the wheel, the client-only install, the extras (docs/INSTALL.md).

The integration tests build the wheel out of the checkout, install it without extras
into a fresh venv (pip's configured index and find-links supply the dependencies) and
run that venv's ``seamcut`` against a real server started from this environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
from seamcut.bench.localserver import LocalServer

from seamcut import __version__
from seamcut.cli import SERVER_MODULES

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SAMPLE = str(resources.files("seamcut.samples") / "speech_en.flac")
CLIENT_ONLY_LIMIT_MB = 200
# The import name of each distribution in the server's extras.
MODULE_OF = {
    "grpcio-health-checking": "grpc_health", "grpcio-reflection": "grpc_reflection",
    "soxr": "soxr", "silero-vad": "silero_vad", "pyzmq": "zmq", "msgspec": "msgspec",
    "torch": "torch", "onnxruntime": "onnxruntime",
    # One module each: the opentelemetry namespace exists with any one of them.
    "opentelemetry-api": "opentelemetry.trace", "opentelemetry-sdk": "opentelemetry.sdk",
    "opentelemetry-exporter-prometheus": "opentelemetry.exporter.prometheus",
    "opentelemetry-exporter-otlp-proto-grpc": "opentelemetry.exporter.otlp",
}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def _extra(name: str) -> list[str]:
    return list(PYPROJECT["project"]["optional-dependencies"][name])


@pytest.mark.unit
def test_gpu_extra_is_the_server_extra_with_the_gpu_onnxruntime() -> None:
    # Both ONNX Runtime flavours install the `onnxruntime` module: [gpu] must not pull in
    # [server]'s, and must not drift from [server] otherwise.
    server, gpu = _extra("server"), _extra("gpu")
    assert [r for r in server if _name(r) != "onnxruntime"] == [
        r for r in gpu if _name(r) not in ("onnxruntime-gpu", "onnx")]
    assert "onnxruntime" not in {_name(r) for r in gpu}
    assert {_name(r) for r in gpu} - {_name(r) for r in server} == {"onnxruntime-gpu", "onnx"}
    assert _extra("cpu") == ["seamcut[server]"]


@pytest.mark.unit
def test_base_install_has_no_server_dependency_and_cli_checks_them_all() -> None:
    base = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    server = {_name(r) for r in _extra("server")}
    assert not base & server
    assert {MODULE_OF[name] for name in server} == set(SERVER_MODULES)


@dataclass(frozen=True)
class ClientVenv:
    wheel: Path
    bin: Path
    size_mb: float
    status_before: str
    status_after: str


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def _disk_mb(path: Path) -> float:
    """Allocated size of a tree, as ``du -sm`` counts it (hard links once)."""
    seen: set[int] = set()
    blocks = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                blocks += st.st_blocks
    return blocks * 512 / 2**20


def _run(*cmd: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # cwd "/": nothing may resolve against the checkout (`python -c` imports from cwd).
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, cwd="/", check=False)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> ClientVenv:
    tmp = tmp_path_factory.mktemp("packaging")
    status_before = _git_status()
    built = _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist",
                 ROOT)
    status_after = _git_status()
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("seamcut-*.whl")
    venv = tmp / "venv"
    made = _run(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    installed = _run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, timeout=600)
    assert installed.returncode == 0, installed.stderr
    return ClientVenv(wheel=wheel, bin=venv / "bin", size_mb=_disk_mb(venv),
                      status_before=status_before, status_after=status_after)


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with LocalServer() as srv:  # this environment's `seamcut serve`, with the models
        yield srv.target


@pytest.mark.integration
def test_wheel_build_leaves_the_checkout_untouched(client_venv: ClientVenv) -> None:
    # No build/ or seamcut.egg-info in the tree (setuptools writes both where it runs).
    assert client_venv.status_after == client_venv.status_before


@pytest.mark.integration
def test_wheel_holds_the_namespaced_packages_and_their_data(client_venv: ClientVenv) -> None:
    names = set(zipfile.ZipFile(client_venv.wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    assert tops == {"seamcut", f"seamcut-{__version__}.dist-info"}
    packages = {n.rsplit("/", 1)[0] for n in names if n.startswith("seamcut/")}
    assert packages == {p.replace(".", "/") for p in PYPROJECT["tool"]["setuptools"]["packages"]}
    samples = {n for n in names if n.startswith("seamcut/samples/")}
    assert samples == {f"seamcut/samples/{f}" for f in (
        "README.md", "speech_en.flac", "speech_en.json", "song_en.flac", "song_en.json")}
    assert "seamcut/v1/seamcut_pb2.pyi" in names
    assert "seamcut/server/main.py" in names and "seamcut/bench/cli.py" in names
    # SONG mode's voice detector weights ship inside the package (nothing downloaded).
    assert "seamcut/server/models/voice_gru.npz" in names
    for folder in ("server", "client", "bench"):  # same modules (and weights) as the checkout
        tree = {str(p.relative_to(ROOT / folder)) for ext in ("py", "npz")
                for p in (ROOT / folder).rglob(f"*.{ext}")}
        assert {n.removeprefix(f"seamcut/{folder}/") for n in names
                if n.startswith(f"seamcut/{folder}/")} == tree


@pytest.mark.integration
def test_client_only_install_is_small_and_has_no_models(client_venv: ClientVenv) -> None:
    code = ("import importlib.util as u; print([m for m in ('torch', 'onnxruntime', "
            "'silero_vad', 'zmq', 'soxr', 'matplotlib') if u.find_spec(m)])")
    res = _run(client_venv.bin / "python", "-c", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    assert client_venv.size_mb < CLIENT_ONLY_LIMIT_MB, f"{client_venv.size_mb:.0f} MB"


@pytest.mark.integration
def test_client_only_version_split_and_bench(client_venv: ClientVenv, target: str,
                                             tmp_path: Path) -> None:
    seamcut = client_venv.bin / "seamcut"
    res = _run(seamcut, "--version")
    assert (res.returncode, res.stdout) == (0, f"seamcut {__version__}\n"), res.stderr
    res = _run(seamcut, "split", SAMPLE, "--server", target, "--json", tmp_path / "a.json")
    assert res.returncode == 0, res.stderr
    assert "pause" in res.stdout and re.search(r"\d+ cuts \(\d+ pause", res.stdout)
    # The same cuts as this environment's client gets from the same server.
    ref = _run(sys.executable, "-m", "seamcut.cli", "split", SAMPLE, "--server", target,
               "--json", tmp_path / "b.json", "--quiet")
    assert ref.returncode == 0, ref.stderr
    cuts = [json.loads((tmp_path / f).read_text())["cuts"] for f in ("a.json", "b.json")]
    assert len(cuts[0]) >= 3 and cuts[0] == cuts[1]
    res = _run(seamcut, "bench", "--server", target, "--duration", "1", "--warmup", "0",
               "--quiet", "--json", "-")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["software"]["seamcut"] == __version__


@pytest.mark.integration
@pytest.mark.parametrize("args", [("serve",), ("bench", "--server", "spawn")])
def test_client_only_server_commands_name_the_extra(client_venv: ClientVenv,
                                                    args: tuple[str, ...]) -> None:
    res = _run(client_venv.bin / "seamcut", *args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert 'pip install "seamcut[server]"' in res.stderr
    assert "missing: " in res.stderr and "onnxruntime" in res.stderr and "torch" in res.stderr
