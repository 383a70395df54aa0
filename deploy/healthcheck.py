"""Container health probe: exit 0 when seamcut answers SERVING on grpc.health.v1.

The image's ``HEALTHCHECK`` and Kubernetes exec probes run it (Kubernetes' own
``grpc:`` probes speak plaintext only, so a pod serving TLS needs this one). It reads
the port and the TLS settings the server reads, from the same environment variables,
so one ``-e`` configures both. Imports grpc and grpc_health only (the [server] extra).

Usage: ``python healthcheck.py [--target HOST:PORT] [--service NAME] [--timeout S]``.
Exit status: 0 SERVING; 1 anything else (NOT_SERVING while the models warm up or
while draining, no answer, a TLS failure), with one line on stderr saying which.

Options beyond the server's own settings come from ``HEALTHCHECK_*`` variables, never
``SEAMCUT_*``: the server refuses ``SEAMCUT_`` variables that name no setting.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def channel_for(target: str, env: dict[str, str]) -> grpc.Channel:
    """A channel to ``target``: TLS when the server is configured for it.

    The CA defaults to the server's own certificate chain (enough for a self-signed
    certificate, or a chain file that ends in its CA); HEALTHCHECK_CA_FILE names
    another. The probe dials 127.0.0.1, which the certificate rarely names, so the
    name checked is HEALTHCHECK_SERVER_NAME (default: none, grpc checks the target).
    Under mTLS with required client certificates, HEALTHCHECK_CLIENT_CERT and
    HEALTHCHECK_CLIENT_KEY give the probe one.
    """
    cert = env.get("SEAMCUT_SECURITY_TLS_CERT_PATH", "")
    if not cert:
        return grpc.insecure_channel(target)
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(env.get("HEALTHCHECK_CA_FILE", "") or cert),
        private_key=_read(env.get("HEALTHCHECK_CLIENT_KEY", "")),
        certificate_chain=_read(env.get("HEALTHCHECK_CLIENT_CERT", "")),
    )
    name = env.get("HEALTHCHECK_SERVER_NAME", "")
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(target, creds, options=options)


def check(target: str, service: str, timeout_s: float, env: dict[str, str]) -> str | None:
    """None when ``service`` is SERVING at ``target``, else why not."""
    try:
        with channel_for(target, env) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    except OSError as exc:  # an unreadable certificate file
        return str(exc)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return None


def main(argv: list[str] | None = None) -> int:
    env = dict(os.environ)
    port = env.get("SEAMCUT_SERVER_PORT", "50051")
    p = argparse.ArgumentParser(description="Exit 0 when seamcut answers SERVING.")
    p.add_argument("--target", default=f"127.0.0.1:{port}",
                   help="HOST:PORT (default 127.0.0.1:$SEAMCUT_SERVER_PORT, else 50051)")
    p.add_argument("--service", default="",
                   help='health service name: "" (the server) or seamcut.v1.Seamcut')
    p.add_argument("--timeout", type=float, default=3.0, help="seconds for the call")
    args = p.parse_args(argv)
    why = check(args.target, args.service, args.timeout, env)
    if why is not None:
        print(f"seamcut at {args.target} not SERVING: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
