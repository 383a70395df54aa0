"""TLS, mTLS and bearer-token options of the SDK and the ``split`` command.

``channel_credentials`` turns file paths (or PEM bytes) into grpc channel credentials;
``token_metadata`` makes the ``authorization`` header. The token travels as call
metadata rather than grpc call credentials, which grpc only sends over TLS: a token
over plaintext is for loopback or a trusted network (e.g. behind a TLS-terminating
proxy); use TLS anywhere else.

Imports grpc and the SDK's ``errors``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import grpc
from seamcut.client.errors import InvalidOptions

PemSource = str | os.PathLike[str] | bytes  # a file path, or the PEM text itself as bytes


def _pem(source: PemSource, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise InvalidOptions(f"{what}: cannot read {os.fspath(source)}: {exc.strerror}") from exc
    if b"-----BEGIN" not in data:  # grpc would only fail later, in the handshake
        raise InvalidOptions(f"{what}: {os.fspath(source)} is not a PEM file (no -----BEGIN "
                             "line)")
    return data


def channel_credentials(
    *, tls: bool = False, tls_ca: PemSource | None = None, tls_cert: PemSource | None = None,
    tls_key: PemSource | None = None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials, or None for plaintext.

    ``tls_ca``: the CA that signed the server's certificate (default: the system's
    roots). ``tls_cert`` + ``tls_key``: a client certificate for mTLS. Any of them
    implies TLS; ``tls=True`` asks for TLS with the system's roots alone.
    """
    if (tls_cert is None) != (tls_key is None):
        raise InvalidOptions("tls_cert and tls_key go together (a client certificate and its key)")
    if not (tls or tls_ca is not None or tls_cert is not None):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=None if tls_ca is None else _pem(tls_ca, "tls_ca"),
        private_key=None if tls_key is None else _pem(tls_key, "tls_key"),
        certificate_chain=None if tls_cert is None else _pem(tls_cert, "tls_cert"),
    )


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """``(("authorization", "Bearer <token>"),)``, or nothing without a token."""
    if token is None:
        return ()
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise InvalidOptions("token: must be non-empty and contain no whitespace")
    return (("authorization", f"Bearer {token}"),)


def read_token_file(path: str) -> str:
    """The first non-comment line of ``path`` (a token file as ``seamcut serve`` reads it)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise InvalidOptions(f"--token-file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidOptions(f"--token-file {path}: not a text file ({exc.reason})") from exc
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()
    raise InvalidOptions(f"--token-file {path}: holds no token")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection-security flags of a client command."""
    g = parser.add_argument_group("security")
    g.add_argument("--tls", action="store_true",
                   help="use TLS, trusting the system's root certificates")
    g.add_argument("--tls-ca", metavar="PEM", default=None,
                   help="use TLS, trusting this CA for the server's certificate")
    g.add_argument("--tls-cert", metavar="PEM", default=None,
                   help="client certificate for mTLS (with --tls-key)")
    g.add_argument("--tls-key", metavar="PEM", default=None, help="private key of --tls-cert")
    g.add_argument("--tls-server-name", metavar="NAME", default=None,
                   help="the host name the server certificates carry, when --server lists "
                        "replicas by IP address or by different names")
    g.add_argument("--token", default=None,
                   help="bearer token (visible in the process list: prefer --token-file)")
    g.add_argument("--token-file", metavar="FILE", default=None,
                   help="read the bearer token from the first line of FILE")


def client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """AsyncClient/Client keyword arguments for the flags of :func:`add_arguments`
    (InvalidOptions, a ValueError, for an unusable combination or an unreadable file)."""
    token = args.token
    if getattr(args, "token_file", None):
        if token is not None:
            raise InvalidOptions("give --token or --token-file, not both")
        token = read_token_file(args.token_file)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InvalidOptions("--tls-cert and --tls-key go together (a client certificate "
                             "and its private key)")
    # Read here so that an unreadable file is reported by the flag that named it.
    pems = {key: None if path is None else _pem(path, flag) for key, path, flag in (
        ("tls_ca", args.tls_ca, "--tls-ca"), ("tls_cert", args.tls_cert, "--tls-cert"),
        ("tls_key", args.tls_key, "--tls-key"))}
    return {"tls": args.tls, **pems, "token": token,
            "tls_server_name": getattr(args, "tls_server_name", None)}
