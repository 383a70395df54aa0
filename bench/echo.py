"""The transport floor: a Seamcut server that does no audio work.

``python -m seamcut.bench.echo [--host H] [--port P]`` serves the same protocol on
grpc.aio with the server's own transport options: ``Ready`` on the config, one
``Progress`` per ``AudioChunk`` (``last_seq`` = its seq), and at half-close an END
cut at the end of the audio received (``sample`` = ``start_sample`` + frames,
``seconds`` = that / the rate, as the real server reports it) and a ``Summary``.
Point ``seamcut bench`` at it to measure what the gRPC transport alone costs on a
machine, client included; what the real server cannot beat (docs/PERFORMANCE.md,
"Where the time goes").
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator

import grpc

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc

LOOKAHEAD_MS = 1048  # what the real server reports with its defaults at 16 kHz


class EchoServicer(pb_grpc.SeamcutServicer):  # type: ignore[misc]  # generated base
    async def GetCapabilities(self, request: pb.GetCapabilitiesRequest,
                              context: grpc.aio.ServicerContext) -> pb.Capabilities:
        return pb.Capabilities(server_version="echo", device="none")

    async def StreamCuts(self, request_iterator: AsyncIterator[pb.ClientMessage],
                         context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ServerMessage]:
        frame_bytes, rate, start, received, chunks = 2, 16000, 0, 0, 0
        async for msg in request_iterator:
            kind = msg.WhichOneof("msg")
            if kind == "config":
                f = msg.config.format
                rate = f.sample_rate_hz or rate
                start = msg.config.start_sample
                frame_bytes = (4 if f.encoding == pb.F32LE else 2) * max(1, f.channels)
                yield pb.ServerMessage(ready=pb.Ready(
                    session_id="echo", config=msg.config, lookahead_ms=LOOKAHEAD_MS,
                    lookahead_samples=LOOKAHEAD_MS * rate // 1000, block_ms=320, device="none"))
            elif kind == "audio":
                received += len(msg.audio.data) // frame_bytes
                chunks += 1
                yield pb.ServerMessage(progress=pb.Progress(
                    samples_received=start + received, samples_processed=start + received,
                    samples_final=start + received, last_seq=msg.audio.seq))
        end = start + received
        yield pb.ServerMessage(cut=pb.CutPoint(
            sample=end, seconds=end / rate, kind=pb.END, score=1.0, pause_start_sample=end,
            pause_end_sample=end))
        yield pb.ServerMessage(summary=pb.Summary(
            end_reason=pb.COMPLETED, samples_received=received, samples_processed=received,
            chunks=chunks, cuts=1))


async def serve(host: str, port: int) -> None:
    from seamcut.server.config import load_config
    from seamcut.server.transport.app import grpc_options

    server = grpc.aio.server(options=grpc_options(load_config(env={})))
    pb_grpc.add_SeamcutServicer_to_server(EchoServicer(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"seamcut echo: listening on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m seamcut.bench.echo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50062)
    args = p.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
