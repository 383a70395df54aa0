"""The proto and docs/PROTOCOL.md are the whole contract: each claim they make that a
machine can check is checked against the server here (ranges, statuses, metadata keys,
health, reflection, request ids in the logs, the exposure warning)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from seamcut.bench.localserver import LocalServer
from seamcut.server import config as C
from seamcut.server.config import load_config
from seamcut.server.errors import ConfigError
from seamcut.server.main import exposure_warning, is_loopback
from seamcut.server.transport import convert
from seamcut.server.transport.app import HEALTH_SERVICES, REFLECTION_V1

from seamcut.v1 import seamcut_pb2 as pb
from seamcut.v1 import seamcut_pb2_grpc as pb_grpc
from tests.helpers import config_msg, serving

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "protos/seamcut/v1/seamcut.proto"
HEALTH_PROTO = ROOT / "protos/grpc/health/v1/health.proto"
PROTOCOL = ROOT / "docs/PROTOCOL.md"
METADATA_KEYS = ("retry-after-ms", "last-accepted-seq", "session-id")

# Where each validated message sits in a StreamConfig.
_PATHS = {"AudioFormat": "format", "CutPolicy": "policy", "SeparationOptions": "separation",
          "EventOptions": "events", "StreamConfig": ""}
_FIELD = re.compile(r"^\s*(?:optional |repeated )?\w+ (\w+) = \d+;")
_BOUND = re.compile(r"^\s*//\s*(Range|Length): (0 or )?\[([^,\]]+), ([^\]]+)\]")


@dataclasses.dataclass(frozen=True)
class Documented:
    message: str
    field: str
    kind: str  # "Range" or "Length"
    zero_ok: bool  # "0 or [...]": 0 is allowed besides the interval
    lo: str
    hi: str

    def __str__(self) -> str:
        return f"{self.message}.{self.field}"


def documented_bounds() -> list[Documented]:
    """Every "Range: [lo, hi]" / "Length: [lo, hi]" line of the proto, with its field."""
    out, message, pending = [], "", []
    for line in PROTO.read_text().splitlines():
        m = re.match(r"^message (\w+) \{", line)
        if m:
            message, pending = m.group(1), []
            continue
        b = _BOUND.match(line)
        if b:
            pending.append(b)
            continue
        f = _FIELD.match(line)
        if f:
            out += [Documented(message, f.group(1), b.group(1), bool(b.group(2)),
                               b.group(3).strip(), b.group(4).strip()) for b in pending]
            pending = []
    return out


BOUNDS = documented_bounds()


# ---------------------------------------------------------------- probing the validator

def _evaluate(expr: str, names: dict[str, int]) -> int:
    """A bound: an integer, or "a + b - 1" over sibling fields' values in force."""
    total, sign = 0, 1
    for tok in expr.split():
        if tok in "+-":
            sign = 1 if tok == "+" else -1
            continue
        total += sign * (int(tok) if tok.lstrip("-").isdigit() else names[tok])
    return total


def _config(doc: Documented, value: Any) -> pb.StreamConfig:
    """A valid StreamConfig but for ``doc``'s field set to ``value``."""
    fmt = pb.AudioFormat(encoding=pb.PCM_S16LE, sample_rate_hz=16000, channels=4)
    cfg = pb.StreamConfig(format=fmt)
    if doc.message in ("SeparationOptions",):
        cfg.mode = pb.SONG
    if doc.message == "CutPolicy" and doc.field != "max_segment_ms":
        # Long minimum segments need max_segment_ms above them: 0 = no maximum.
        cfg.policy.max_segment_ms = 0
    if doc.field == "min_pause_ms":  # pause_search_ms must stay >= min_pause_ms
        cfg.policy.pause_search_ms = 10_000
    target: Any = cfg if not _PATHS[doc.message] else getattr(cfg, _PATHS[doc.message])
    if doc.field == "vocal_stem_channels":
        target.vocal_stem_channels.append(value)
    else:
        setattr(target, doc.field, value)
    return cfg


SIGNED = {"start_sample"}  # int64; every other ranged field is unsigned or a length
BYTES = {"resume_token"}  # a bytes field: its Length counts bytes


def _names(doc: Documented) -> dict[str, int]:
    """The values a bound may name: the defaults in force, and the probe's channels."""
    policy = dataclasses.asdict(C.CutPolicy())
    return {**policy, "channels": 4}


def _value(doc: Documented, n: float) -> Any:
    if doc.kind == "Length":
        return b"x" * int(n) if doc.field in BYTES else "x" * int(n)
    return n


def _refusal(doc: Documented, value: Any) -> str | None:
    """The ConfigError message for ``value`` in ``doc``'s field, None when accepted."""
    app = load_config(env={})
    try:
        convert.spec_from_proto(app, _config(doc, value))
    except ConfigError as exc:
        return str(exc)
    return None


def _is_float(doc: Documented) -> bool:
    return "." in doc.lo or "." in doc.hi


@pytest.mark.unit
def test_the_proto_documents_ranges_in_the_machine_readable_form() -> None:
    fields = {str(d) for d in BOUNDS}
    # Every numeric per-stream setting the server validates has its range in the proto.
    for cls, message in ((C.CutPolicy, "CutPolicy"), (C.EventOptions, "EventOptions")):
        for f in dataclasses.fields(cls):
            if f.type in ("int", "float"):
                assert f"{message}.{f.name}" in fields, f"{message}.{f.name}: no Range line"
    for name in ("AudioFormat.sample_rate_hz", "AudioFormat.channels",
                 "StreamConfig.request_id", "StreamConfig.start_sample",
                 "SeparationOptions.backend", "SeparationOptions.window_hop_ms",
                 "SeparationOptions.vocal_stem_channels"):
        assert name in fields, name
    assert "Range (0, 1)" not in PROTO.read_text()  # the old, wrong vad_threshold range


@pytest.mark.unit
@pytest.mark.parametrize("doc", BOUNDS, ids=str)
def test_documented_range_is_the_validated_range(doc: Documented) -> None:
    names = _names(doc)
    if _is_float(doc):
        lo, hi, step = float(doc.lo), float(doc.hi), 0.01
    else:
        lo, hi, step = _evaluate(doc.lo, names), _evaluate(doc.hi, names), 1
    for inside in (lo, hi):
        why = _refusal(doc, _value(doc, inside))
        assert why is None, f"{doc} = {inside} is documented as valid but refused: {why}"
    if doc.zero_ok:
        assert _refusal(doc, 0) is None, f"{doc} = 0 is documented as valid"
    outside = [hi + step]
    if lo - step >= 0 or doc.field in SIGNED:
        outside.append(lo - step)  # unsigned fields (and lengths) cannot go below 0
    if doc.zero_ok:
        outside = [v for v in outside if v != 0]
    for value in outside:
        why = _refusal(doc, _value(doc, value))
        assert why is not None, f"{doc} = {value} is documented as invalid but accepted"
        assert doc.field in why, why  # the message names the field


@pytest.mark.unit
def test_refused_float32_values_read_as_the_user_wrote_them() -> None:
    doc = next(d for d in BOUNDS if d.field == "vad_threshold")
    why = _refusal(doc, 0.02)  # float32: arrives as 0.019999999552965164
    assert why == "policy.vad_threshold: must be in [0.05, 0.95], got 0.02"


# ---------------------------------------------------------------- statuses, metadata, docs

def _server_sources() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "server").rglob("*.py")))


def _proto_header() -> str:
    return PROTO.read_text().split("syntax =", 1)[0]


@pytest.mark.unit
def test_every_status_the_server_uses_is_documented() -> None:
    used = set(re.findall(r"StatusCode\.([A-Z_]+)", _server_sources())) - {"OK"}
    assert len(used) >= 9, sorted(used)
    doc, header = PROTOCOL.read_text(), _proto_header()
    for code in sorted(used):
        assert re.search(rf"\b{code}\b", doc), f"{code} missing from docs/PROTOCOL.md"
        assert re.search(rf"\b{code}\b", header), f"{code} missing from the proto's comment"


@pytest.mark.unit
def test_every_trailing_metadata_key_is_documented() -> None:
    # Metadata is built in the transport as (("key", value),) tuples; keys have hyphens.
    src = "\n".join(p.read_text() for p in sorted((ROOT / "server/transport").glob("*.py")))
    used = set(re.findall(r'\(\("([a-z]+(?:-[a-z]+)+)", ', src))
    assert used == set(METADATA_KEYS), used
    doc, header = PROTOCOL.read_text(), _proto_header()
    for key in METADATA_KEYS:
        assert f"`{key}`" in doc, f"{key} missing from docs/PROTOCOL.md"
        assert key in header, f"{key} missing from the proto's comment"


@pytest.mark.unit
def test_doc_pointers_resolve() -> None:
    text = PROTO.read_text() + HEALTH_PROTO.read_text()
    pointers = set(re.findall(r"\b((?:docs|tests|protos)/[\w./-]+\.(?:md|py|proto))", text))
    assert "docs/PROTOCOL.md" in pointers
    for p in sorted(pointers):
        assert (ROOT / p).is_file(), f"the proto points to {p}, which does not exist"
    readme = (ROOT / "README.md").read_text()
    assert "docs/PROTOCOL.md" in readme and "docs/OTHER_LANGUAGES.md" in readme
    assert (ROOT / "docs/OTHER_LANGUAGES.md").is_file()


@pytest.mark.unit
def test_shipped_health_proto_is_the_one_grpc_serves(tmp_path: Path) -> None:
    from grpc_tools import protoc

    out = tmp_path / "health.pb"
    assert protoc.main(["protoc", f"-I{ROOT / 'protos'}", f"--descriptor_set_out={out}",
                        "grpc/health/v1/health.proto"]) == 0
    shipped = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    served = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(served)
    served.name = shipped.name  # grpcio ships it as grpc_health/v1/health.proto
    _drop_json_names(shipped)  # protoc adds json_name; the embedded copy omits it
    assert shipped == served


def _drop_json_names(fdp: descriptor_pb2.FileDescriptorProto) -> None:
    todo = list(fdp.message_type)
    while todo:
        msg = todo.pop()
        todo += msg.nested_type
        for f in msg.field:
            f.ClearField("json_name")


# ---------------------------------------------------------------- the exposure warning

@pytest.mark.unit
@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
    ("10.0.0.7", False), ("example.org", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.unit
def test_the_warning_needs_exposure_without_tls_and_token() -> None:
    assert C.ServerConfig().host == "127.0.0.1"
    assert exposure_warning(load_config(env={})) is None
    wide = load_config(env={}, overrides={"server": {"host": "0.0.0.0"}})
    text = exposure_warning(wide)
    assert text is not None and "0.0.0.0" in text and "\n" not in text
    for fix in ("--tls-cert", "--tls-key", "--token-file", "127.0.0.1"):
        assert fix in text
    token = load_config(env={}, overrides={"server": {"host": "0.0.0.0"},
                                           "security": {"tokens": "t"}})
    assert exposure_warning(token) is None


def _serve_log(*args: str, listeners: int = 1) -> str:
    """Start ``seamcut serve`` with ``args``, wait until it listens, stop it: its log."""
    srv = LocalServer(("--log-level", "INFO", *args), listeners=listeners,
                      env={"SEAMCUT_SERVER_GRACE_S": "1"})
    try:
        text = srv.log_path.read_text(errors="replace")
    finally:
        srv.stop()
    return text


@pytest.mark.integration
def test_one_warning_when_listening_beyond_loopback_in_plaintext() -> None:
    assert "beyond loopback" not in _serve_log()  # 127.0.0.1
    text = _serve_log("--host", "0.0.0.0")
    assert text.count("beyond loopback") == 1, text
    assert re.search(r"WARNING .*listening on 0\.0\.0\.0 \(beyond loopback\)", text)


@pytest.mark.integration
def test_several_workers_still_warn_once() -> None:
    text = _serve_log("--host", "0.0.0.0", "--workers", "2", "--engine", "inline",
                      listeners=2)
    assert text.count("listening on 0.0.0.0:") == 2, text
    assert text.count("beyond loopback") == 1, text


# ---------------------------------------------------------------- health and reflection

@pytest.fixture(scope="module")
def reflective() -> Iterator[Any]:
    with serving(reflection=True) as srv:
        yield srv


def _reflect(ch: grpc.Channel, method: str,
             requests: list[reflection_pb2.ServerReflectionRequest],
             ) -> list[reflection_pb2.ServerReflectionResponse]:
    call = ch.stream_stream(
        method, request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    return list(call(iter(requests), timeout=30))


V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
V1 = f"/{REFLECTION_V1}/ServerReflectionInfo"


@pytest.mark.integration
@pytest.mark.parametrize("method", [V1ALPHA, V1])
def test_reflection_is_served_as_v1_and_v1alpha(reflective: Any, method: str) -> None:
    with grpc.insecure_channel(reflective.target) as ch:
        listed, seamcut_file, own_file = _reflect(ch, method, [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="seamcut.v1.Seamcut"),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol=method.split("/")[1]),
        ])
    names = {s.name for s in listed.list_services_response.service}
    assert names == {"seamcut.v1.Seamcut", "grpc.health.v1.Health",
                     "grpc.reflection.v1.ServerReflection",
                     "grpc.reflection.v1alpha.ServerReflection"}
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in seamcut_file.file_descriptor_response.file_descriptor_proto]
    assert files[0].package == "seamcut.v1"
    assert [s.name for s in files[0].service] == ["Seamcut"]
    own = descriptor_pb2.FileDescriptorProto.FromString(
        own_file.file_descriptor_response.file_descriptor_proto[0])
    assert f"{own.package}.{own.service[0].name}" == method.split("/")[1]
    assert [m.input_type for m in own.service[0].method] == [
        f".{own.package}.ServerReflectionRequest"]


@pytest.mark.integration
def test_the_generated_v1alpha_stub_works(reflective: Any) -> None:
    with grpc.insecure_channel(reflective.target) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        reply = next(stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30))
    assert "seamcut.v1.Seamcut" in {s.name for s in reply.list_services_response.service}


@pytest.mark.integration
def test_reflection_off_by_default(server: Any) -> None:
    with grpc.insecure_channel(server.target) as ch:
        for method in (V1ALPHA, V1):
            with pytest.raises(grpc.RpcError) as err:
                _reflect(ch, method, [reflection_pb2.ServerReflectionRequest(list_services="")])
            assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.integration
def test_health_answers_for_the_documented_names(server: Any) -> None:
    assert HEALTH_SERVICES == ("", "seamcut.v1.Seamcut")
    doc = PROTOCOL.read_text()
    assert '`""`' in doc and "`seamcut.v1.Seamcut`" in doc
    with grpc.insecure_channel(server.target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for name in HEALTH_SERVICES:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        for name in ("grpc.health.v1.Health", "seamcut.v1.Other"):
            with pytest.raises(grpc.RpcError) as err:
                stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=30)
            assert err.value.code() is grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------- behaviour the doc states

def _stream(target: str, messages: list[pb.ClientMessage],
            ) -> tuple[list[pb.ServerMessage], grpc.StatusCode, str, dict[str, str]]:
    with grpc.insecure_channel(target) as ch:
        call = pb_grpc.SeamcutStub(ch).StreamCuts(iter(messages), timeout=60)
        out: list[pb.ServerMessage] = []
        with contextlib.suppress(grpc.RpcError):  # the status is read from the call
            for msg in call:
                out.append(msg)
        meta = {k: v for k, v in (call.trailing_metadata() or ()) if isinstance(v, str)}
        return out, call.code(), call.details() or "", meta


def _audio(seq: int, frames: int) -> pb.ClientMessage:
    return pb.ClientMessage(audio=pb.AudioChunk(seq=seq, data=b"\0\0" * frames))


def _with_id(msg: pb.ClientMessage, request_id: str) -> pb.ClientMessage:
    msg.config.request_id = request_id
    return msg


@pytest.mark.integration
def test_metadata_presence_as_documented(server: Any) -> None:
    t = server.target
    # An empty chunk uses up a seq: 0 again is a duplicate, and 0 was accepted.
    out, code, _, meta = _stream(t, [config_msg(), _audio(0, 0), _audio(0, 160)])
    assert code is grpc.StatusCode.ABORTED
    assert meta == {"last-accepted-seq": "0", "session-id": out[0].ready.session_id}
    # Nothing accepted yet: no last-accepted-seq; after Ready: session-id.
    out, code, _, meta = _stream(t, [config_msg(), _audio(1, 160)])
    assert code is grpc.StatusCode.ABORTED
    assert meta == {"session-id": out[0].ready.session_id}
    # A refused config: no Ready, so no session-id.
    bad = config_msg()
    bad.config.policy.vad_threshold = 0.02
    out, code, details, meta = _stream(t, [bad])
    assert (out, code, meta) == ([], grpc.StatusCode.INVALID_ARGUMENT, {})
    assert details.endswith("got 0.02")
    # The transport's message limit: RESOURCE_EXHAUSTED without any metadata.
    big = pb.ClientMessage(audio=pb.AudioChunk(seq=0, data=b"\0" * (1 << 20)))
    out, code, details, meta = _stream(t, [config_msg(), big])
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and meta == {}, details
    # Progress before any chunk: last_seq 0.
    flush = pb.ClientMessage(control=pb.Control(flush=pb.Flush(flush_id=3)))
    out, code, _, _ = _stream(t, [config_msg(), flush])
    flushed = [m.flushed for m in out if m.WhichOneof("msg") == "flushed"]
    assert code is grpc.StatusCode.OK and flushed[0].flush_id == 3
    assert flushed[0].progress.last_seq == 0 and flushed[0].progress.samples_received == 0


@pytest.mark.integration
def test_request_id_on_the_streams_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    # A server of its own: the shared one's refusal log may have spent its burst.
    with serving() as srv:
        _request_id_lines(srv, caplog)


def _request_id_lines(server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="seamcut.server.transport.servicer")
    out, code, _, _ = _stream(server.target, [_with_id(config_msg(), "node-req-41"),
                                              _audio(0, 1600)])
    assert code is grpc.StatusCode.OK
    ok_sid = out[0].ready.session_id
    out, code, _, _ = _stream(server.target, [_with_id(config_msg(), "node-req-42"),
                                              _audio(1, 1600)])
    assert code is grpc.StatusCode.ABORTED
    bad_sid = out[0].ready.session_id
    _stream(server.target, [_with_id(config_msg(rate=7), "node-req-43")])

    def lines(rid: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if f"request_id={rid}" in r.getMessage()]

    ok = lines("node-req-41")
    assert any(m.startswith("stream started") for m in ok), ok
    assert any(m.startswith("stream ended: OK") for m in ok), ok
    assert all(f"session_id={ok_sid} " in m for m in ok), ok
    failed = lines("node-req-42")
    assert any(m.startswith("stream ended: ABORTED") for m in failed), failed
    assert all(f"session_id={bad_sid} " in m for m in failed), failed
    refused = lines("node-req-43")
    assert [m.split(" request_id")[0] for m in refused] == [
        "stream ended: INVALID_ARGUMENT session_id=-"], refused


@pytest.mark.integration
def test_the_cli_serve_help_names_the_loopback_default() -> None:
    out = subprocess.run([sys.executable, "-m", "seamcut.cli", "serve", "--help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "default 127.0.0.1" in " ".join(out.split())
