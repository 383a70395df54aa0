"""In-process analysis with no server: the same Session and engine client, fed from memory.

At the transport level of the layering (it plays the servicer's role): it may import
session, the engine client interface, config and events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from seamcut.server.config import AppConfig, StreamSpec
from seamcut.server.engine.client import EngineClient, InprocEngine
from seamcut.server.events import Event
from seamcut.server.session.session import InflightBudget, Session


async def run_session(
    engine: EngineClient,
    cfg: AppConfig,
    spec: StreamSpec,
    chunks: Iterable[bytes],
    *,
    budget: InflightBudget | None = None,
) -> list[Event]:
    """Feed ``chunks`` (encoded per ``spec.format``) through one session; return all events.

    ``engine`` must be started on the running loop. Raises the session's SeamcutError if
    the stream fails.
    """
    session = Session(cfg, engine, spec, budget or InflightBudget(cfg.engine.max_inflight_blocks))
    out: list[Event] = [session.ready()]

    async def drain() -> None:
        while True:
            ev = await session.events.get()
            session.consumed()
            if ev is None:
                return
            out.append(ev)

    reader = asyncio.create_task(drain())
    try:
        for seq, data in enumerate(chunks):
            await session.audio(seq, data)
        await session.finish()
        await reader
    finally:
        reader.cancel()
        session.close()
    if session.error is not None:
        raise session.error
    return out


def analyze(
    cfg: AppConfig, spec: StreamSpec, chunks: Sequence[bytes],
    engine: InprocEngine | None = None,
) -> list[Event]:
    """Synchronous wrapper: run one stream through a (possibly fresh) in-process engine.

    A given ``engine`` is (re)bound to this call's event loop, so one engine serves
    many sequential calls; it is not for concurrent use from several loops.
    """
    own = engine is None
    eng = engine or InprocEngine(cfg, separators=spec.separator != "none")

    async def main() -> list[Event]:
        await eng.start()
        try:
            return await run_session(eng, cfg, spec, chunks)
        finally:
            if own:
                await eng.close()

    return asyncio.run(main())
