"""TLS / mTLS server credentials and the bearer-token interceptor.

Certificates and tokens are read once, at start-up; a missing or empty file is a
ConfigError then, not a surprise on the first call. Tokens are secrets: nothing here
logs, echoes or keeps them in clear (only their SHA-256 digests are held).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
from seamcut.server.config import SecurityConfig
from seamcut.server.errors import ConfigError, SeamcutError, Unauthenticated, echo
from seamcut.server.transport.refusals import RefusalLog
from seamcut.server.transport.status import status_for

log = logging.getLogger(__name__)

# Probes must work without a secret (load balancers, kubelet): health needs no token.
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)
AUTH_HEADER = "authorization"


def _read(path: str, field: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"security.{field}: cannot read {path}: {exc.strerror}") from exc
    if not data.strip():
        raise ConfigError(f"security.{field}: {path} is empty")
    return data


def server_credentials(sec: SecurityConfig) -> grpc.ServerCredentials | None:
    """TLS (or mTLS with a client CA) credentials for ``add_secure_port``; None = plaintext."""
    if not sec.tls:
        return None
    key = _read(sec.tls_key_path, "tls_key_path")
    chain = _read(sec.tls_cert_path, "tls_cert_path")
    client_ca = _read(sec.tls_client_ca_path, "tls_client_ca_path") \
        if sec.tls_client_ca_path else None
    return grpc.ssl_server_credentials(
        [(key, chain)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None and sec.require_client_auth,
    )


def load_tokens(sec: SecurityConfig) -> list[str]:
    """The accepted tokens: ``security.tokens`` (comma-separated) and ``token_file``
    (one per line, blank lines and ``#`` comments ignored). Empty when auth is off."""
    tokens = [t.strip() for t in sec.tokens.split(",") if t.strip()]
    if sec.token_file:
        text = _read(sec.token_file, "token_file").decode("utf-8", errors="strict")
        tokens += [line.strip() for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
        if not tokens:
            raise ConfigError(f"security.token_file: {sec.token_file} holds no token")
    for t in tokens:
        if any(c.isspace() for c in t) or not t.isprintable():
            # Say where, never what: the value is a secret.
            raise ConfigError("security tokens: a token contains whitespace or control "
                              "characters (it could never match an authorization header)")
    return tokens


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of the first ``authorization: Bearer <token>`` entry: None without an
    authorization entry, "" when it is not a bearer token."""
    values = [v for k, v in (metadata or ()) if k.lower() == AUTH_HEADER]
    if not values:
        return None
    value = values[0]
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    scheme, _, token = str(value).strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Refuse calls without a known ``authorization: Bearer <token>`` with UNAUTHENTICATED.

    It runs before any handler, so a refused call never reaches admission control
    (an unauthenticated client cannot use up stream slots). Health checks are exempt.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = [_digest(t) for t in tokens]
        if not self._digests:
            raise ConfigError("security: token auth needs at least one token")
        self.refused = 0  # read by tests and metrics
        self._refusals = RefusalLog(log)

    def check(self, metadata: Iterable[tuple[str, Any]] | None) -> str | None:
        """None if ``metadata`` carries a known bearer token, else what is wrong."""
        token = bearer_token(metadata)
        if token is None:
            return "missing authorization metadata: send 'authorization: Bearer <token>'"
        if not token:
            return "authorization metadata must be 'Bearer <token>'"
        presented = _digest(token)
        # Compare with every known digest (no early exit), in constant time per compare.
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(presented, d)
        return None if ok else "unknown bearer token"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(EXEMPT_PREFIXES):
            return handler
        problem = self.check(details.invocation_metadata)
        if problem is None:
            return handler
        self.refused += 1
        self._refusals.note("UNAUTHENTICATED", "refused %s: %s", echo(details.method), problem)
        return _refusal(handler, Unauthenticated(problem))


def _refusal(handler: grpc.RpcMethodHandler, exc: SeamcutError) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that only answers ``exc``'s status."""
    code, message = status_for(exc), str(exc)

    # A coroutine handler works for all four shapes (grpc.aio awaits it and, for
    # streaming responses, treats it as the reader/writer API); it never reads.
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, **kw)
    return grpc.unary_unary_rpc_method_handler(refuse, **kw)
