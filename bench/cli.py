"""``seamcut bench``: the load generator's command line.

Exit codes (also in ``--help``): see :data:`EXIT_CODES`. When no stream got its Ready
(connection refused, DNS, TLS handshake, token refused) nothing was measured: the
bench prints one ``error:`` line naming the cause and writes no table, JSON, Markdown
or plots. When some streams got Ready and others failed it reports as usual, with the
failures counted (``errors``, ``streams.failed``).

Imports the SDK's ``security``, ``errors`` and ``explain`` (the flags and the error
lines ``seamcut split`` uses) and the bench's modules; ``baseline`` (and with it
``seamcut.server``) only for ``--compare``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from seamcut.bench.config import (
    DEFAULT_CHUNK_MS,
    DEFAULT_DURATION_S,
    DEFAULT_MAX_ACK_P99_MS,
    DEFAULT_TARGET,
    DEFAULT_WARMUP_S,
    SPAWN,
    BenchConfig,
    BenchConfigError,
    Limits,
    RampSpec,
    TransportOptions,
)
from seamcut.client import explain, security
from seamcut.client.errors import rpc_error

if TYPE_CHECKING:
    from seamcut.bench.recording import ErrorSample

EXIT_CODES = """\
exit codes (as `seamcut split`'s where they overlap):
  0    the run finished and was reported (stream errors, if any, are counted in it)
  1    no stream got Ready because the server refused every one (UNAUTHENTICATED: a
       missing or wrong token; RESOURCE_EXHAUSTED, ...), or a worker process crashed
  2    usage: a bad option, an unreadable file or PEM, --token with --token-file, or
       --server spawn failed to start
  3    --max-p99-ms given (fixed run) and a limit was crossed
  4    no stream got Ready because no connection was made: nothing listens, the name
       does not resolve, the TLS handshake failed
  130  interrupted
With 1 (refused) and 4 (no connection) the bench prints one "error:" line saying what
failed and writes no table, JSON, Markdown or plots: nothing was measured.

cut vs. look-ahead bound (ms): receive time of a CutPoint minus the send time of the
chunk that completes frame cut + look-ahead, i.e. how long after the server's
worst-case bound the cut arrived. Negative values are normal: a pause is decided as
soon as speech resumes, before the bound (JSON key: cut_finalization_latency_ms).
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _factor(text: str) -> float:
    try:
        return _positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"FACTOR must be a number such as 1 or 2.5, got {text!r} (put FILEs before "
            "--realtime, or give the factor explicitly: --realtime 1 FILE)") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``bench`` arguments to ``p`` (a subcommand parser or a fresh one)."""
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="WAV/FLAC files, looped; stream i plays file i mod n from its own "
                        "offset (default: the bundled speech sample; with --mode song the "
                        "bundled song)")
    p.add_argument("--server", default=DEFAULT_TARGET, metavar="HOST:PORT",
                   help=f"server address (default {DEFAULT_TARGET}); '{SPAWN}' starts a local "
                        "`seamcut serve` for the run and monitors it")
    p.add_argument("--server-pid", type=int, default=None, metavar="PID",
                   help="pid of a local server process: sample its CPU and RSS (with its "
                        "child processes: the workers of `seamcut serve --workers N`)")
    p.add_argument("--streams-per-connection", type=int, default=8, metavar="N",
                   help="streams sharing one gRPC connection (default 8; 1 = one connection "
                        "per stream, like independent live clients)")
    p.add_argument("--streams", type=int, default=1, metavar="N",
                   help="concurrent streams (with --ramp: the most to try); default 1")
    p.add_argument("--realtime", type=_factor, nargs="?", const=1.0, default=None,
                   metavar="FACTOR", help="pace each stream at FACTOR x real time (default 1) "
                                          "on a wall-clock schedule; without it, flood")
    p.add_argument("--chunk-ms", type=int, default=DEFAULT_CHUNK_MS, metavar="N",
                   help=f"audio per message, ms (default {DEFAULT_CHUNK_MS})")
    p.add_argument("--duration", type=_positive_float, default=DEFAULT_DURATION_S,
                   metavar="S", help=f"measured seconds after the warm-up (default "
                                     f"{DEFAULT_DURATION_S:g}); ignored with --ramp")
    p.add_argument("--warmup", type=_positive_float, default=DEFAULT_WARMUP_S, metavar="S",
                   help=f"seconds excluded from the figures at the start (of each ramp step); "
                        f"default {DEFAULT_WARMUP_S:g}")
    p.add_argument("--mode", choices=("speech", "song"), default="speech")
    p.add_argument("--ramp", type=str, default=None, metavar="START:STEP:EVERY_S",
                   help="add STEP streams every EVERY_S s from START up to --streams; stop "
                        "when a limit is crossed and report the knee")
    p.add_argument("--max-p99-ms", type=_positive_float, default=None, metavar="MS",
                   help=f"p99 ack latency limit (default {DEFAULT_MAX_ACK_P99_MS:g}); given "
                        "on a fixed run, exit 3 when any limit is crossed")
    p.add_argument("--processes", type=int, default=1, metavar="P",
                   help="spread the streams over P worker processes (default 1)")
    p.add_argument("--compare", choices=("inprocess",), default=None,
                   help="also run the same audio through the engine in this process (and, "
                        "for speech, silero-vad's get_speech_timestamps)")
    p.add_argument("--idle", action="store_true",
                   help="open --streams streams that send only their config and report the "
                        "server's RSS per stream (needs --server-pid or --server spawn)")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                   help="write the full report as JSON ('-' for stdout)")
    p.add_argument("--markdown", dest="markdown_out", default=None, metavar="OUT",
                   help="write a Markdown summary")
    p.add_argument("--plots", dest="plots_dir", default=None, metavar="DIR",
                   help="write PNG plots into DIR")
    p.add_argument("--quiet", action="store_true", help="no table, no live line")
    security.add_arguments(p)  # the same flags as `seamcut split`
    # Set here, not by the caller: `seamcut bench --help` is a subparser of seamcut's.
    p.epilog = EXIT_CODES
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def transport_from_args(args: argparse.Namespace) -> TransportOptions:
    """Where and how to connect. Raises ValueError for an unusable security flag (a
    certificate without its key, an unreadable PEM or token file, a bad token), so the
    run fails before it starts rather than in every stream."""
    from seamcut.bench.load import SecureTransport

    sec = security.client_kwargs(args)  # checks the flags, reads the files
    security.channel_credentials(tls=sec["tls"], tls_ca=sec["tls_ca"], tls_cert=sec["tls_cert"],
                                 tls_key=sec["tls_key"])
    security.token_metadata(sec["token"])
    # The paths, not the PEM text: the config goes into the JSON report (a private key
    # must not) and to worker processes, which read the files themselves.
    return SecureTransport(target=args.server, server_pid=args.server_pid,
                           streams_per_connection=args.streams_per_connection,
                           tls=args.tls, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                           tls_key=args.tls_key, token=sec["token"],
                           tls_server_name=sec["tls_server_name"])


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The run's config. Raises BenchConfigError naming the bad option (ValueError for a
    bad security flag)."""
    limits = Limits() if args.max_p99_ms is None else Limits(ack_p99_ms=args.max_p99_ms)
    return BenchConfig(
        files=tuple(args.files),
        transport=transport_from_args(args),
        streams=args.streams, realtime_factor=args.realtime, chunk_ms=args.chunk_ms,
        duration_s=args.duration, warmup_s=args.warmup, mode=args.mode,
        ramp=None if args.ramp is None else RampSpec.parse(args.ramp),
        limits=limits, check_limits=args.max_p99_ms is not None and args.ramp is None,
        processes=args.processes, compare_inprocess=args.compare == "inprocess",
        idle=args.idle, live=not args.quiet,
    )


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr, flush=True)
    return code


def connect_error(first: ErrorSample | None, target: str) -> tuple[str, int]:
    """The one line printed when no stream got Ready, and the exit code: from the first
    stream's error, through the same table as ``seamcut split`` (``client.explain``):
    4 when no connection was made (refused, DNS, TLS, timeout), 1 when the server
    answered and refused the stream (a missing or wrong token, a full server)."""
    if first is None:
        return f"error: no stream reached {target} (no stream was opened)", explain.EXIT_STREAM
    details = " ".join(first.details.split())  # one line, always
    code = getattr(grpc.StatusCode, first.code, None)
    if not isinstance(code, grpc.StatusCode):  # DRAIN_TIMEOUT, CLIENT_<Exception>
        return (f"error: no stream got Ready from {target} ({first.code}): {details}",
                explain.EXIT_STREAM)
    # answered=False: no Ready came, so an UNAVAILABLE is a failed connection.
    exc = rpc_error(code, details, answered=False)
    return explain.error_line(exc, target=target), explain.exit_code(exc)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """Run ``seamcut bench`` with parsed ``args``; return the exit code."""
    # grpc core logs a failed TLS handshake itself at INFO; the one error line says it.
    # grpc reads this when it is first imported: worker processes (started below)
    # obey it; this process only if it was set before the `seamcut` command imported
    # grpc.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from seamcut.bench.localserver import LocalServer, ServerStartError
    from seamcut.bench.source import load_sources

    try:
        cfg = config_from_args(args)
        sources = load_sources(cfg.files, cfg.chunk_ms, cfg.mode)
        from seamcut.client.aio import MAX_MESSAGE_BYTES

        for src in sources:
            # One send() must stay one AudioChunk: acks are matched by the seq it gets.
            if src.chunk_frames * src.frame_bytes > MAX_MESSAGE_BYTES:
                raise BenchConfigError(
                    f"--chunk-ms: {cfg.chunk_ms} ms of {src.path} is "
                    f"{src.chunk_frames * src.frame_bytes} bytes, over the SDK's "
                    f"{MAX_MESSAGE_BYTES}-byte message; use shorter chunks")
        for out in (args.json_out, args.markdown_out):
            if out not in (None, "-") and not Path(out).parent.is_dir():
                raise BenchConfigError(f"{out}: directory does not exist")
        if cfg.idle and cfg.transport.server_pid is None and cfg.transport.target != SPAWN:
            raise BenchConfigError("--idle needs --server-pid PID or --server spawn")
    except (ValueError, OSError) as exc:  # BenchConfigError, AudioError, a security flag
        return _fail(f"error: {exc}", 2)
    argv = list(argv) if argv is not None else list(sys.argv)
    spawned: LocalServer | None = None
    try:
        if cfg.transport.target == SPAWN:
            # All of a bench's streams come from one address: that is the point of a
            # load test, not the abuse server.max_streams_per_peer guards against.
            spawned = LocalServer(env={"SEAMCUT_SERVER_MAX_STREAMS_PER_PEER": "0"})
            cfg = replace(cfg, transport=replace(
                cfg.transport, target=spawned.target,
                server_pid=cfg.transport.server_pid or spawned.pid))
        return _run(cfg, sources, args, argv)
    except ServerStartError as exc:
        return _fail(f"error: {exc}", 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    finally:
        if spawned is not None:
            spawned.stop()


def _run(cfg: BenchConfig, sources: Any, args: argparse.Namespace, argv: list[str]) -> int:
    from seamcut.bench import render
    from seamcut.bench.report import build_idle_report, build_report
    from seamcut.bench.runner import Runner
    from seamcut.bench.sysmon import ProcessGroup, machine_info, now_iso, software_info
    from seamcut.bench.worker import WorkerError

    date, machine, software = now_iso(), machine_info(), software_info()
    if cfg.idle:
        from seamcut.bench.idle import measure_idle

        assert cfg.transport.server_pid is not None
        group = ProcessGroup([cfg.transport.server_pid], children=True)
        idle = asyncio.run(measure_idle(cfg, sources, group))
        if not idle.opened:
            codes = ", ".join(f"{k} x{v}" for k, v in sorted(idle.errors_by_code.items()))
            # Only counts by status survive here, not the details: UNAVAILABLE is taken
            # as no connection, as connect_error() does for a measured run.
            return _fail(f"error: no idle stream got Ready from {cfg.transport.target} "
                         f"({codes or 'no stream opened'})",
                         explain.EXIT_CONNECT if "UNAVAILABLE" in idle.errors_by_code
                         else explain.EXIT_STREAM)
        report = build_idle_report(idle, cfg_json=cfg.to_json(), argv=argv, date=date,
                                   machine=machine, target=cfg.transport.target,
                                   software=software)
        if not args.quiet:
            print(render.terminal_table(report), flush=True)
        return _write(report, args, 0)
    live = sys.stderr if cfg.live and sys.stderr.isatty() else None
    runner = Runner(cfg, sources, target=cfg.transport.target,
                    server_pid=cfg.transport.server_pid, live=live)
    try:
        result = asyncio.run(runner.run())
    except WorkerError as exc:
        return _fail(f"error: {exc}", 1)
    if result.server is None:
        # Nothing was measured: a table of dashes, a report or plots would only look
        # like figures.
        return _fail(*connect_error(result.errors[0] if result.errors else None,
                                    cfg.transport.target))
    compare = _compare(cfg, sources, result) if cfg.compare_inprocess else None
    report = build_report(result, argv=argv, date=date, machine=machine, software=software,
                          compare=compare)
    code = 3 if result.verdict is not None and not result.verdict.passed else 0
    if not args.quiet:
        print(render.terminal_table(report), flush=True)
    return _write(report, args, code)


def _compare(cfg: BenchConfig, sources: Any, result: Any) -> Any:
    from seamcut.bench import baseline
    from seamcut.bench.report import Compare

    flood = cfg.realtime_factor is None and cfg.ramp is None
    note = "" if flood else ("the gRPC run was paced or ramped: its throughput is not a "
                             "capacity, so no ratio; run without --realtime/--ramp for one")
    chunks = {i: n for i, n in result.chunks_per_stream.items() if n > 0}
    inproc = silero = None
    try:
        if chunks:
            inproc = baseline.inprocess(sources, chunks, cfg.mode)
        if cfg.mode == "speech":
            total = inproc.audio_seconds / max(inproc.streams, 1) if inproc else 0.0
            silero = baseline.silero_vad(sources[0], total)
    except Exception as exc:  # a baseline that cannot run is reported, not fatal
        note = (note + "; " if note else "") + f"baseline failed: {type(exc).__name__}: {exc}"
    return Compare(inprocess=inproc, silero_vad=silero,
                   grpc_audio_seconds_per_second=(result.window.audio_seconds_per_second
                                                  if flood else None), note=note)


def _write(report: dict[str, Any], args: argparse.Namespace, code: int) -> int:
    from seamcut.bench import render

    try:
        if args.json_out is not None:
            text = json.dumps(report, indent=1) + "\n"
            if args.json_out == "-":
                sys.stdout.write(text)
            else:
                Path(args.json_out).write_text(text)
        if args.markdown_out is not None:
            Path(args.markdown_out).write_text(render.markdown(report))
        if args.plots_dir is not None:
            from seamcut.bench.plots import write_plots

            write_plots(report, args.plots_dir)
    except OSError as exc:
        return _fail(f"error: {exc}", 2)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m seamcut.bench.cli ...``."""
    parser = argparse.ArgumentParser(prog="seamcut bench",
                                     description="Load-test a seamcut server.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args, None if argv is None else ["seamcut", "bench", *argv])


if __name__ == "__main__":
    raise SystemExit(main())
