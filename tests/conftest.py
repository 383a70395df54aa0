"""Fixtures: one engine and one real server per test session (both on the CPU)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from seamcut.server.config import AppConfig, load_config
from seamcut.server.engine.pipeline import Engine

from tests.helpers import ServerThread


@pytest.fixture(scope="session")
def app_cfg() -> AppConfig:
    return load_config(env={}, overrides={"server": {"host": "127.0.0.1", "port": 0}})


@pytest.fixture(scope="session")
def engine(app_cfg: AppConfig) -> Iterator[Engine]:
    eng = Engine(app_cfg)
    eng.start()
    yield eng
    eng.stop()


@pytest.fixture(scope="session")
def server(app_cfg: AppConfig) -> Iterator[ServerThread]:
    srv = ServerThread(app_cfg)
    yield srv
    srv.stop()
