"""Every exception the SDK raises on purpose, and the one table from gRPC status to class.

Exceptions::

    ClientError                      base: ``except ClientError`` catches all of them
    ├── AudioError (ValueError)      unreadable / unsupported audio, wrong shape or dtype
    ├── InvalidOptions (ValueError)  client-side arguments that cannot work (the message
    │                                names the option), e.g. tls_cert without tls_key, an
    │                                unreadable PEM file, a token with whitespace
    ├── UsageError (RuntimeError)    an SDK object used out of order (stream not entered,
    │                                entered twice, client closed)
    ├── StreamClosedError            send()/flush() after close_send() or after the end
    └── SeamcutRpcError              a call ended with a non-OK gRPC status; carries
        │                            ``code``, ``details`` (the server's message) and
        │                            ``trailing_metadata`` (``retry_after_ms``,
        │                            ``last_accepted_seq``, ``session_id``)
        ├── ConnectionFailed         no server answered (refused, DNS, timeout, lost)
        │   └── TlsError             the TLS handshake failed (CA, hostname, client cert,
        │                            plaintext against TLS)
        ├── Unauthenticated          UNAUTHENTICATED / PERMISSION_DENIED: token missing
        │                            or wrong
        ├── InvalidConfig            INVALID_ARGUMENT: the StreamConfig or the audio;
        │                            ``field`` names the config field when there is one
        ├── ServerBusy               RESOURCE_EXHAUSTED: retry after ``retry_after_ms``
        ├── ServerDraining           the server is shutting down: use another replica
        ├── StreamAborted            ABORTED / FAILED_PRECONDITION / OUT_OF_RANGE: the
        │                            stream's protocol (seq gap, order, length)
        ├── DeadlineExceeded         DEADLINE_EXCEEDED: idle, stalled consumer, timeout
        ├── Cancelled                CANCELLED: the stream was cancelled
        └── ServerError              INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED, ...

``SeamcutStreamError`` is the old name of ``SeamcutRpcError`` and stays an alias.

Imports grpc only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import grpc


class ClientError(Exception):
    """Base class of the SDK's exceptions; ``str(exc)`` says what to do about it."""


class AudioError(ClientError, ValueError):
    """Audio that cannot be read, encoded or split as asked (the message says why)."""


class InvalidOptions(ClientError, ValueError):
    """Client-side options that cannot work; the message names the option."""


class UsageError(ClientError, RuntimeError):
    """An SDK object used out of order, e.g. a stream that was never entered."""


class StreamClosedError(ClientError):
    """Audio or a flush was sent after close_send(), or after the stream had ended."""


class SeamcutRpcError(ClientError):
    """A call ended with a non-OK gRPC status.

    ``details`` is the server's message; ``trailing_metadata`` holds its
    machine-readable hints (docs/PROTOCOL.md), read through the properties below.
    """

    def __init__(
        self, code: grpc.StatusCode, details: str,
        trailing_metadata: Mapping[str, str | bytes] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.trailing_metadata: dict[str, str | bytes] = dict(trailing_metadata or {})

    @classmethod
    def from_rpc_error(cls, exc: grpc.RpcError, *, answered: bool = True,
                       tls: bool | None = None) -> SeamcutRpcError:
        """The SDK's exception for a grpc (or grpc.aio) error: code, details, metadata."""
        return wrap_rpc_error(exc, answered=answered, tls=tls)

    def _int_hint(self, key: str) -> int | None:
        value = self.trailing_metadata.get(key)
        try:
            return int(value) if isinstance(value, str) else None
        except ValueError:
            return None

    @property
    def retry_after_ms(self) -> int | None:
        """The server's suggested delay before retrying, milliseconds (if it sent one)."""
        return self._int_hint("retry-after-ms")

    @property
    def last_accepted_seq(self) -> int | None:
        """The last AudioChunk.seq the server accepted (absent if it accepted none)."""
        return self._int_hint("last-accepted-seq")

    @property
    def session_id(self) -> str | None:
        """The server's session id (present once the stream had got its Ready)."""
        value = self.trailing_metadata.get("session-id")
        return value if isinstance(value, str) and value else None


SeamcutStreamError = SeamcutRpcError


class ConnectionFailed(SeamcutRpcError):
    """No server answered at the address: refused, unresolvable, timed out, or lost."""


class TlsError(ConnectionFailed):
    """The TLS handshake failed: wrong CA, hostname, missing client certificate, or
    TLS on one side only."""


class Unauthenticated(SeamcutRpcError):
    """The server refused the credentials (no token, a wrong one, or not allowed)."""


class InvalidConfig(SeamcutRpcError):
    """INVALID_ARGUMENT: the StreamConfig or the audio does not fit the server's limits.

    ``field`` is the config field the server named (e.g. ``policy.max_segment_ms``),
    or None when the message is about something else.
    """

    @property
    def field(self) -> str | None:
        m = _FIELD.match(self.details)
        return m.group(1) if m else None


class ServerBusy(SeamcutRpcError):
    """RESOURCE_EXHAUSTED: the server is full; retry after ``retry_after_ms``."""


class ServerDraining(SeamcutRpcError):
    """The server is shutting down; open the stream on another replica."""


class StreamAborted(SeamcutRpcError):
    """The stream broke the protocol: a seq gap (``last_accepted_seq``), messages out
    of order, or a stream longer than the server allows."""


class DeadlineExceeded(SeamcutRpcError):
    """DEADLINE_EXCEEDED: no audio for too long, events not read, or a timeout."""


class Cancelled(SeamcutRpcError):
    """CANCELLED: the stream was cancelled (by this client, or the server going away)."""


class ServerError(SeamcutRpcError):
    """The server failed (INTERNAL and the like); the message says what broke."""


_FIELD = re.compile(r"([a-z_]+(?:\.[a-z_]+)+)\b")
# Words grpc core uses for a failed TLS handshake (client side); a server that wants a
# client certificate and gets none ends the handshake with an alert that reads
# "certificate required" or just closes the socket during it.
_TLS_WORDS = ("ssl", "tls", "handshake", "certificate", "peer name", "x509", "alpn",
              "verification")
_CONNECT_WORDS = ("connect", "dns", "resolve", "socket closed", "connection", "unreachable",
                  "timeout", "deadline", "no answer")
_BY_CODE: dict[grpc.StatusCode, type[SeamcutRpcError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: Unauthenticated,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidConfig,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ServerBusy,
    grpc.StatusCode.ABORTED: StreamAborted,
    grpc.StatusCode.FAILED_PRECONDITION: StreamAborted,
    grpc.StatusCode.OUT_OF_RANGE: StreamAborted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def error_class(code: grpc.StatusCode, details: str, *, answered: bool,
                tls: bool | None = None) -> type[SeamcutRpcError]:
    """The class for a status. ``answered``: the server had sent anything on this call
    (then UNAVAILABLE is the server's own word, e.g. draining, not a failed connection).
    ``tls``: whether this client used TLS (None: unknown)."""
    text = details.lower()
    if code == grpc.StatusCode.UNAVAILABLE:
        if "drain" in text or "shutting down" in text:
            return ServerDraining
        if not answered and any(w in text for w in _TLS_WORDS):
            return TlsError
        # A listener that hangs up before saying anything is a TLS mismatch: a TLS
        # server refusing our handshake (no client certificate), or one that got
        # plaintext. A plain server accepts either, so "not running" it is not.
        if not answered and tls is not None and "socket closed" in text:
            return TlsError
        return ConnectionFailed
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not answered:
        return ConnectionFailed
    return _BY_CODE.get(code, ServerError)


def rpc_error(
    code: grpc.StatusCode, details: str, trailing: Iterable[Any] | Mapping[str, Any] = (),
    *, answered: bool = True, tls: bool | None = None,
) -> SeamcutRpcError:
    """The SDK's exception for a non-OK status (``trailing``: grpc's metadata pairs)."""
    meta = trailing if isinstance(trailing, Mapping) else metadata_dict(trailing)
    return error_class(code, details, answered=answered, tls=tls)(code, details, meta)


def wrap_rpc_error(exc: grpc.RpcError, *, answered: bool = True,
                   tls: bool | None = None) -> SeamcutRpcError:
    """Wrap a grpc (or grpc.aio) error, keeping code, details and trailing metadata."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    return rpc_error(code, details, trailing or (), answered=answered, tls=tls)


def metadata_dict(items: Iterable[Any]) -> dict[str, str | bytes]:
    """grpc's metadata (pairs, sync; a Metadata object, aio) as a dict; last value wins."""
    out: dict[str, str | bytes] = {}
    for key, value in items:
        out[str(key)] = value
    return out
