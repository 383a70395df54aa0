"""`stream_cuts`: audio in, events out, sync and asyncio, against a real server.

Same cuts as the hand-driven stream for any block sizes, numpy or bytes; back-pressure
reaches the source; leaving early, a failing source and a refused stream end cleanly
with the right exception; no thread is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seamcut.client import (
    AsyncClient,
    Capabilities,
    Client,
    ClientError,
    CutEvent,
    InvalidConfig,
    ReadyEvent,
    StreamOptions,
    SummaryEvent,
    Unauthenticated,
)

from tests.corpus import default_corpus
from tests.helpers import ServerThread, serving

pytestmark = pytest.mark.integration
CLIP = default_corpus()[0]  # 16 kHz mono speech
AUDIO = CLIP.audio[:, 0] if CLIP.audio.ndim == 2 else CLIP.audio
OPTS = StreamOptions(sample_rate_hz=CLIP.sample_rate_hz, chunk_traces=False)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with serving() as srv:
        yield srv


@pytest.fixture(scope="module")
def reference(server: ServerThread) -> list[int]:
    """Cuts from the hand-driven stream (one send, half-close, read)."""
    with Client(server.target) as c, c.stream(OPTS) as s:
        s.send(AUDIO)
        s.close_send()
        cuts = [ev.sample for ev in s.events() if isinstance(ev, CutEvent)]
    assert len(cuts) >= 3
    return cuts


def blocks(sizes: list[int]) -> Iterator[np.ndarray]:
    start, i = 0, 0
    while start < len(AUDIO):
        n = sizes[i % len(sizes)]
        yield AUDIO[start:start + n]
        start, i = start + n, i + 1


def cuts_of(events: list[object]) -> list[int]:
    return [ev.sample for ev in events if isinstance(ev, CutEvent)]


def _no_source_threads() -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not any(t.name == "seamcut-audio-source" for t in threading.enumerate()):
            return True
        time.sleep(0.05)
    return False


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(160, 40_000), min_size=1, max_size=5),
       as_bytes=st.booleans())
def test_sync_stream_cuts_equals_the_hand_driven_stream(
    server: ServerThread, reference: list[int], sizes: list[int], as_bytes: bool
) -> None:
    # Bytes are pcm_s16le already, as the SDK would encode the float blocks.
    source = (np.clip(np.rint(b * 32768), -32768, 32767).astype("<i2").tobytes()
              if as_bytes else b for b in blocks(sizes))
    with Client(server.target) as c:
        events = list(c.stream_cuts(OPTS, source))
    assert isinstance(events[0], ReadyEvent) and isinstance(events[-1], SummaryEvent)
    assert cuts_of(events) == reference


def test_async_stream_cuts_with_an_async_source(server: ServerThread,
                                                reference: list[int]) -> None:
    async def source() -> AsyncIterator[np.ndarray]:
        for b in blocks([3200, 777]):
            await asyncio.sleep(0)
            yield b

    async def main() -> list[object]:
        async with AsyncClient(server.target) as c:
            caps = await c.get_capabilities(timeout=10)
            assert isinstance(caps, Capabilities) and "pcm_s16le" in caps.encodings
            assert caps.defaults is not None and caps.defaults.min_pause_ms is not None
            return [ev async for ev in c.stream_cuts(OPTS, source())]

    assert cuts_of(asyncio.run(main())) == reference


def test_a_blocking_source(server: ServerThread, reference: list[int]) -> None:
    """The sync source runs on its own thread, so it may block between blocks."""
    taken: list[float] = []

    def source() -> Iterator[np.ndarray]:
        for b in blocks([1600]):
            time.sleep(0.001)  # a blocking read, as from a device
            taken.append(time.monotonic())
            yield b

    with Client(server.target) as c:
        events = list(c.stream_cuts(OPTS, source()))
    assert cuts_of(events) == reference
    assert len(taken) == -(-len(AUDIO) // 1600)
    assert _no_source_threads()


def test_leaving_early_cancels_and_a_failing_source_raises(server: ServerThread) -> None:
    pulled = 0

    def endless() -> Iterator[np.ndarray]:
        nonlocal pulled
        while True:
            pulled += 1
            yield AUDIO[:1600]

    with Client(server.target) as c:
        for ev in c.stream_cuts(OPTS, endless()):
            if isinstance(ev, CutEvent):
                break
        at_break = pulled
        # Back-pressure: an endless, instant source is read only as fast as the server
        # takes audio (queues and HTTP/2 windows hold seconds of it, not minutes).
        assert at_break * 1600 < 60 * CLIP.sample_rate_hz, at_break
        time.sleep(0.5)
        assert pulled - at_break <= 4  # the source stopped with the stream
        assert _no_source_threads()

        def failing() -> Iterator[np.ndarray]:
            yield AUDIO[:16000]
            raise OSError("microphone unplugged")

        with pytest.raises(OSError, match="unplugged"):
            list(c.stream_cuts(OPTS, failing()))
        with pytest.raises(ClientError, match="does not match"):  # AudioError
            list(c.stream_cuts(OPTS, [np.zeros((100, 2), np.float32)]))
        # The client is still good for another stream.
        assert cuts_of(list(c.stream_cuts(OPTS, [AUDIO[:32000]])))[-1] == 32000


def test_async_leaving_early_cancels(server: ServerThread) -> None:
    async def main() -> None:
        async def endless() -> AsyncIterator[np.ndarray]:
            while True:
                await asyncio.sleep(0.001)
                yield AUDIO[:1600]

        async with AsyncClient(server.target) as c:
            async with contextlib.aclosing(c.stream_cuts(OPTS, endless())) as events:
                async for ev in events:
                    if isinstance(ev, CutEvent):
                        break
            senders = [t for t in asyncio.all_tasks() if t.get_name() == "seamcut-sender"]
            assert not senders

    asyncio.run(main())
    assert server.call(_open_streams(server)) == 0


async def _open_streams(server: ServerThread) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not server.running.servicer._streams:
            return 0
        await asyncio.sleep(0.05)
    return len(server.running.servicer._streams)


def test_refusals_are_typed(server: ServerThread) -> None:
    with Client(server.target) as c:
        with pytest.raises(InvalidConfig) as bad:
            list(c.stream_cuts(StreamOptions(sample_rate_hz=16000, min_pause_ms=1), [AUDIO]))
        assert bad.value.field == "policy.min_pause_ms"
    with serving(security={"tokens": "t0ken"}) as locked, Client(locked.target) as c, \
            pytest.raises(Unauthenticated):
        list(c.stream_cuts(OPTS, [AUDIO]))
