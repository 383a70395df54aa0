"""The folder tree is the architecture: imports point one way only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
LEAVES = {"config", "errors", "events"}
# layer -> the server layers it may import (besides the leaves)
ALLOWED = {
    "transport": {"transport", "session", "engine", "models", "dsp", "offline"},
    "offline": {"session", "engine"},
    "main": {"transport", "engine"},  # engine: only the `seamcut engine` entry point
    "session": {"session", "engine", "models", "dsp"},
    "engine": {"engine", "models", "dsp"},
    "models": {"models"},
    "dsp": {"dsp"},
}
PROTO_LAYERS = {"transport"}


def server_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def layer_of(path: Path) -> str:
    rel = path.relative_to(ROOT / "server")
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


@pytest.mark.parametrize("path", sorted((ROOT / "server").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    layer = layer_of(path)
    if layer in LEAVES or layer == "__init__":
        allowed: set[str] = set()
    else:
        allowed = ALLOWED[layer]
    for name in server_imports(path):
        if name.startswith("seamcut.v1") or name in ("grpc", "grpc_health", "grpc_reflection"):
            assert layer in PROTO_LAYERS, f"{path.name} ({layer}) imports {name}"
        if name.startswith("seamcut.server."):
            target = name.split(".")[2]
            if layer in LEAVES:
                assert target == "errors", f"leaf {layer} imports {name}"
                continue
            assert target in LEAVES or target in allowed, f"{layer} may not import {name}"


# Outside server/engine/, only the interface and the wire types of the engine may be
# imported: the stage threads, the model step and the IPC shells stay behind it.
ENGINE_INTERFACE = {"seamcut.server.engine.client", "seamcut.server.engine.protocol"}


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "server").rglob("*.py")
                                        if "engine" not in p.relative_to(ROOT).parts),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_engine_interface_is_used_outside_the_engine(path: Path) -> None:
    allowed = ENGINE_INTERFACE | ({"seamcut.server.engine.process"}
                                  if path.name == "main.py" else set())
    for name in server_imports(path):
        if name.startswith("seamcut.server.engine"):
            assert name in allowed, f"{path.name} imports {name}"


def test_no_bare_top_level_packages_installed(tmp_path: Path) -> None:
    """Outside the repo, only the namespaced names import (no site-packages `server`)."""
    import subprocess
    import sys

    code = ("import importlib.util as u; print([n for n in ('server', 'client', 'bench') "
            "if u.find_spec(n)], bool(u.find_spec('seamcut.server')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[] True"


def test_every_package_has_a_docstring() -> None:
    for init in [*ROOT.glob("server/**/__init__.py"), ROOT / "server/__init__.py"]:
        assert ast.get_docstring(ast.parse(init.read_text())), init
