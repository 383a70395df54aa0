"""The ``seamcut`` command: ``serve``, ``split`` (and ``bench`` when installed)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seamcut", description="Find clean cut points at the pauses in audio."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from seamcut.client import split
    from seamcut.server import main as serve

    p_serve = sub.add_parser("serve", help="run the gRPC server")
    serve.add_arguments(p_serve)
    p_serve.set_defaults(run=serve.run)
    # Internal, started by `seamcut serve` (shows as "seamcut engine" in ps).
    p_engine = sub.add_parser("engine", help="(internal) one engine process of seamcut serve")
    serve.add_engine_arguments(p_engine)
    p_engine.set_defaults(run=serve.run_engine_process)
    p_split = sub.add_parser("split", help="stream a WAV/FLAC file, print (and write) cut points")
    split.add_arguments(p_split)
    p_split.set_defaults(run=split.run)
    from seamcut.bench import cli as bench  # its run() loads the load generator on demand

    p_bench = sub.add_parser("bench", help="load-test a server: latency, throughput, report")
    bench.add_arguments(p_bench)
    p_bench.set_defaults(run=bench.run)
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    args.serve_argv = raw[1:] if args.command == "serve" else []  # for worker processes
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
