"""The README's examples run as they are written: every Python snippet against a real
server, and the Security section's shell block (CA, certificates, tokens, an mTLS +
token server and a split against it). Only the address is changed, to a free port.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ServerThread, serving

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[1] / "README.md"
DEFAULT_TARGET = "localhost:50051"


def blocks(lang: str, text: str | None = None) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text or README.read_text(), re.DOTALL)


def _env() -> dict[str, str]:
    # `python3` and `seamcut` in the examples are this environment's.
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with serving() as srv:
        yield srv


def test_the_readme_has_python_snippets_that_name_the_default_address() -> None:
    snippets = blocks("python")
    assert len(snippets) >= 3
    assert all(DEFAULT_TARGET in code for code in snippets if "Client(" in code)


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_each_python_snippet_runs(server: ServerThread, tmp_path: Path, index: int) -> None:
    code = blocks("python")[index].replace(DEFAULT_TARGET, server.target)
    compile(code, f"README.md python block {index}", "exec")  # a SyntaxError says which
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=180, env=_env(), check=False)
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_the_security_example_runs_as_written(tmp_path: Path) -> None:
    section = README.read_text().split("## Security", 1)[1].split("\n## ", 1)[0]
    (script,) = [b for b in blocks("sh", section) if "openssl" in b]
    setup, rest = script.split("seamcut serve", 1)
    serve_line, client = rest.split("\n# then, in another terminal in the same folder:\n", 1)
    subprocess.run(["bash", "-euo", "pipefail", "-c", setup], cwd=tmp_path, check=True,
                   capture_output=True, timeout=60, env=_env())
    serve_args = serve_line.replace("\\\n", " ").split()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "seamcut.cli", "serve", *serve_args,
                             "--port", "0"], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, env=_env())
    try:
        port = _wait_port(tmp_path / "serve.log", proc)
        res = subprocess.run(
            ["bash", "-euo", "pipefail", "-c",
             client.replace(DEFAULT_TARGET, f"localhost:{port}")],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_env(),
            check=False)
        assert res.returncode == 0, res.stderr
        assert " end " in res.stdout and " pause " in res.stdout
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _wait_port(log: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"listening on [^\s:]+:(\d+)", log.read_text())
        if m:
            return int(m.group(1))
        time.sleep(0.1)
    raise AssertionError(f"seamcut serve did not start:\n{log.read_text()}")
