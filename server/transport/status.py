"""The one table from exception to gRPC status code."""

from __future__ import annotations

import grpc
from seamcut.server.errors import (
    ConfigError,
    InternalError,
    InvalidAudio,
    LimitReached,
    Overloaded,
    ProtocolOrderError,
    SeamcutError,
    SequenceError,
    SessionTooLong,
    Unauthenticated,
    Unavailable,
)

STATUS: dict[type[SeamcutError], grpc.StatusCode] = {
    ConfigError: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidAudio: grpc.StatusCode.INVALID_ARGUMENT,
    ProtocolOrderError: grpc.StatusCode.FAILED_PRECONDITION,
    SequenceError: grpc.StatusCode.ABORTED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    LimitReached: grpc.StatusCode.DEADLINE_EXCEEDED,  # IdleTimeout, ConsumerStalled
    SessionTooLong: grpc.StatusCode.OUT_OF_RANGE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    InternalError: grpc.StatusCode.INTERNAL,
}


def status_for(exc: SeamcutError) -> grpc.StatusCode:
    """Status for ``exc`` (by the most specific class in the table; INTERNAL otherwise)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.INTERNAL


def trailing_metadata(exc: SeamcutError) -> tuple[tuple[str, str], ...]:
    """Machine-readable hints that go with the status (retry delay, last seq)."""
    if isinstance(exc, Overloaded):
        return (("retry-after-ms", str(int(exc.retry_after_s * 1000))),)
    if isinstance(exc, SequenceError) and exc.last_accepted is not None:
        return (("last-accepted-seq", str(exc.last_accepted)),)
    return ()
