"""Regenerate the gRPC stubs in seamcut/v1/ from protos/ (never edit them by hand).

Usage: python scripts/gen_protos.py [OUT_ROOT]   (default: the repo root)
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent


def generate(out_root: Path) -> None:
    """Write seamcut/v1/*_pb2*.py(i) under out_root."""
    proto_dir = ROOT / "protos"
    # Only seamcut's own protos: protos/grpc/ holds the standard health proto for
    # other languages, whose Python stubs come with grpcio-health-checking.
    protos = sorted(str(p.relative_to(proto_dir))
                    for p in (proto_dir / "seamcut").rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    (out_root / "seamcut" / "v1").mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{proto_dir}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
