"""What the CLI prints when something fails: one line a person can act on, an exit code.

Pure functions over the SDK's errors (no I/O); ``split`` uses them and the bench may.
The server speaks milliseconds and config field names; a command-line user typed
seconds and flags, so config errors are translated back into the flag they came from.

Exit codes of ``seamcut split`` (and the meaning the bench shares)::

    0    ok
    1    the server ended the stream with an error (its status is printed)
    2    usage, option or file error (nothing was sent)
    3    incomplete: the server drained before the whole file was sent; the cuts it
         sent are printed and written
    4    no usable connection: nothing listens, the name does not resolve, the TLS
         handshake failed, or no answer within --timeout
    130  interrupted (Ctrl-C)

Imports the SDK's ``errors`` and ``targets`` modules only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import grpc
from seamcut.client.errors import (
    ConnectionFailed,
    InvalidConfig,
    SeamcutRpcError,
    TlsError,
    Unauthenticated,
)

EXIT_OK = 0
EXIT_STREAM = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_CONNECT = 4
EXIT_INTERRUPTED = 130

# StreamConfig fields that a flag of `seamcut split` sets, in the flag's unit.
SECONDS_FLAGS: Mapping[str, str] = {
    "policy.min_segment_ms": "--min-segment",
    "policy.max_segment_ms": "--max-segment",
    "policy.min_gap_ms": "--min-gap",
    "policy.min_pause_ms": "--min-pause",
}
_WHY = re.compile(r"\s*\(([^)]*)\):")
_RANGE = re.compile(r"must be in \[([-\d.e+]+), ([-\d.e+]+)\], got ([-\d.e+]+)")


def _seconds(ms_text: str) -> str:
    return f"{float(ms_text) / 1000:g}"


def config_error_line(exc: InvalidConfig) -> str:
    """An INVALID_ARGUMENT about a field the user set by flag, in the flag's unit."""
    flag = SECONDS_FLAGS.get(exc.field or "")
    m = _RANGE.search(exc.details)
    if exc.field == "policy.pause_search_ms" and m is not None:
        # split has no flag for it; its lower bound is min_pause_ms, set by --min-pause.
        lo, _, got = (_seconds(g) for g in m.groups())
        return (f"error: --min-pause: {lo} s is longer than the server's pause search "
                f"window (policy.pause_search_ms = {got} s); use --min-pause {got} or less")
    if flag is None:
        return f"error: {exc.details} (INVALID_ARGUMENT)"
    if m is None:
        return f"error: {flag}: {exc.details.split(': ', 1)[-1]} (the server counts in ms)"
    lo, hi, got = (_seconds(g) for g in m.groups())
    # The server may say why in brackets after the field: keep it, it names the rule.
    why = _WHY.match(exc.details[len(exc.field or ""):])
    rule = f" ({why.group(1)})" if why else ""
    return f"error: {flag}: must be in [{lo}, {hi}] seconds{rule}, got {got}"


def error_line(exc: SeamcutRpcError, *, target: str, tls: bool = False) -> str:
    """The line printed for a failed call (``target``: the address that was used;
    ``tls``: whether the client used TLS)."""
    if isinstance(exc, TlsError):
        if "socket closed" in exc.details.lower() and not tls:
            return (f"error: {target} hung up before answering: it probably expects TLS; "
                    f"give --tls-ca (or --tls) ({_short(exc.details)})")
        if "socket closed" in exc.details.lower():
            return (f"error: TLS handshake with {target} failed: the server hung up, so it "
                    f"probably wants a client certificate (--tls-cert/--tls-key) or does "
                    f"not speak TLS ({_short(exc.details)})")
        return (f"error: TLS handshake with {target} failed — check --tls-ca (the CA that "
                f"signed the server's certificate), the host name in --server, and "
                f"--tls-cert/--tls-key if the server wants a client certificate: "
                f"{_short(exc.details)}")
    if isinstance(exc, ConnectionFailed):
        if exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"error: {exc.details}"
        return (f"error: cannot connect to {target} — is `seamcut serve` running there? "
                f"({_short(exc.details)})")
    if isinstance(exc, Unauthenticated):
        return (f"error: the server refused the credentials ({exc.code.name}): "
                f"{exc.details} — give --token or --token-file")
    if isinstance(exc, InvalidConfig):
        return config_error_line(exc)
    line = f"error: {exc.details} ({exc.code.name})"
    if exc.retry_after_ms is not None:
        line += f"; retry after {exc.retry_after_ms} ms"
    return line


def exit_code(exc: SeamcutRpcError) -> int:
    return EXIT_CONNECT if isinstance(exc, ConnectionFailed) else EXIT_STREAM


def _short(details: str) -> str:
    # grpc core's connection errors repeat the address and nest several layers; the
    # last clause is the reason a person can act on.
    text = " ".join(details.split())
    return text if len(text) <= 240 else "…" + text[-240:]
