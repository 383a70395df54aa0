"""``seamcut serve``: command-line entry of the server (transport level)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys

from seamcut.server.config import AppConfig, load_config
from seamcut.server.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (default 127.0.0.1, loopback only; 0.0.0.0 "
                   "for every interface, then add TLS and a token; env SEAMCUT_SERVER_HOST)")
    p.add_argument("--port", type=int, help="port (default 50051; 0 = any free port)")
    p.add_argument("--config", metavar="FILE", help="TOML file with [server], [engine], ...")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--max-streams", type=int,
                   help="open streams before RESOURCE_EXHAUSTED (whole server)")
    p.add_argument("--workers", type=int,
                   help="transport worker processes sharing the port (default 1)")
    p.add_argument("--engine", choices=("auto", "inline", "process"),
                   help="where models run: in each worker (inline) or in engine processes "
                        "(process); default auto = process when --workers > 1")
    p.add_argument("--engines", type=int,
                   help="engine processes (default: one per GPU, 1 on a CPU host)")
    p.add_argument("--tls-cert", metavar="PEM", help="server certificate chain: serve TLS")
    p.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    p.add_argument("--tls-client-ca", metavar="PEM",
                   help="CA bundle for client certificates: require mTLS")
    p.add_argument("--token-file", metavar="FILE",
                   help="accepted bearer tokens, one per line: require 'authorization: "
                        "Bearer <token>' on every call but health checks")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument("--log-format", choices=("text", "json"),
                   help="text (default) or json: one object per line with timestamp, level, "
                        "logger, message, session_id, request_id, trace_id")
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus metrics on http://HOST:PORT/metrics, the whole "
                        "server with --workers N (default 0 = off)")
    p.add_argument("--trace-sample-ratio", type=float,
                   help="share of streams traced without a caller's traceparent "
                        "(default 0.01; a sampled caller is always followed)")
    p.add_argument("--otlp-endpoint", metavar="URL",
                   help="send spans and metrics to this OTLP/gRPC collector "
                        "(e.g. http://localhost:4317)")
    p.add_argument("--trace-console", action="store_true", default=None,
                   help="print finished spans to stdout")


log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server to this machine (127.0.0.0/8, ::1,
    localhost). Other names are taken as exposed: what they resolve to can change."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # "" (every interface), 0.0.0.0, ::, or a host name


def exposure_warning(cfg: AppConfig) -> str | None:
    """The start-up warning for a server anyone on the network can use, or None."""
    sec = cfg.security
    if is_loopback(cfg.server.host) or sec.tls or sec.auth:
        return None
    return (f"seamcut is listening on {cfg.server.host or '*'} (beyond loopback) in "
            "plaintext without authentication: anyone who can reach it can stream audio "
            "and read the results; serve TLS (--tls-cert/--tls-key) and require a token "
            "(--token-file), or bind --host 127.0.0.1")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(
            args.config,
            overrides={
                "server": {"host": args.host, "port": args.port, "max_streams": args.max_streams,
                           "workers": args.workers, "engine": args.engine,
                           "engines": args.engines, "metrics_port": args.metrics_port,
                           "log_format": args.log_format},
                "engine": {"device": args.device},
                "security": {
                    "tls_cert_path": args.tls_cert, "tls_key_path": args.tls_key,
                    "tls_client_ca_path": args.tls_client_ca, "token_file": args.token_file,
                },
                "telemetry": {"trace_sample_ratio": args.trace_sample_ratio,
                              "otlp_endpoint": args.otlp_endpoint,
                              "trace_console": args.trace_console},
            },
        )
    except ConfigError as exc:
        print(f"seamcut serve: configuration error: {exc}", file=sys.stderr)
        return 2
    from seamcut.server.transport import logs

    logs.configure(args.log_level, cfg.server.log_format,
                   text_format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Once per server: the supervisor warns, its workers (given a slot file) do not.
    warning = None if cfg.server.stream_slots_path else exposure_warning(cfg)
    if warning is not None:
        log.warning("%s", warning)
    if cfg.server.workers > 1 or cfg.server.process_engines:
        from seamcut.server.transport.workers import Supervisor

        try:
            return Supervisor(cfg, getattr(args, "serve_argv", [])).run()
        except OSError as exc:
            print(f"seamcut serve: {exc}", file=sys.stderr)
            return 1
    from seamcut.server.transport.app import serve_forever

    try:
        asyncio.run(serve_forever(cfg))
    except ConfigError as exc:  # certificate or token files, read at start-up
        print(f"seamcut serve: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"seamcut serve: {exc}", file=sys.stderr)
        return 1
    return 0


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """``seamcut engine``: the serve arguments (for the config) plus where to listen."""
    add_arguments(p)
    p.add_argument("--endpoint", required=True, help="ZeroMQ endpoint to bind (ipc://...)")
    p.add_argument("--engine-id", default="engine-0", help="name in traces and logs")
    p.add_argument("--worker-count", type=int, default=1,
                   help="transport workers sharing this engine (splits its credits)")
    p.add_argument("--status-fd", type=int, default=-1,
                   help="file descriptor for the one 'ready'/'failed' line (default stdout)")


def run_engine_process(args: argparse.Namespace) -> int:
    """Internal: one engine process, started and supervised by ``seamcut serve``."""
    try:
        cfg = load_config(args.config, overrides={"engine": {"device": args.device},
                                                  "server": {"log_format": args.log_format}})
    except ConfigError as exc:
        print(f"seamcut engine: configuration error: {exc}", file=sys.stderr)
        return 2
    from seamcut.server.transport import logs

    logs.configure(args.log_level, cfg.server.log_format,
                   text_format=f"%(asctime)s %(levelname)s {args.engine_id} %(name)s: "
                               "%(message)s")
    from seamcut.server.engine.process import run_engine

    return run_engine(cfg, args.endpoint, args.engine_id, args.worker_count, args.status_fd)
