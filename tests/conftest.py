"""Fixtures: one engine and one real server per test session (both on the CPU)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from seamcut.server.config import AppConfig, load_config
from seamcut.server.engine.client import InprocEngine

from tests.helpers import ServerThread


@pytest.fixture(scope="session")
def app_cfg() -> AppConfig:
    return load_config(env={}, overrides={"server": {"host": "127.0.0.1", "port": 0}})


@pytest.fixture(scope="session")
def engine(app_cfg: AppConfig) -> Iterator[InprocEngine]:
    """One in-process engine for offline runs (each ``analyze`` call binds it to its loop)."""
    eng = InprocEngine(app_cfg)
    yield eng
    asyncio.run(eng.close())


@pytest.fixture(scope="session")
def server(app_cfg: AppConfig) -> Iterator[ServerThread]:
    srv = ServerThread(app_cfg)
    yield srv
    srv.stop()
