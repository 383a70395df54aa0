"""TLS, mTLS, bearer tokens and the reflection switch, with a CA made in tmp_path.

Servers are real grpc.aio servers on 127.0.0.1 (one per configuration), the CLI test
runs `seamcut serve` and `seamcut split` as subprocesses.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import soundfile as sf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from seamcut.bench.localserver import LocalServer
from seamcut.client import Client, SeamcutRpcError, StreamOptions
from seamcut.client.stream import CutEvent
from seamcut.server.config import Encoding, load_config
from seamcut.server.errors import ConfigError

from tests.corpus import default_corpus
from tests.helpers import ServerThread, config_msg, encode, run_stream, serving

pytestmark = pytest.mark.integration
CODE = grpc.StatusCode
TOKEN = "s3cret-token-7f3a"
CLIP = default_corpus()[0]  # 16 kHz mono speech, 12 s


# ---------------------------------------------------------------- a CA of our own


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], cn: str, *,
          server: bool) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) signed by ``ca``; servers get localhost + 127.0.0.1."""
    ca_key, ca_cert = ca
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM)


def dns_only_server_cert(directory: Path, dns: str) -> dict[str, str]:
    """A new CA (``ca.pem``) and a server certificate for ``dns`` alone, no IP address
    (``s.pem``, ``s.key``) in ``directory``; returns the server's security settings."""
    ca_key, ca_cert = make_ca(f"CA for {dns}")
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(dns))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "s.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "s.key").write_bytes(_pem_key(key))
    return {"tls_cert_path": str(directory / "s.pem"), "tls_key_path": str(directory / "s.key")}


@dataclass(frozen=True, kw_only=True, slots=True)
class Pki:
    ca: Path  # the CA that signed server.pem and client.pem
    other_ca: Path  # an unrelated CA (signed stranger.pem)
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path
    tokens: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, other = make_ca("seamcut test CA"), make_ca("some other CA")
    files: dict[str, bytes] = {
        "ca.pem": ca[1].public_bytes(serialization.Encoding.PEM),
        "other_ca.pem": other[1].public_bytes(serialization.Encoding.PEM),
    }
    for stem, signer, cn, is_server in (("server", ca, "localhost", True),
                                        ("client", ca, "client-1", False),
                                        ("stranger", other, "stranger", False)):
        files[f"{stem}.key"], files[f"{stem}.pem"] = issue(signer, cn, server=is_server)
    files["tokens.txt"] = f"# seamcut tokens\n\nother-token\n{TOKEN}\n".encode()
    for name, data in files.items():
        (d / name).write_bytes(data)
    return Pki(ca=d / "ca.pem", other_ca=d / "other_ca.pem", server_cert=d / "server.pem",
               server_key=d / "server.key", client_cert=d / "client.pem",
               client_key=d / "client.key", stranger_cert=d / "stranger.pem",
               stranger_key=d / "stranger.key", tokens=d / "tokens.txt")


def stream_cuts(client: Client) -> list[int]:
    """Stream CLIP through ``client``; its cut samples."""
    data = encode(CLIP.audio, Encoding.PCM_S16LE)
    with client.stream(StreamOptions(sample_rate_hz=16000, channels=1)) as s:
        s.send(data)
        s.close_send()
        return [ev.sample for ev in s.events() if isinstance(ev, CutEvent)]


@pytest.fixture(scope="module")
def plain_cuts(server: ServerThread) -> list[int]:
    with Client(server.target) as c:
        cuts = stream_cuts(c)
    assert len(cuts) >= 3
    return cuts


def capabilities_code(target: str, **kwargs: Any) -> CODE:
    with Client(target, **kwargs) as c:
        try:
            c.get_capabilities(timeout=5)
        except SeamcutRpcError as exc:
            return exc.code
    return CODE.OK


# ---------------------------------------------------------------- TLS and mTLS


def test_tls_serves_the_same_cuts_and_refuses_plaintext(pki: Pki,
                                                        plain_cuts: list[int]) -> None:
    with serving(security={"tls_cert_path": str(pki.server_cert),
                           "tls_key_path": str(pki.server_key)}) as srv:
        with Client(srv.target, tls_ca=pki.ca) as c:
            assert stream_cuts(c) == plain_cuts
        # PEM bytes work as well as paths; localhost matches the certificate's DNS name.
        local = srv.target.replace("127.0.0.1", "localhost")
        assert capabilities_code(local, tls_ca=pki.ca.read_bytes()) == CODE.OK
        assert capabilities_code(srv.target) == CODE.UNAVAILABLE  # plaintext client
        assert capabilities_code(srv.target, tls_ca=pki.other_ca) == CODE.UNAVAILABLE


def test_mtls_needs_a_client_certificate_from_the_ca(pki: Pki) -> None:
    with serving(security={"tls_cert_path": str(pki.server_cert),
                           "tls_key_path": str(pki.server_key),
                           "tls_client_ca_path": str(pki.ca)}) as srv:
        assert capabilities_code(srv.target, tls_ca=pki.ca, tls_cert=pki.client_cert,
                                 tls_key=pki.client_key) == CODE.OK
        # Documented: the handshake fails before any RPC exists, so the client sees
        # UNAVAILABLE, not UNAUTHENTICATED.
        assert capabilities_code(srv.target, tls_ca=pki.ca) == CODE.UNAVAILABLE
        assert capabilities_code(srv.target, tls_ca=pki.ca, tls_cert=pki.stranger_cert,
                                 tls_key=pki.stranger_key) == CODE.UNAVAILABLE
        assert srv.running.servicer.counters.sessions_total == 0


def test_tls_files_are_checked_at_start(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_key_path"):
        load_config(env={}, overrides={"security": {"tls_cert_path": str(pki.server_cert)}})
    with pytest.raises(ConfigError, match="cannot read"), serving(security={
            "tls_cert_path": str(pki.server_cert), "tls_key_path": str(tmp_path / "no.key")}):
        pass
    with pytest.raises(ConfigError, match="holds no token"), serving(security={
            "token_file": str(_write(tmp_path / "t.txt", "# only a comment\n"))}):
        pass


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- bearer tokens


def test_token_auth(pki: Pki, plain_cuts: list[int], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with serving(max_streams=1, security={"token_file": str(pki.tokens)}) as srv:
        assert capabilities_code(srv.target) == CODE.UNAUTHENTICATED
        assert capabilities_code(srv.target, token="wrong") == CODE.UNAUTHENTICATED
        assert capabilities_code(srv.target, metadata=(("authorization", TOKEN),)) \
            == CODE.UNAUTHENTICATED  # no "Bearer " scheme
        assert capabilities_code(srv.target, token="other-token") == CODE.OK
        with Client(srv.target, token=TOKEN) as c:
            assert stream_cuts(c) == plain_cuts
        with grpc.insecure_channel(srv.target) as ch:  # probes need no token
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                         timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # Refused before admission: with the only stream slot taken, a bad token still
        # gets UNAUTHENTICATED (not RESOURCE_EXHAUSTED) and never counts as a rejection.
        with Client(srv.target, token=TOKEN) as c, \
                c.stream(StreamOptions(sample_rate_hz=16000, channels=1)) as held:
            held.wait_ready(timeout=10)
            with pytest.raises(grpc.RpcError) as info:
                run_stream(srv.target, [config_msg()], timeout=10)
            assert info.value.code() == CODE.UNAUTHENTICATED
            assert "authorization" in (info.value.details() or "")
            with Client(srv.target, token=TOKEN) as c2, pytest.raises(SeamcutRpcError) as full:
                stream_cuts(c2)
            assert full.value.code == CODE.RESOURCE_EXHAUSTED
        assert srv.running.servicer.counters.rejected == 1
        assert srv.running.auth is not None and srv.running.auth.refused == 4
    assert caplog.records and "refused" in caplog.text
    assert TOKEN not in caplog.text and "other-token" not in caplog.text
    assert "wrong" not in caplog.text


def test_tokens_from_the_environment_are_not_in_the_repr() -> None:
    cfg = load_config(env={"SEAMCUT_SECURITY_TOKENS": f"a1,{TOKEN}"})
    assert cfg.security.auth and TOKEN not in repr(cfg)


# ---------------------------------------------------------------- reflection


def _list_services(target: str) -> list[str]:
    with grpc.insecure_channel(target) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        return [s.name for r in replies for s in r.list_services_response.service]


def test_reflection_is_off_unless_switched_on(server: ServerThread) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _list_services(server.target)
    assert info.value.code() == CODE.UNIMPLEMENTED
    with serving(reflection=True) as srv:
        assert "seamcut.v1.Seamcut" in _list_services(srv.target)


# ---------------------------------------------------------------- the command line

def test_cli_serve_and_split_with_tls_and_token(pki: Pki, tmp_path: Path) -> None:
    srv = LocalServer(("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                       "--token-file", str(pki.tokens)), env={"SEAMCUT_SERVER_GRACE_S": "1"})
    target = srv.target
    try:
        wav = tmp_path / "clip.wav"
        sf.write(str(wav), CLIP.audio, CLIP.sample_rate_hz, subtype="PCM_16")
        split = [sys.executable, "-m", "seamcut.cli", "split", str(wav), "--server", target,
                 "--tls-ca", str(pki.ca), "--quiet", "--json", "-"]
        ok = subprocess.run([*split, "--token", TOKEN], capture_output=True, text=True,
                            timeout=120, check=False)
        assert ok.returncode == 0, ok.stderr
        assert '"kind": "end"' in ok.stdout
        denied = subprocess.run([*split, "--token", "nope"], capture_output=True, text=True,
                                timeout=120, check=False)
        assert denied.returncode == 1 and "UNAUTHENTICATED" in denied.stderr, denied.stderr
    finally:
        assert srv.stop() == 0


@pytest.mark.unit
def test_client_security_options_are_checked(pki: Pki) -> None:
    from seamcut.client import AsyncClient

    with pytest.raises(ValueError, match="not both"):
        AsyncClient(credentials=grpc.ssl_channel_credentials(), tls_ca=pki.ca)
    with pytest.raises(ValueError, match="not both"):
        AsyncClient(token="t", metadata=(("authorization", "Bearer u"),))
    with pytest.raises(ValueError, match="go together"):
        AsyncClient(tls_cert=pki.client_cert)
    with pytest.raises(ValueError, match="cannot read"):
        AsyncClient(tls_ca="/nonexistent/ca.pem")
    with pytest.raises(ValueError, match="whitespace"):
        AsyncClient(token="two words")
    assert AsyncClient(token="t").metadata == (("authorization", "Bearer t"),)
