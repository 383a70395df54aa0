"""Configuration precedence, validation and per-stream overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from seamcut.server.config import (
    AudioFormat,
    Encoding,
    Mode,
    load_config,
    stream_spec,
)
from seamcut.server.errors import ConfigError

pytestmark = pytest.mark.unit


def test_defaults_work_out_of_the_box() -> None:
    cfg = load_config(env={})
    assert cfg.server.port == 50051 and cfg.engine.block_ms == 320
    assert cfg.policy.min_segment_ms == 1000


def test_precedence_override_env_file_default(tmp_path: Path) -> None:
    f = tmp_path / "seamcut.toml"
    f.write_text("[server]\nport = 6000\nmax_streams = 7\n[engine]\nblock_ms = 480\n")
    env = {"SEAMCUT_SERVER_PORT": "7000", "SEAMCUT_POLICY_MIN_GAP_MS": "250"}
    cfg = load_config(f, env=env, overrides={"server": {"port": 8000, "host": None}})
    assert cfg.server.port == 8000  # flag beats env
    assert cfg.server.max_streams == 7  # file beats default
    assert cfg.engine.block_ms == 480 and cfg.policy.min_gap_ms == 250
    assert cfg.server.host == "127.0.0.1"  # a flag left unset does not override


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"SEAMCUT_SERVER_PROT": "1"}, "unknown key(s) prot"),
        ({"SEAMCUT_NOPE_X": "1"}, "SEAMCUT_<SECTION>_<FIELD>"),
        ({"SEAMCUT_ENGINE_BLOCK_MS": "300"}, "multiple of 160"),
        ({"SEAMCUT_SERVER_PORT": "abc"}, "expected int"),
        ({"SEAMCUT_SERVER_REFLECTION": "maybe"}, "expected a boolean"),
        ({"SEAMCUT_ENGINE_DEVICE": "tpu"}, "engine.device"),
    ],
)
def test_bad_values_name_the_field(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_config(env=env)
    assert needle in str(info.value)


def test_unknown_file_section(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[serverr]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[serverr\]"):
        load_config(f, env={})


def test_stream_overrides_apply_in_one_place() -> None:
    cfg = load_config(env={})
    fmt = AudioFormat(encoding=Encoding.F32LE, sample_rate_hz=44100, channels=2)
    spec = stream_spec(cfg, format=fmt, mode=None, policy_overrides={"min_gap_ms": 400},
                       event_overrides={"vad_segments": True})
    assert spec.mode is Mode.SPEECH and spec.policy.min_gap_ms == 400
    assert spec.policy.min_pause_ms == cfg.policy.min_pause_ms and spec.events.vad_segments
    with pytest.raises(ConfigError, match="max_segment_ms"):
        stream_spec(cfg, format=fmt, mode=None, policy_overrides={"max_segment_ms": 500},
                    event_overrides={})
