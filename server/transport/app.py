"""Building, running and stopping the grpc.aio server."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from seamcut.server.config import AppConfig
from seamcut.server.engine.pipeline import Engine
from seamcut.server.transport.servicer import SeamcutServicer

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Seamcut"].full_name


def grpc_options(cfg: AppConfig) -> list[tuple[str, int]]:
    s = cfg.server
    return [
        ("grpc.max_receive_message_length", s.max_message_bytes),
        ("grpc.max_send_message_length", 4 << 20),
        ("grpc.keepalive_time_ms", s.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", s.keepalive_timeout_ms),
        ("grpc.http2.min_ping_interval_without_data_ms", s.min_ping_interval_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        # A second server on the same port must fail to bind, not share it silently.
        ("grpc.so_reuseport", 0),
    ]


@dataclass
class Running:
    server: grpc.aio.Server
    servicer: SeamcutServicer
    health: health_aio.HealthServicer
    engine: Engine
    port: int

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: health NOT_SERVING, refuse new streams, let open ones finish within grace."""
        self.servicer.draining = True
        await self.set_serving(False)
        await self.server.stop(self.servicer.cfg.server.grace_s if grace_s is None else grace_s)
        self.engine.stop()


async def start_server(cfg: AppConfig, *, engine: Engine | None = None) -> Running:
    """Start serving on cfg.server.host:port (port 0 picks a free one)."""
    eng = engine or Engine(cfg)
    server = grpc.aio.server(options=grpc_options(cfg))
    servicer = SeamcutServicer(cfg, eng)
    pb_grpc.add_SeamcutServicer_to_server(servicer, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if cfg.server.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            server,
        )
    port = server.add_insecure_port(f"{cfg.server.host}:{cfg.server.port}")
    if port == 0:
        raise OSError(f"could not bind {cfg.server.host}:{cfg.server.port}")
    running = Running(server, servicer, health, eng, port)
    await running.set_serving(False)  # NOT_SERVING until the models are warm
    await server.start()
    eng.start()
    await asyncio.to_thread(eng.warm_up)
    await running.set_serving(True)
    return running


async def serve_forever(cfg: AppConfig) -> None:
    """Run until SIGINT/SIGTERM, then drain within cfg.server.grace_s."""
    running = await start_server(cfg)
    log.info(
        "seamcut serving on %s:%d (device %s)", cfg.server.host, running.port,
        running.engine.device.name,
    )
    print(f"seamcut: listening on {cfg.server.host}:{running.port} "
          f"(device {running.engine.device.name})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("seamcut: shutting down", flush=True)
    await running.stop()
