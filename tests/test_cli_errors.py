"""Every user mistake `seamcut split` is known to meet: one line on stderr, no traceback,
the documented exit code (client/explain.py). Real subprocesses, real servers.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from seamcut.bench.localserver import LocalServer
from seamcut.client import explain

from tests.corpus import make_clip
from tests.helpers import ServerThread, serving
from tests.test_security import TOKEN, Pki, dns_only_server_cert, pki  # noqa: F401  # a fixture

pytestmark = pytest.mark.integration
SAMPLE = str(resources.files("seamcut.samples") / "speech_en.flac")


def split(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "seamcut.cli", "split", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def one_line(res: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The single stderr line of a failed run, checked for ``needles`` and ``code``."""
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1, res.stderr
    assert res.returncode == code, (res.returncode, res.stderr)
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def plain() -> Iterator[ServerThread]:
    with serving() as srv:
        yield srv


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[ServerThread]:  # noqa: F811
    with serving(security={"tls_cert_path": str(pki.server_cert),
                           "tls_key_path": str(pki.server_key)}) as srv:
        yield srv


# ---------------------------------------------------------------- options and files


def test_option_and_file_mistakes_exit_2(tmp_path: Path, pki: Pki) -> None:  # noqa: F811
    one_line(split(SAMPLE, "--tls-cert", str(pki.client_cert)), explain.EXIT_USAGE,
             "--tls-cert and --tls-key go together")
    unreadable = tmp_path / "ca.pem"
    unreadable.write_text("-----BEGIN CERTIFICATE-----\n")
    unreadable.chmod(0)
    if unreadable.stat().st_mode & 0o444 == 0 and not _root():
        one_line(split(SAMPLE, "--tls-ca", str(unreadable)), explain.EXIT_USAGE,
                 "--tls-ca", "cannot read")
    one_line(split(SAMPLE, "--tls-ca", str(tmp_path / "none.pem")), explain.EXIT_USAGE,
             "--tls-ca", "cannot read", "none.pem")
    one_line(split(SAMPLE, "--tls-ca", SAMPLE), explain.EXIT_USAGE, "not a PEM file")
    one_line(split(str(tmp_path)), explain.EXIT_USAGE, "is a directory")
    one_line(split(str(tmp_path / "missing.wav")), explain.EXIT_USAGE, "no such file")
    (tmp_path / "notes.wav").write_text("not audio at all\n" * 20)
    one_line(split(str(tmp_path / "notes.wav")), explain.EXIT_USAGE, "not an audio file")
    wav = tmp_path / "cut_short.wav"
    sf.write(str(wav), np.zeros(32000, np.int16), 16000, subtype="PCM_16")
    wav.write_bytes(wav.read_bytes()[:30000])
    one_line(split(str(wav)), explain.EXIT_USAGE, "truncated")


def _root() -> bool:
    import os

    return os.geteuid() == 0


def test_config_errors_name_the_flag_in_seconds(plain: ServerThread) -> None:
    one_line(split(SAMPLE, "--server", plain.target, "--max-segment", "1"), explain.EXIT_STREAM,
             "--max-segment: must be in [1.7, 3600] seconds", "got 1")
    one_line(split(SAMPLE, "--server", plain.target, "--min-pause", "0.01"),
             explain.EXIT_STREAM, "--min-pause: must be in [0.1, 5] seconds, got 0.01")
    one_line(split(SAMPLE, "--server", plain.target, "--min-pause", "3"), explain.EXIT_STREAM,
             "--min-pause: 3 s is longer than the server's pause search window")


# ---------------------------------------------------------------- connections


def test_nothing_listening_and_a_missing_port(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that is certainly closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one_line(split(SAMPLE, "--server", f"127.0.0.1:{port}"), explain.EXIT_CONNECT,
             f"cannot connect to 127.0.0.1:{port}", "is `seamcut serve` running")
    # No port: 50051, not grpc's 443 (whether or not something listens there).
    res = split(SAMPLE, "--server", "127.0.0.1", "--timeout", "3")
    if res.returncode != 0:
        one_line(res, explain.EXIT_CONNECT, "127.0.0.1:50051")


def test_a_listener_that_never_answers_times_out() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # the kernel completes the TCP handshake; nobody speaks HTTP/2
        t0 = time.monotonic()
        res = split(SAMPLE, "--server", f"127.0.0.1:{s.getsockname()[1]}", "--timeout", "1")
        took = time.monotonic() - t0
    one_line(res, explain.EXIT_CONNECT, "no answer from", "within 1 s")
    assert took < 15  # grpc alone would keep trying for 20 s; start-up is most of this


def test_tls_failures_are_told_apart_from_a_missing_server(
    pki: Pki, tls_server: ServerThread, plain: ServerThread  # noqa: F811
) -> None:
    ok = split(SAMPLE, "--server", tls_server.target, "--tls-ca", str(pki.ca), "--quiet")
    assert ok.returncode == 0, ok.stderr
    # The wrong CA, a name the certificate does not hold, TLS against plaintext.
    one_line(split(SAMPLE, "--server", tls_server.target, "--tls-ca", str(pki.other_ca)),
             explain.EXIT_CONNECT, "TLS handshake with")
    one_line(split(SAMPLE, "--server", plain.target, "--tls-ca", str(pki.ca)),
             explain.EXIT_CONNECT, "TLS handshake with")
    # Plaintext against TLS: the server hangs up on bytes that are not a handshake.
    line = one_line(split(SAMPLE, "--server", tls_server.target, "--timeout", "5"),
                    explain.EXIT_CONNECT)
    assert "TLS" in line, line


def test_a_certificate_for_another_host_name(tmp_path: Path) -> None:
    with serving(security=dns_only_server_cert(tmp_path, "elsewhere.example")) as srv:
        one_line(split(SAMPLE, "--server", srv.target, "--tls-ca", str(tmp_path / "ca.pem")),
                 explain.EXIT_CONNECT, "TLS handshake with", "host name")


def test_mtls_without_a_client_certificate(pki: Pki) -> None:  # noqa: F811
    with serving(security={"tls_cert_path": str(pki.server_cert),
                           "tls_key_path": str(pki.server_key),
                           "tls_client_ca_path": str(pki.ca)}) as srv:
        line = one_line(split(SAMPLE, "--server", srv.target, "--tls-ca", str(pki.ca),
                              "--timeout", "5"), explain.EXIT_CONNECT)
        assert "TLS" in line and "--tls-cert" in line, line
        ok = split(SAMPLE, "--server", srv.target, "--tls-ca", str(pki.ca), "--tls-cert",
                   str(pki.client_cert), "--tls-key", str(pki.client_key), "--quiet")
        assert ok.returncode == 0, ok.stderr


def test_a_wrong_token_is_unauthenticated(pki: Pki) -> None:  # noqa: F811
    with serving(security={"token_file": str(pki.tokens)}) as srv:
        one_line(split(SAMPLE, "--server", srv.target), explain.EXIT_STREAM,
                 "refused the credentials", "--token")
        one_line(split(SAMPLE, "--server", srv.target, "--token", "nope"),
                 explain.EXIT_STREAM, "refused the credentials")
        assert split(SAMPLE, "--server", srv.target, "--token", TOKEN,
                     "--quiet").returncode == 0


# ---------------------------------------------------------------- outputs


def test_json_to_stdout_is_json_alone(plain: ServerThread) -> None:
    res = split(SAMPLE, "--server", plain.target, "--json", "-")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # nothing but the document
    assert doc["cuts"][-1]["kind"] == "end"
    assert "pause" in res.stderr  # the table went to stderr


def test_realtime_names_the_bound_and_explains_it(plain: ServerThread, tmp_path: Path) -> None:
    wav = tmp_path / "short.wav"
    data, rate = sf.read(SAMPLE, dtype="int16")
    sf.write(str(wav), data[: rate * 4], rate, subtype="PCM_16")
    res = split(str(wav), "--server", plain.target, "--realtime", "--json",
                str(tmp_path / "o.json"))
    assert res.returncode == 0, res.stderr
    assert "vs bound" in res.stdout
    doc = json.loads((tmp_path / "o.json").read_text())
    assert "final_vs_bound_ms" in doc["cuts"][0] and "look-ahead" in doc["notes"][
        "final_vs_bound_ms"]
    helptext = subprocess.run([sys.executable, "-m", "seamcut.cli", "split", "--help"],
                              capture_output=True, text=True, check=True).stdout
    assert "vs bound" in helptext and "exit codes" in helptext


def test_a_draining_server_still_gives_the_cuts_so_far(tmp_path: Path) -> None:
    wav = tmp_path / "long.wav"
    data, rate = sf.read(SAMPLE, dtype="int16")
    sf.write(str(wav), data, rate, subtype="PCM_16")  # 13.9 s, sent at real time
    srv = LocalServer(env={"SEAMCUT_SERVER_GRACE_S": "20"})
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seamcut.cli", "split", str(wav), "--server", srv.target,
             "--realtime", "--json", str(tmp_path / "o.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first = [proc.stdout.readline(), proc.stdout.readline()]  # Ready line, table head
        assert "time" in first[1], first
        time.sleep(3)  # a few seconds of audio at real time
        srv.proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        out = "".join(first) + out
    finally:
        srv.stop()
    assert "Traceback" not in err, err
    assert proc.returncode == explain.EXIT_INCOMPLETE, (proc.returncode, err)
    assert "notice: draining" in err and "incomplete" in err, err
    cuts = json.loads((tmp_path / "o.json").read_text())["cuts"]
    assert cuts[-1]["kind"] == "end" and 0 < cuts[-1]["sample"] < len(data)
    assert " end " in out


def test_no_pause_cut_says_which_min_pause_would_cut_one(plain: ServerThread,
                                                          tmp_path: Path) -> None:
    clip = make_clip("short_pauses", ("The train leaves at seven.", "Bring a warm coat.",
                                      "We meet at the station."), (450, 500),
                     voice="en-us+m1", language="en-us", seed=7)
    wav = tmp_path / "short_pauses.wav"
    sf.write(str(wav), clip.audio, clip.sample_rate_hz, subtype="PCM_16")
    res = split(str(wav), "--server", plain.target, "--min-pause", "0.7", "--json",
                str(tmp_path / "a.json"))
    assert res.returncode == 0, res.stderr
    kinds = [c["kind"] for c in json.loads((tmp_path / "a.json").read_text())["cuts"]]
    assert "pause" not in kinds
    hint = one_line(res, 0, "no pause was cut", "shorter than --min-pause 0.7 s")
    suggested = re.search(r"--min-pause ([\d.]+) would count it as a pause", hint)
    assert suggested is not None, hint
    assert 0.4 <= float(suggested.group(1)) < 0.7
    again = split(str(wav), "--server", plain.target, "--min-pause", suggested.group(1),
                  "--json", str(tmp_path / "b.json"))
    assert again.returncode == 0 and "hint" not in again.stderr, again.stderr
    kinds = [c["kind"] for c in json.loads((tmp_path / "b.json").read_text())["cuts"]]
    assert "pause" in kinds
