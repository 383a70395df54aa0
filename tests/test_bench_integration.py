"""``seamcut bench`` against real servers: the report's fields and figures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from seamcut.bench.cli import main as bench

from seamcut.v1 import seamcut_pb2 as pb
from tests.helpers import ServerThread, audio_msgs, config_msg, run_stream, serving

pytestmark = pytest.mark.integration
TOKEN = "bench-t0ken-5e1f"


def _run(tmp_path: Path, *argv: str, expect: int = 0) -> dict[str, Any]:
    out = tmp_path / "report.json"
    code = bench([*argv, "--json", str(out), "--quiet"])
    assert code == expect
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def _finite(d: dict[str, Any], keys: tuple[str, ...] = ("p50", "p90", "p99", "max")) -> bool:
    return all(isinstance(d[k], float | int) and math.isfinite(d[k]) for k in keys)


@pytest.mark.timeout(60)
def test_four_paced_streams_report(server: ServerThread, tmp_path: Path) -> None:
    rep = _run(tmp_path, "--server", server.target, "--streams", "4", "--realtime",
               "--duration", "3", "--warmup", "1", "--server-pid", str(os.getpid()),
               "--markdown", str(tmp_path / "r.md"), "--plots", str(tmp_path / "plots"))
    s = rep["summary"]
    assert s["streams"] == 4 and s["errors"] == 0 and rep["errors"]["by_code"] == {}
    assert s["lookahead_ms"] == rep["server"]["lookahead_ms"] > 0
    ack, cut = s["ack_latency_ms"], s["cut_finalization_latency_ms"]
    # 4 streams x 50 chunks/s x 3 s (give or take a chunk whose send straddles a window
    # edge), every one acknowledged.
    assert ack["count"] == rep["messages"]["sent"] and 596 <= ack["count"] <= 604
    assert _finite(ack) and 0 < ack["p50"] <= ack["p90"] <= ack["p99"] <= ack["max"]
    # Cuts in 3 s of 4 staggered streams (and their END cuts): finite, bounded by the
    # look-ahead (+ slack) on an idle server, possibly negative.
    assert cut["count"] >= 4 and _finite(cut)
    assert cut["max"] <= s["lookahead_ms"] + 100
    assert rep["cuts"]["by_kind"]["end"] == 4
    # Paced at real time: audio processed per wall second ~ streams (block granularity).
    assert 3.0 <= s["audio_seconds_per_second"] <= 4.5
    assert rep["messages"]["send_lag_ms"]["count"] == ack["count"]
    assert rep["stages_ms"]["vad"]["count"] > 0 and rep["batch_size"]["max"] >= 1
    assert rep["streams"] == {"opened": 4, "failed": 0, "connected": 4}
    assert rep["resources"]["server"]["rss_mib_max"] > 0  # in-process server: our own pid
    assert rep["config"]["realtime_factor"] == 1.0 and rep["machine"]["cpu_count"] >= 1
    assert rep["command"][:2] == ["seamcut", "bench"] and rep["date"]
    # Whole 1 s bins over warm-up + duration (4 s): the last one is dropped when the
    # run's end lands a hair before t0 + 4 s (seen in about 1 run of 3 on this VM).
    assert 3 <= len(rep["throughput"]["series"]) <= 4
    assert (tmp_path / "r.md").read_text().startswith("# seamcut bench")
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["latency_over_time.png", "resources.png", "stages.png", "throughput.png"]
    assert all(p.stat().st_size < 100_000 for p in (tmp_path / "plots").glob("*.png"))


@pytest.mark.timeout(60)
def test_ramp_over_two_processes_reports_steps_and_knee(server: ServerThread,
                                                        tmp_path: Path) -> None:
    # This checks the ramp's mechanics, not the latency target: a 2.5 s step has ~125
    # acks, so one scheduling hiccup of the shared 2-core CI machine would be its p99.
    rep = _run(tmp_path, "--server", server.target, "--streams", "4", "--realtime",
               "--ramp", "2:2:2.5", "--warmup", "0.5", "--processes", "2", "--chunk-ms", "40",
               "--max-p99-ms", "1000")
    ramp = rep["ramp"]
    assert [st["streams"] for st in ramp["steps"]] == [2, 4]
    assert all(st["passed"] for st in ramp["steps"]), ramp["steps"]
    assert ramp["knee_streams"] == 4 == rep["summary"]["streams"]
    assert rep["summary"]["errors"] == 0 and rep["streams"]["opened"] == 4
    assert all(st["ack_latency_ms"]["count"] > 0 for st in ramp["steps"])


@pytest.mark.timeout(60)
def test_unreachable_server_is_one_line_and_no_report(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    t0 = time.monotonic()
    # No --quiet: the table must not be printed either. --duration 30: the bench must
    # give up as soon as every stream has failed, not wait the duration out.
    code = bench(["--server", "127.0.0.1:1", "--streams", "2", "--duration", "30",
                  "--warmup", "0", "--json", str(out / "r.json"), "--markdown",
                  str(out / "r.md"), "--plots", str(out / "plots")])
    assert code == 4 and time.monotonic() - t0 < 10
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and stderr.count("\n") == 1, stderr
    assert stderr.startswith("error: cannot connect to 127.0.0.1:1 — is `seamcut serve` "
                             "running there?")
    assert "Connection refused" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []  # no JSON, no Markdown, no plots


def _bench_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str
                   ) -> tuple[int, str, dict[str, Any] | None]:
    """(exit code, stderr, the JSON report or None) of a tiny paced run (``argv`` last:
    it may override the defaults)."""
    out = tmp_path / f"r{len(list(tmp_path.glob('r*.json')))}.json"
    code = bench(["--streams", "1", "--realtime", "--duration", "1", "--warmup", "0",
                  "--json", str(out), *argv])
    _, err = capsys.readouterr()
    return code, err, json.loads(out.read_text()) if out.exists() else None


@pytest.mark.timeout(60)
def test_bench_with_a_token_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"# bench test\n{TOKEN}\n")
    with serving(security={"token_file": str(tokens)}) as srv:
        code, err, rep = _bench_outcome(tmp_path, capsys, "--server", srv.target,
                                        "--token-file", str(tokens))
        assert code == 0 and err == "" and rep is not None
        assert rep["summary"]["errors"] == 0 and rep["streams"]["connected"] == 1
        assert rep["summary"]["ack_latency_ms"]["count"] > 0
        assert rep["config"]["transport"]["token"] == "***"  # never in the report
        for extra in ((), ("--token", "wrong-token")):
            code, err, rep = _bench_outcome(tmp_path, capsys, "--server", srv.target, *extra)
            assert code == 1 and rep is None, err
            assert err.startswith("error: the server refused the credentials "
                                  "(UNAUTHENTICATED)")
            assert err.count("\n") == 1 and "--token" in err and TOKEN not in err


@pytest.mark.timeout(60)
def test_bench_with_a_tls_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.test_security import issue, make_ca

    ca = make_ca("bench test CA")
    key, cert = issue(ca, "localhost", server=True)
    paths = {name: tmp_path / name for name in ("ca.pem", "server.pem", "server.key")}
    paths["ca.pem"].write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    paths["server.pem"].write_bytes(cert)
    paths["server.key"].write_bytes(key)
    with serving(security={"tls_cert_path": str(paths["server.pem"]),
                           "tls_key_path": str(paths["server.key"])}) as srv:
        # Two worker processes: the TLS settings travel to them inside the config.
        code, err, rep = _bench_outcome(tmp_path, capsys, "--server", srv.target,
                                        "--tls-ca", str(paths["ca.pem"]), "--streams", "2",
                                        "--processes", "2")
        assert code == 0 and err == "" and rep is not None
        assert rep["summary"]["errors"] == 0 and rep["streams"]["connected"] == 2
        # A CA that did not sign the server's certificate: the handshake fails.
        other = tmp_path / "other.pem"
        other.write_bytes(make_ca("another CA")[1].public_bytes(serialization.Encoding.PEM))
        code, err, rep = _bench_outcome(tmp_path, capsys, "--server", srv.target,
                                        "--tls-ca", str(other))
        assert code == 4 and rep is None and err.count("\n") == 1, err
        assert err.startswith(f"error: TLS handshake with {srv.target} failed")
        code, err, rep = _bench_outcome(tmp_path, capsys, "--server", srv.target)  # plaintext
        assert code == 4 and rep is None and err.count("\n") == 1, err
        assert err.startswith("error: ") and "Traceback" not in err


@pytest.mark.timeout(60)
def test_some_streams_refused_still_reports_them(tmp_path: Path) -> None:
    # One stream slot: the second stream is refused, the first is measured.
    with serving(max_streams=1, max_streams_per_peer=0) as srv:
        rep = _run(tmp_path, "--server", srv.target, "--streams", "2", "--realtime",
                   "--duration", "1", "--warmup", "0")
    assert rep["streams"] == {"opened": 2, "failed": 1, "connected": 1}
    assert rep["summary"]["errors"] == 1 and list(rep["errors"]["by_code"]) == [
        "RESOURCE_EXHAUSTED"]
    assert rep["summary"]["ack_latency_ms"]["count"] > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_64_paced_streams_for_60_s(tmp_path: Path) -> None:
    """The load target's shape on a spawned server; the figures go to docs/BENCH_RESULTS."""
    rep = _run(tmp_path, "--server", "spawn", "--streams", "64", "--realtime",
               "--duration", "60", "--warmup", "5", "--processes", "2")
    s = rep["summary"]
    assert s["errors"] == 0 and s["streams"] == 64
    assert _finite(s["ack_latency_ms"]) and _finite(s["cut_finalization_latency_ms"])
    assert abs(s["ack_latency_ms"]["count"] - 64 * 50 * 60) <= 64
    assert 55 <= s["audio_seconds_per_second"] <= 70
    assert rep["resources"]["server"]["rss_mib_max"] > 0


def test_echo_server_answers_the_protocol_without_audio_work() -> None:
    """The transport-floor server (bench/echo.py) speaks enough protocol for the bench."""
    proc = subprocess.Popen([sys.executable, "-m", "seamcut.bench.echo", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        target = line.rsplit(" ", 1)[-1].strip()
        assert "listening on" in line, line
        msgs = run_stream(target, [config_msg(), *audio_msgs([b"\0\0" * 320] * 5)])
        kinds = [m.WhichOneof("msg") for m in msgs]
        assert kinds == ["ready"] + ["progress"] * 5 + ["cut", "summary"]
        assert [m.progress.last_seq for m in msgs[1:6]] == [0, 1, 2, 3, 4]
        end = msgs[-2].cut
        # The END cut sits at the end of the audio received, in samples and seconds.
        assert (end.sample, end.seconds, end.kind) == (5 * 320, 0.1, pb.END)
        assert msgs[-1].summary.samples_received == 5 * 320
        resumed = config_msg(rate=8000)
        resumed.config.start_sample = 8000  # a stream resumed 1 s in
        msgs = run_stream(target, [resumed, *audio_msgs([b"\0\0" * 400] * 3)])
        end = msgs[-2].cut
        assert (end.sample, end.seconds, end.kind) == (8000 + 1200, 1.15, pb.END)
        assert msgs[-3].progress.samples_received == 8000 + 1200
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        if proc.stdout:
            proc.stdout.close()
