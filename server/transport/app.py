"""Building, running and stopping the grpc.aio server."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from socketserver import BaseServer
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from seamcut.server.config import AppConfig
from seamcut.server.engine.client import EngineClient, make_engine_client
from seamcut.server.errors import Overloaded, Unavailable
from seamcut.server.transport import admission, metrics_export
from seamcut.server.transport.security import TokenAuth, load_tokens, server_credentials
from seamcut.server.transport.servicer import SeamcutServicer
from seamcut.server.transport.status import status_for, trailing_metadata
from seamcut.server.transport.telemetry import Telemetry, make_telemetry

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Seamcut"].full_name
# What health answers SERVING/NOT_SERVING for ("" = the server as a whole); any other
# name gets NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch). docs/PROTOCOL.md, "Health".
HEALTH_SERVICES = ("", SERVICE_NAME)
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
_REFLECTION_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _register_reflection_v1() -> None:
    """Put grpc.reflection.v1 into the default descriptor pool, so that reflection can
    describe the service it is served as. grpcio-reflection ships only v1alpha; v1 is
    the same file under another package (grpc/grpc-proto), so it is derived from it."""
    pool = descriptor_pool.Default()
    try:  # already there: a second server in this process, or a library that ships it
        pool.FindServiceByName(REFLECTION_V1)
        return
    except KeyError:
        pass
    fdp = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(fdp)
    old, new = f".{fdp.package}.", ".grpc.reflection.v1."
    fdp.name, fdp.package = _REFLECTION_V1_FILE, "grpc.reflection.v1"
    fdp.ClearField("options")  # v1alpha's language packages; they do not apply to v1
    for msg in fdp.message_type:
        for f in msg.field:
            if f.type_name:  # assigning "" would set it on scalar fields
                f.type_name = f.type_name.replace(old, new)
    for method in fdp.service[0].method:
        method.input_type = method.input_type.replace(old, new)
        method.output_type = method.output_type.replace(old, new)
    pool.AddSerializedFile(fdp.SerializeToString())


def enable_reflection(server: grpc.aio.Server, services: tuple[str, ...]) -> None:
    """Serve reflection as grpc.reflection.v1 and v1alpha: grpcio-reflection serves only
    v1alpha, and current tools (grpcurl, Postman, grpcui) ask for v1 first. The two are
    the same messages on the wire, so one servicer answers both."""
    _register_reflection_v1()
    names = (*services, REFLECTION_V1, reflection.SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        REFLECTION_V1, {"ServerReflectionInfo": handler}),))


def grpc_options(cfg: AppConfig) -> list[tuple[str, int]]:
    s = cfg.server
    age: list[tuple[str, int]] = []
    if s.connection_max_age_s > 0:
        # The grace after the GOAWAY lets every stream run to its own limit.
        grace = (s.max_session_s or 30 * 86_400) + s.grace_s
        age = [("grpc.max_connection_age_ms", int(s.connection_max_age_s * 1000)),
               ("grpc.max_connection_age_grace_ms", int(grace * 1000))]
    return [
        *age,
        ("grpc.max_receive_message_length", s.max_message_bytes),
        ("grpc.max_send_message_length", 4 << 20),
        ("grpc.keepalive_time_ms", s.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", s.keepalive_timeout_ms),
        ("grpc.http2.min_ping_interval_without_data_ms", s.min_ping_interval_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        # Any unanswered ping (BDP probes too, which a keepalive waits behind) closes
        # the connection after the keepalive timeout, not grpc's default 60 s: a frozen
        # client or a cut cable must free its stream slots in keepalive + timeout.
        ("grpc.http2.ping_timeout_ms", s.keepalive_timeout_ms),
        # A second server on the same port must fail to bind, not share it silently,
        # unless sharing is what we asked for (worker processes).
        ("grpc.so_reuseport", int(s.reuse_port)),
        # Abuse limits (docs/RELIABILITY.md, "Abuse"). MAX_CONCURRENT_STREAMS is what
        # keeps one connection's rapid reset from starving other clients: without it
        # grpc core queued the reset calls until new ones were cancelled unseen.
        ("grpc.max_concurrent_streams", s.http2_max_concurrent_streams),
        ("grpc.max_allowed_incoming_connections", s.max_connections),
        ("grpc.max_connection_idle_ms", int(s.connection_idle_s * 1000)),
        ("grpc.server_handshake_timeout_ms", int(s.handshake_timeout_s * 1000)),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", s.stream_window_kib * 1024),
    ]


class BoundedHealth(health_aio.HealthServicer):  # type: ignore[misc]  # grpc ships no types
    """grpc's health servicer with at most ``server.max_health_watches`` Watch streams
    open over the whole server (each holds a task and ~11 KB; health needs no token)."""

    def __init__(self, ledger: admission.Ledger, limit: int) -> None:
        super().__init__()
        self._ledger = ledger
        self._claim = [admission.Claim(admission.WATCHES, 1, limit,
                                       "server.max_health_watches")]
        self.refused = 0

    async def Watch(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> None:
        if self._ledger.acquire(self._claim) is not None:
            self.refused += 1
            exc = Overloaded(
                f"server has server.max_health_watches = {self._claim[0].limit} health "
                "Watch streams open; poll with Check instead, or retry after the hinted delay",
                retry_after_s=1.0)
            await context.abort(status_for(exc), str(exc), trailing_metadata=trailing_metadata(exc))
        try:
            await super().Watch(request, context)
        finally:
            self._ledger.release(self._claim)


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourceCounts:
    """Per-stream resources held right now; all zero on an idle server."""

    sessions_open: int  # admitted streams not yet released
    sessions_live: int  # Session objects the servicer still holds
    stream_tasks: int  # reader and watchdog tasks still alive
    blocks_in_flight: int  # engine requests submitted and not yet answered

    @property
    def idle(self) -> bool:
        return not (self.sessions_open or self.sessions_live or self.stream_tasks
                    or self.blocks_in_flight)


@dataclass
class Running:
    server: grpc.aio.Server
    servicer: SeamcutServicer
    health: health_aio.HealthServicer
    engine: EngineClient
    port: int
    auth: TokenAuth | None = None
    telemetry: Telemetry | None = None
    # The metrics endpoint of this process: HTTP (one process) or the Unix socket the
    # supervisor reads (a worker of `seamcut serve --workers N`).
    metrics_http: BaseServer | None = None
    metrics_unix: asyncio.Server | None = None
    _tasks: set[asyncio.Future[None]] = field(default_factory=set)

    def resources(self) -> ResourceCounts:
        """A snapshot of the per-stream resource counters (safe from any thread: it
        only reads integers), for tests and metrics."""
        c = self.servicer.counters
        return ResourceCounts(
            sessions_open=c.sessions_open, sessions_live=len(self.servicer.sessions),
            stream_tasks=c.tasks_alive, blocks_in_flight=self.engine.in_flight,
        )

    def on_engine_health(self, healthy: bool) -> None:
        if not self.servicer.draining:
            task = asyncio.ensure_future(self.set_serving(healthy))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in HEALTH_SERVICES:
            await self.health.set(name, status)

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: health NOT_SERVING, refuse new streams (UNAVAILABLE), tell the open
        ones (Notice ``draining``) and let them finish within ``grace_s`` (default
        ``server.grace_s``); streams still open then end with UNAVAILABLE."""
        grace = self.servicer.cfg.server.grace_s if grace_s is None else grace_s
        await self.set_serving(False)
        self.servicer.begin_drain(grace)
        if not await self.servicer.wait_idle(grace):
            await self.servicer.end_all(Unavailable(
                f"server shut down: streams still open after the {grace:g} s drain grace "
                "period; reconnect to another replica"
            ))
        # Every stream of ours has ended; grace covers only calls still in flight
        # (health, capabilities).
        await self.server.stop(min(grace, 1.0))
        await self.engine.close()
        if self.metrics_unix is not None:
            self.metrics_unix.close()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
            self.metrics_http.server_close()
        if self.telemetry is not None:
            self.telemetry.shutdown()


async def start_server(cfg: AppConfig, *, engine: EngineClient | None = None) -> Running:
    """Start serving on cfg.server.host:port (port 0 picks a free one)."""
    # Certificate and token files first: a bad path fails before the models load.
    creds = server_credentials(cfg.security)
    auth = TokenAuth(load_tokens(cfg.security)) if cfg.security.auth else None
    eng = engine or make_engine_client(cfg)
    interceptors: list[Any] = [auth] if auth is not None else []
    server = grpc.aio.server(options=grpc_options(cfg), interceptors=interceptors)
    telemetry = make_telemetry(cfg)
    servicer = SeamcutServicer(cfg, eng, auth, telemetry)
    telemetry.bind(servicer, eng)
    pb_grpc.add_SeamcutServicer_to_server(servicer, server)
    health = BoundedHealth(servicer.ledger, cfg.server.max_health_watches)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if cfg.server.reflection:
        enable_reflection(
            server, (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name))
    address = f"{cfg.server.host}:{cfg.server.port}"
    try:
        port = (server.add_secure_port(address, creds) if creds is not None
                else server.add_insecure_port(address))
    except RuntimeError as exc:  # grpc raises RuntimeError on a failed bind
        raise OSError(f"could not bind {address}: {exc}") from exc
    running = Running(server, servicer, health, eng, port, auth, telemetry)
    try:
        if cfg.server.metrics_socket_path:
            running.metrics_unix = await metrics_export.serve_unix(
                telemetry.registry, cfg.server.metrics_socket_path)
        elif cfg.server.metrics_port:
            running.metrics_http = metrics_export.serve_http(
                telemetry.registry, cfg.server.host, cfg.server.metrics_port)
    except OSError:
        # Nothing has started yet (gRPC, engine): release the bound port and telemetry,
        # so an embedding process (tests) can try again.
        await server.stop(None)
        telemetry.shutdown()
        raise
    await running.set_serving(False)  # NOT_SERVING until the models are warm
    await server.start()
    await eng.start()
    # Health follows the engine: NOT_SERVING while it is down (a stage died, or an
    # engine process is restarting), SERVING again once it is back.
    eng.add_health_listener(lambda ok, _why: running.on_engine_health(ok))
    await running.set_serving(eng.healthy)
    return running


async def serve_forever(cfg: AppConfig) -> None:
    """Run until SIGINT/SIGTERM, then drain within cfg.server.grace_s."""
    # Handlers first: a signal while the models load or warm up (streams may already
    # be served then) still drains, instead of killing the process.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = await start_server(cfg)
    sec = cfg.security
    mode = "plaintext" if not sec.tls else "TLS" if not sec.tls_client_ca_path else \
        "mTLS" if sec.require_client_auth else "TLS, client certificates optional"
    auth = "bearer token" if sec.auth else "no auth"
    log.info("seamcut serving on %s:%d (device %s, %s, %s)", cfg.server.host, running.port,
             running.engine.info.device, mode, auth)
    print(f"seamcut: listening on {cfg.server.host}:{running.port} "
          f"(device {running.engine.info.device}, {mode}, {auth})", flush=True)
    if running.metrics_http is not None:
        print(f"seamcut: metrics on http://{cfg.server.host}:{cfg.server.metrics_port}/metrics",
              flush=True)
    await stop.wait()
    print("seamcut: shutting down", flush=True)
    await running.stop()
