"""A stream's outbound event queue, with Progress coalescing."""

from __future__ import annotations

import asyncio
from collections import deque

from seamcut.server.events import Event, Progress


class Outbox:
    """FIFO of events for the writer; ``None`` ends the stream.

    A Progress put right behind another Progress that the writer has not taken yet
    replaces it: the newer one acknowledges everything the older one did, and under
    load (a fast sender, a slow reader) this halves the messages on the wire. Only
    adjacent ones merge, so a Progress never overtakes a CutPoint sent before it.
    """

    def __init__(self) -> None:
        self._q: deque[Event | None] = deque()
        self._ready = asyncio.Event()

    def put_nowait(self, ev: Event | None) -> None:
        if isinstance(ev, Progress) and self._q and isinstance(self._q[-1], Progress):
            self._q[-1] = ev
        else:
            self._q.append(ev)
        self._ready.set()

    async def get(self) -> Event | None:
        while not self._q:
            self._ready.clear()
            await self._ready.wait()
        return self._q.popleft()

    def qsize(self) -> int:
        return len(self._q)
