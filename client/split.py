"""``seamcut split FILE``: find the cut points of an audio file, print them, save them.

Streams the file to a server (``--server``, default localhost:50051), optionally paced
at real time, or analyses it in this process (``--offline``, needs the server's
dependencies; imported lazily so the client works without them). Seconds on the
command line, milliseconds in the protocol. Exit codes: see ``explain`` (0 ok, 1 the
stream failed, 2 usage or file error, 3 the server drained before the end of the file,
4 no usable connection, 130 interrupted); every failure is one line on stderr.

Imports the SDK (``aio``, ``audio``, ``errors``, ``explain``, ``security``, ``stream``,
``table``); ``seamcut.server`` only inside :func:`analyze_offline`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt
from seamcut.client import explain, security
from seamcut.client.aio import DEFAULT_TARGET, AsyncClient
from seamcut.client.audio import AudioInfo, read_for_wire, write_segments
from seamcut.client.errors import AudioError, ClientError, SeamcutRpcError, rpc_error
from seamcut.client.resume import MAX_REPLAY_S
from seamcut.client.sending import (
    FILE_CHUNK_MS,
    REALTIME_CHUNK_MS,
    SendLog,
    chunk_ends,
    chunk_frames_for,
    iter_chunks,
)
from seamcut.client.stream import (
    DRAINING_NOTICE,
    CutEvent,
    Event,
    NoticeEvent,
    ReadyEvent,
    ResumedEvent,
    StreamOptions,
    SummaryEvent,
    event_from_proto,
)
from seamcut.client.table import (
    LATENCY_HELP,
    CutRow,
    SplitReport,
    build_report,
    format_ready,
    format_row,
    no_pause_hint,
    report_json,
    summary_line,
    table_header,
)
from seamcut.client.targets import DEFAULT_PORT, with_default_port

MAX_CHUNK_MS = 10_000  # the server's default limit on one AudioChunk
REQUEST_ID = "seamcut-split"
# Long enough for a loaded server to admit the stream, short enough that a listener
# that never answers (or a TLS/plaintext mismatch) is reported instead of hanging.
DEFAULT_TIMEOUT_S = 10.0


# ---------------------------------------------------------------- arguments


def _chunk_ms(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole milliseconds, got {text!r}") from None
    if not 1 <= value <= MAX_CHUNK_MS:
        raise argparse.ArgumentTypeError(f"must be 1 ..= {MAX_CHUNK_MS} ms, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a non-negative number of seconds, got {text}")
    return value


def _timeout(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


EPILOG = f"""\
exit codes: 0 ok; 1 the server ended the stream with an error; 2 usage, option or
file error; 3 the server drained before the whole file was sent (the cuts it sent are
printed); 4 no usable connection (nothing listening, TLS failure, --timeout); 130
interrupted.

{LATENCY_HELP}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``split`` arguments to ``parser`` (a subcommand parser or a fresh one)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("file", metavar="FILE", help="audio file to split (WAV or FLAC)")
    parser.add_argument("--server", default=DEFAULT_TARGET, metavar="HOST[:PORT]",
                        help=f"server address (default {DEFAULT_TARGET}; the port defaults "
                             f"to {DEFAULT_PORT}); several replicas as A,B,C: the "
                             "stream goes to one, and to another if it is refused")
    parser.add_argument("--timeout", type=_timeout, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help="seconds to wait for the server to open the stream (default "
                             f"{DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--chunk-ms", type=_chunk_ms, default=None, metavar="N",
                        help="audio per message, ms (default 100 with --realtime, else 1000: "
                             "fewer, larger messages are faster when sending a whole file)")
    parser.add_argument("--realtime", action="store_true",
                        help="pace sending at real time, as a live source would, and report "
                             "when each cut became final against the look-ahead bound "
                             "(see below)")
    parser.add_argument("--mode", choices=("speech", "song"), default=None,
                        help="speech (no separation) or song (default: the server's)")
    for flag, what in (
        ("--min-segment", "shortest segment"),
        ("--max-segment", "longest segment before a forced cut; 0 = no maximum"),
        ("--min-gap", "minimum distance between pause cuts; 0 = off"),
        ("--min-pause", "shortest silence that counts as a pause"),
    ):
        parser.add_argument(flag, type=_seconds, default=None, metavar="S",
                            help=f"{what}, seconds (default: the server's)")
    parser.add_argument("--background-voices", action="store_true", default=None,
                        help="SPEECH mode: other people talk behind the speaker; find the "
                             "speaker's pauses by level drops too (not for a speaker alone "
                             "or over music: it would cut into quiet passages)")
    parser.add_argument("--vocal-stem", metavar="VOCAL", default=None,
                        help="SONG mode: a clean vocal stem of FILE (same rate and length); "
                             "detection runs on it, cuts still snap on FILE")
    parser.add_argument("--separator", default="", metavar="NAME",
                        help="SONG mode: separator backend (default: the server's)")
    parser.add_argument("--json", dest="json_out", metavar="OUT", default=None,
                        help="write the cut points as JSON to OUT ('-' for stdout: then "
                             "stdout has the JSON alone and the table goes to stderr)")
    parser.add_argument("--segments", dest="segments_dir", metavar="DIR", default=None,
                        help="write the segments as DIR/0000.wav ... (same container and "
                             "sample format as FILE; they concatenate to FILE exactly)")
    parser.add_argument("--offline", action="store_true",
                        help="analyse in this process with the server's defaults; no server")
    parser.add_argument("--quiet", action="store_true",
                        help="print nothing but errors (and --json -)")
    security.add_arguments(parser)


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def options_from_args(args: argparse.Namespace, info: AudioInfo,
                      stem_channels: int = 0) -> StreamOptions:
    """The stream config for ``args`` and the file described by ``info`` (plus
    ``stem_channels`` interleaved vocal-stem channels after the file's own)."""
    return StreamOptions(
        sample_rate_hz=info.sample_rate_hz,
        channels=info.channels + stem_channels,
        encoding="f32le" if stem_channels else info.wire_encoding,
        mode="song" if stem_channels else args.mode,
        separator=getattr(args, "separator", ""),
        vocal_stem_channels=tuple(range(info.channels, info.channels + stem_channels)),
        min_segment_ms=_ms(args.min_segment),
        max_segment_ms=_ms(args.max_segment),
        min_gap_ms=_ms(args.min_gap),
        min_pause_ms=_ms(args.min_pause),
        background_voices=getattr(args, "background_voices", None),
        chunk_traces=False,  # not shown; saves a message per block
        request_id=REQUEST_ID,
    )


# ---------------------------------------------------------------- sending


async def _paced(
    chunks: Iterator[tuple[int, bytes]], log: SendLog, *, realtime: bool
) -> AsyncIterator[bytes]:
    """The file's chunks, at real time if asked; records when each one went out (the
    generator resumes once the SDK has handed the previous chunk to the transport)."""
    log.t0 = time.monotonic()
    for end, data in chunks:
        if realtime:
            delay = log.due(end) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield data
        log.record(time.monotonic())


# ---------------------------------------------------------------- output


class _Printer:
    def __init__(self, out: TextIO, *, quiet: bool, realtime: bool) -> None:
        self.out, self.quiet, self.realtime = out, quiet, realtime

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    def ready(self, ev: ReadyEvent, info: AudioInfo, opts: StreamOptions) -> None:
        self.line(format_ready(ev, file=str(info.path), sample_rate_hz=info.sample_rate_hz,
                               channels=info.channels, encoding=f"{info.subtype}->{opts.encoding}"))
        self.line(table_header(realtime=self.realtime))

    def cut(self, row: CutRow) -> None:
        self.line(format_row(row, realtime=self.realtime))

    def notice(self, ev: NoticeEvent) -> None:
        print(f"notice: {ev.code}: {ev.message}", file=sys.stderr, flush=True)

    def resumed(self, ev: ResumedEvent, rate_hz: int) -> None:
        print(f"resumed on another replica from {ev.resume_sample / rate_hz:.2f} s "
              f"({ev.reason})", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- online / offline


async def stream_file(
    args: argparse.Namespace, frames: npt.NDArray[np.generic], info: AudioInfo,
    opts: StreamOptions, printer: _Printer, client: AsyncClient,
) -> tuple[list[Event], dict[int, float]]:
    """Stream ``frames`` to the server; print cuts as they come. Returns the events
    and, for real-time runs, each cut's finality against the look-ahead bound in ms
    (by cut index; see LATENCY_HELP)."""
    chunk_frames = chunk_frames_for(info.sample_rate_hz, args.chunk_ms, opts.frame_bytes)
    log = SendLog(chunk_ends(info.frames, chunk_frames), info.sample_rate_hz)
    events: list[Event] = []
    latencies: dict[int, float] = {}
    lookahead = 0
    audio = _paced(iter_chunks(frames, opts.encoding, chunk_frames), log,
                   realtime=args.realtime)
    async with client:
        async for ev in client.stream_cuts(opts, audio, ready_timeout=args.timeout):
            now = time.monotonic()
            events.append(ev)
            if isinstance(ev, ReadyEvent):
                lookahead = ev.lookahead_samples
                printer.ready(ev, info, opts)
            elif isinstance(ev, CutEvent):
                sent = log.sent_at(ev.sample - opts.start_sample + lookahead)
                if args.realtime and sent is not None:
                    latencies[ev.index] = (now - sent) * 1000
                printer.cut(CutRow(cut=ev, latency_ms=latencies.get(ev.index)))
            elif isinstance(ev, NoticeEvent):
                printer.notice(ev)
            elif isinstance(ev, ResumedEvent):
                printer.resumed(ev, info.sample_rate_hz)
    return events, latencies


def analyze_offline(frames: npt.NDArray[np.generic], info: AudioInfo, opts: StreamOptions,
                    chunk_ms: int) -> list[Event]:
    """Run the server's pipeline in this process; return its events as client events.

    Raises SeamcutRpcError with the status the server would have sent for its errors.
    """
    # Lazy: the client must import without the server's dependencies (torch, ...).
    from seamcut.server.config import load_config
    from seamcut.server.errors import SeamcutError
    from seamcut.server.offline import analyze
    from seamcut.server.transport import convert
    from seamcut.server.transport.status import status_for

    chunk_frames = chunk_frames_for(info.sample_rate_hz, chunk_ms, opts.frame_bytes)
    chunks = [data for _, data in iter_chunks(frames, opts.encoding, chunk_frames)]
    try:
        cfg = load_config()
        # The server's own StreamConfig -> spec path (stream_spec inside), so offline
        # validates and applies defaults exactly as a served stream would.
        spec = convert.spec_from_proto(cfg, opts.to_proto())
        server_events = analyze(cfg, spec, chunks)
    except SeamcutError as exc:
        raise rpc_error(status_for(exc), str(exc)) from exc
    # Through the server's event -> message conversion too: offline events are exactly
    # what the wire would carry, with no second mapping to keep in step.
    converted = (event_from_proto(convert.event_to_proto(ev, spec)) for ev in server_events)
    return [ev for ev in converted if ev is not None]


def with_vocal_stem(frames: npt.NDArray[np.generic], info: AudioInfo,
                    stem_path: str) -> npt.NDArray[np.float32]:
    """Interleave the downmixed stem after the mix's channels, as float32 (exact for
    int16 and float files)."""
    stem, stem_info = read_for_wire(stem_path)
    if (stem_info.sample_rate_hz, stem_info.frames) != (info.sample_rate_hz, info.frames):
        raise AudioError(
            f"--vocal-stem {stem_path}: {stem_info.frames} frames at "
            f"{stem_info.sample_rate_hz} Hz, but {info.path} has {info.frames} at "
            f"{info.sample_rate_hz} Hz; they must match"
        )

    def as_float(a: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        if a.dtype == np.int16:
            return a.astype(np.float32) / np.float32(32768)
        return a.astype(np.float32)

    vocal = as_float(stem).mean(axis=1, keepdims=True, dtype=np.float32)
    return np.concatenate([as_float(frames), vocal], axis=1)


def _os_error_line(exc: OSError) -> str:
    return f"error: {exc.filename or ''}: {exc.strerror or exc}"


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr, flush=True)
    return code


def chunk_ms_of(args: argparse.Namespace) -> int:
    """``--chunk-ms``, or its default: 100 ms paced like a live source, 1 s for a file."""
    if args.chunk_ms is not None:
        return int(args.chunk_ms)
    return REALTIME_CHUNK_MS if args.realtime else FILE_CHUNK_MS


def client_for(replicas: list[str], info: AudioInfo, args: argparse.Namespace) -> AsyncClient:
    """The client for a split of ``info``: with replicas, it keeps the whole file for a
    resume (the file is in memory already), so a resume finds its checkpoint's audio
    however far ahead of the analysis the file was sent."""
    return AsyncClient(replicas, max_replay_s=max(MAX_REPLAY_S, math.ceil(info.seconds) + 1),
                       **security.client_kwargs(args))


def run(args: argparse.Namespace) -> int:
    """Run ``seamcut split`` with parsed ``args``; return the exit code (see ``explain``)."""
    replicas = [with_default_port(t) for t in args.server.split(",") if t.strip()]
    target = ", ".join(replicas)
    if not replicas:
        return _fail("error: --server: give an address (HOST[:PORT])", explain.EXIT_USAGE)
    try:
        frames, info = read_for_wire(args.file)
        stem = getattr(args, "vocal_stem", None)
        if stem is not None:
            frames = with_vocal_stem(frames, info, stem)
        opts = options_from_args(args, info, 1 if stem is not None else 0)
        # Built here, not in the event loop: bad TLS files and flags are usage errors.
        # One address or several: channel_target treats a list of one as that address.
        client = None if args.offline else client_for(replicas, info, args)
        if args.segments_dir is not None:
            Path(args.segments_dir).mkdir(parents=True, exist_ok=True)
        if args.json_out not in (None, "-") and not Path(args.json_out).parent.is_dir():
            raise AudioError(f"--json {args.json_out}: directory does not exist")
    except SeamcutRpcError as exc:  # a replica list whose name does not resolve
        return _fail(explain.error_line(exc, target=target), explain.exit_code(exc))
    except ClientError as exc:
        return _fail(f"error: {exc}", explain.EXIT_USAGE)
    except OSError as exc:
        return _fail(_os_error_line(exc), explain.EXIT_USAGE)

    args.chunk_ms = chunk_ms_of(args)
    # With --json - the JSON alone goes to stdout; the table moves to stderr.
    out = sys.stderr if args.json_out == "-" else sys.stdout
    printer = _Printer(out, quiet=args.quiet, realtime=args.realtime)
    latencies: dict[int, float] = {}
    t0 = time.monotonic()
    try:
        if client is None:
            events = analyze_offline(frames, info, opts, args.chunk_ms)
            for ev in events:
                if isinstance(ev, ReadyEvent):
                    printer.ready(ev, info, opts)
                elif isinstance(ev, CutEvent):
                    printer.cut(CutRow(cut=ev))
                elif isinstance(ev, NoticeEvent):
                    printer.notice(ev)
        else:
            events, latencies = asyncio.run(stream_file(args, frames, info, opts, printer,
                                                        client))
    except SeamcutRpcError as exc:
        return _fail(explain.error_line(exc, target=target, tls=client is not None and client.tls),
                     explain.exit_code(exc))
    except ClientError as exc:
        return _fail(f"error: {exc}", explain.EXIT_USAGE)
    except ImportError as exc:
        return _fail(f"error: --offline needs the server's dependencies: pip install "
                     f'"seamcut[server]" ({exc})', explain.EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", explain.EXIT_INTERRUPTED)
    report = build_report(
        events, file=str(args.file), sample_rate_hz=info.sample_rate_hz,
        channels=info.channels, frames=info.frames, wall_seconds=time.monotonic() - t0,
        mode=opts.mode or "", realtime=args.realtime, latencies_ms=latencies,
    )
    printer.line(summary_line(report))
    hint = no_pause_hint(events, sample_rate_hz=info.sample_rate_hz)
    if hint is not None and not args.quiet:
        print(hint, file=sys.stderr, flush=True)
    code = _write_outputs(args, report, info, out)
    incomplete = _drained_early(events, info.frames)
    if code == explain.EXIT_OK and incomplete is not None:
        return _fail(incomplete, explain.EXIT_INCOMPLETE)
    return code


def _drained_early(events: Sequence[Event], frames: int) -> str | None:
    """Why the run is incomplete, if the server drained before the file was sent."""
    drained = any(isinstance(ev, NoticeEvent) and ev.code == DRAINING_NOTICE for ev in events)
    if any(isinstance(ev, ResumedEvent) for ev in events):
        drained = False  # moved to another replica, which took the rest
    summary = next((ev for ev in events if isinstance(ev, SummaryEvent)), None)
    received = summary.samples_received if summary is not None else 0
    if not drained or received >= frames:
        return None
    return (f"incomplete: the server is shutting down and took {received} of {frames} "
            "frames; the cuts up to there are above — run again against another replica "
            "for the rest")


def _write_outputs(args: argparse.Namespace, report: SplitReport, info: AudioInfo,
                   out: TextIO) -> int:
    try:
        if args.json_out is not None:
            text = json.dumps(report_json(report), indent=2) + "\n"
            if args.json_out == "-":
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                Path(args.json_out).write_text(text)
        if args.segments_dir is not None:
            paths = write_segments(info.path, [r.cut.sample for r in report.cuts],
                                   args.segments_dir)
            if not args.quiet:
                print(f"wrote {len(paths)} segments to {args.segments_dir}", file=out,
                      flush=True)
    except AudioError as exc:
        return _fail(f"error: {exc}", explain.EXIT_USAGE)
    except OSError as exc:
        return _fail(_os_error_line(exc), explain.EXIT_USAGE)
    return explain.EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m seamcut.client.split FILE ...``."""
    parser = argparse.ArgumentParser(
        prog="seamcut split", description="Find the cut points of an audio file.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
