"""The ``seamcut`` command: ``serve``, ``split``, ``bench`` and ``--version``.

``split`` and ``bench`` need only what ``pip install seamcut`` brings (the client).
``serve`` and the internal ``engine`` need the ``[server]`` (or ``[gpu]``) extra, as do
``bench --server spawn`` and ``bench --compare``; ``bench --plots`` needs ``[plots]``.
``seamcut.server`` is imported only for ``serve`` and ``engine``, and a missing extra is
reported in one line (exit 2) instead of a traceback from deep inside the engine's
start-up. Imports ``seamcut.client`` and ``seamcut.bench`` eagerly.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from seamcut import __version__
from seamcut.bench.config import SPAWN

# What the server imports that the client-only install lacks. Checked by name before
# the server starts: torch and silero_vad are imported only once the engine loads its
# models, long after the command has started.
SERVER_MODULES = (
    "grpc_health", "grpc_reflection", "soxr", "silero_vad", "zmq", "msgspec", "torch",
    "onnxruntime", "opentelemetry.trace", "opentelemetry.sdk",
    "opentelemetry.exporter.prometheus", "opentelemetry.exporter.otlp",
)
SERVER_COMMANDS = ("serve", "engine")


def version() -> str:
    """The installed distribution's version; ``__version__`` when run from a source tree
    that was never installed."""
    try:
        return metadata.version("seamcut")
    except metadata.PackageNotFoundError:
        return __version__


def missing_server_modules() -> list[str]:
    """The names in ``SERVER_MODULES`` that cannot be imported here (none imported)."""
    return [name for name in SERVER_MODULES if not _importable(name)]


def _importable(name: str) -> bool:
    # find_spec of "a.b" imports "a" and raises when "a" itself is missing; the
    # opentelemetry namespace can also be present with only the API installed.
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _missing_extra(args: argparse.Namespace) -> str | None:
    """The one line to print when this command needs an extra that is not installed."""
    if args.command in SERVER_COMMANDS:
        what = f"seamcut {args.command}"
    elif args.command == "bench" and (args.server == SPAWN or args.compare is not None):
        # A local server and the in-process baseline both run the server's code.
        option = f"--server {SPAWN}" if args.server == SPAWN else f"--compare {args.compare}"
        what = f"seamcut bench {option}"
    elif (args.command == "bench" and args.plots_dir is not None
          and importlib.util.find_spec("matplotlib") is None):
        return 'seamcut bench --plots needs matplotlib: pip install "seamcut[plots]"'
    else:
        return None
    missing = missing_server_modules()
    if not missing:
        return None
    return (f'{what} needs the server\'s dependencies: pip install "seamcut[server]" '
            f'(or "seamcut[gpu]" on a CUDA host); missing: {", ".join(missing)}')


def _command(raw: Sequence[str]) -> str | None:
    # The top level has options without values only (-h, --version), so the first
    # word that is not an option is the subcommand.
    return next((word for word in raw if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    # Before grpc is first imported (the client below), which is when grpc core reads
    # it: grpc's own INFO lines (e.g. on a failed TLS handshake) would otherwise come
    # before the one line the command prints about the same thing. Set it to override.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="seamcut", description="Find clean cut points at the pauses in audio."
    )
    parser.add_argument("--version", action="version", version=f"seamcut {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    from seamcut.bench import cli as bench  # its run() loads the load generator on demand
    from seamcut.client import split

    p_serve = sub.add_parser("serve", help="run the gRPC server")
    # Internal, started by `seamcut serve` (shows as "seamcut engine" in ps).
    p_engine = sub.add_parser("engine", help="(internal) one engine process of seamcut serve")
    if _command(raw) in SERVER_COMMANDS:
        from seamcut.server import main as serve

        serve.add_arguments(p_serve)
        p_serve.set_defaults(run=serve.run)
        serve.add_engine_arguments(p_engine)
        p_engine.set_defaults(run=serve.run_engine_process)
    p_split = sub.add_parser("split", help="stream a WAV/FLAC file, print (and write) cut points")
    split.add_arguments(p_split)
    p_split.set_defaults(run=split.run)
    p_bench = sub.add_parser("bench", help="load-test a server: latency, throughput, report")
    bench.add_arguments(p_bench)
    p_bench.set_defaults(run=bench.run)
    args = parser.parse_args(raw)
    refusal = _missing_extra(args)
    if refusal is not None:
        print(refusal, file=sys.stderr, flush=True)
        return 2
    args.serve_argv = raw[1:] if args.command == "serve" else []  # for worker processes
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
