"""The server's exception tree. A leaf module: it imports nothing of ours.

Every error a client can cause or see is one of these; the transport maps each class
to one gRPC status in a single table (``seamcut.server.transport.status``)::

    SeamcutError
    ├── ConfigError            bad server or stream configuration   INVALID_ARGUMENT
    ├── InvalidAudio           malformed audio bytes / samples      INVALID_ARGUMENT
    ├── ProtocolOrderError     audio before config, second config   FAILED_PRECONDITION
    ├── SequenceError          seq gap / duplicate / out of order   ABORTED
    ├── Overloaded             capacity or backlog exceeded         RESOURCE_EXHAUSTED
    ├── Unavailable            draining, shutting down              UNAVAILABLE
    ├── LimitReached           a time limit ended the stream        DEADLINE_EXCEEDED
    │   ├── IdleTimeout        no client message for idle_timeout_s DEADLINE_EXCEEDED
    │   ├── ConsumerStalled    client not reading (stall_timeout_s) DEADLINE_EXCEEDED
    │   └── SessionTooLong     open longer than max_session_s       OUT_OF_RANGE
    ├── Unauthenticated        missing or unknown bearer token      UNAUTHENTICATED
    └── InternalError          a bug; carries the session id        INTERNAL
"""

from __future__ import annotations


class SeamcutError(Exception):
    """Base class: ``str(exc)`` is a message a person can act on."""


class ConfigError(SeamcutError):
    """A configuration value is out of range or unknown; the message names the field."""


class InvalidAudio(SeamcutError):
    """Audio bytes that cannot be decoded, or samples that are not finite."""


class ProtocolOrderError(SeamcutError):
    """A message arrived in a state where it is not allowed."""


class SequenceError(SeamcutError):
    """An AudioChunk.seq that is not the next one expected."""

    def __init__(self, message: str, *, last_accepted: int | None) -> None:
        super().__init__(message)
        self.last_accepted = last_accepted


class Overloaded(SeamcutError):
    """The server cannot take more work now; ``retry_after_s`` is a hint."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(SeamcutError):
    """The server is draining or shutting down."""


class LimitReached(SeamcutError):
    """A time limit (idle, stalled reader, session length) ended the stream."""


class IdleTimeout(LimitReached):
    """The client sent nothing for ``server.idle_timeout_s``."""


class ConsumerStalled(LimitReached):
    """The client stopped reading: no message could be sent for ``server.stall_timeout_s``."""


class SessionTooLong(LimitReached):
    """The stream was open longer than ``server.max_session_s``; resume on a new stream."""


class Unauthenticated(SeamcutError):
    """No bearer token, or one the server does not know. The message never echoes it."""


class InternalError(SeamcutError):
    """A bug. The message includes the session id so logs can be matched."""


ECHO_CHARS = 64


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """``value`` as it may appear in a message or log line: its repr, cut to ``limit``
    characters plus "…" and its length. Client text is never echoed whole: a 900 KB
    string once came back in the status (too big for it) and filled the log."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, (str, bytes)) else len(text)
    return f"{text[:limit]}… ({size} chars)"


def log_value(text: str) -> str:
    """A client string as it may appear in a log line: as it is when short, printable
    and without spaces (so ``key=value`` stays one token), else quoted and cut."""
    if not text:
        return "-"
    if len(text) <= 128 and text.isprintable() and " " not in text:
        return text
    return echo(text)
