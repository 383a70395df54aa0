"""The synchronous client: the asyncio client driven from a private event-loop thread.

Why this way rather than grpc's sync API: there is then exactly one implementation of
the stream protocol (request queue and back-pressure, reader task, Ready and Flushed
routing, status -> exception mapping), so the two APIs cannot drift apart, and both use
grpc.aio, the faster stack on this project's measurements. The cost is one daemon
thread per :class:`Client` and a thread hop per call (tens of microseconds, small next
to any audio chunk). Calls may come from several threads at once, e.g. one thread
sending while another iterates events.

Imports the SDK's ``aio``, ``audio``, ``security`` and ``stream`` modules.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
from seamcut.client.aio import DEFAULT_TARGET, AsyncClient, AsyncStream, Metadata
from seamcut.client.audio import Audio, to_wire
from seamcut.client.capabilities import Capabilities
from seamcut.client.errors import UsageError
from seamcut.client.resume import MAX_REPLAY_S
from seamcut.client.security import PemSource
from seamcut.client.stream import Event, FlushedEvent, ReadyEvent, StreamOptions

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever on a daemon thread; ``run`` blocks on a coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="seamcut-client", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait up to ``timeout`` seconds for its result.

        If the wait is interrupted (timeout, KeyboardInterrupt) the coroutine is
        cancelled, so nothing keeps running behind the caller's back.
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise UsageError("the sync client cannot be called from its own event loop")
        if self.loop.is_closed():
            coro.close()
            raise UsageError("the client is closed")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except BaseException:
            fut.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.run(_cancel_other_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _cancel_other_tasks() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Client:
    """Blocking counterpart of :class:`~seamcut.client.AsyncClient` (same arguments)::

        with Client("localhost:50051") as client:
            with client.stream(StreamOptions(sample_rate_hz=16000)) as s:
                s.send(frames)
                s.close_send()
                for ev in s.events():
                    ...

    Close it (``with`` or :meth:`close`) to stop its event-loop thread.
    """

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Metadata = (),
        options: Sequence[tuple[str, Any]] = (),
        tls: bool = False,
        tls_ca: PemSource | None = None,
        tls_cert: PemSource | None = None,
        tls_key: PemSource | None = None,
        token: str | None = None,
        tls_server_name: str | None = None,
        refused_retries: int | None = None,
        resume: bool | None = None,
        max_replay_s: float = MAX_REPLAY_S,
    ) -> None:
        self._aclient = AsyncClient(
            target, credentials=credentials, metadata=metadata, options=options, tls=tls,
            tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, token=token,
            tls_server_name=tls_server_name, refused_retries=refused_retries,
            resume=resume, max_replay_s=max_replay_s,
        )
        self.target = self._aclient.target
        self._lt = _LoopThread()

    def get_capabilities(self, *, timeout: float | None = None) -> Capabilities:
        """The server's capabilities; ``timeout`` in seconds. Raises SeamcutRpcError."""
        return self._lt.run(self._aclient.get_capabilities(timeout=timeout))

    def stream(self, config: StreamOptions, *, ready_timeout: float | None = None) -> Stream:
        """A new stream; the call starts when it is entered (``with``). ``ready_timeout``
        as in :meth:`AsyncClient.stream`."""
        return Stream(self, config, ready_timeout=ready_timeout)

    def stream_cuts(
        self, config: StreamOptions, audio: Iterable[Audio], *,
        ready_timeout: float | None = None, finish_on_drain: bool | None = None,
    ) -> Iterator[Event]:
        """Audio in, events out, blocking: the same as :meth:`AsyncClient.stream_cuts`,
        but ``audio`` is read (and encoded) on a thread of its own, so it may block,
        e.g. on a microphone; no second thread or polling is needed::

            for ev in client.stream_cuts(StreamOptions(sample_rate_hz=16000), blocks):
                if isinstance(ev, CutEvent):
                    print(ev.sample)

        Leaving the loop early cancels the stream.
        """
        encode = _encoder(config)
        agen = self._aclient.stream_cuts(
            config, _read_on_thread(audio, encode), ready_timeout=ready_timeout,
            finish_on_drain=finish_on_drain,
        )
        try:
            while True:
                try:
                    ev = self._lt.run(_anext(agen))
                except StopAsyncIteration:
                    return
                yield ev
        finally:
            if not self._lt.loop.is_closed():
                self._lt.run(agen.aclose())

    def close(self) -> None:
        """Close the channel (cancelling open streams) and stop the loop thread."""
        if not self._lt.loop.is_closed():
            self._lt.run(self._aclient.close())
        self._lt.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Stream:
    """Blocking counterpart of :class:`~seamcut.client.AsyncStream`; see its docs.

    ``timeout`` arguments are seconds to wait (None: no limit); on expiry TimeoutError
    is raised and the stream stays usable.
    """

    def __init__(self, client: Client, options: StreamOptions, *,
                 ready_timeout: float | None = None) -> None:
        self.options = options
        self._client = client
        self._ready_timeout = ready_timeout
        self._astream: AsyncStream | None = None

    @property
    def _a(self) -> AsyncStream:
        if self._astream is None:
            raise UsageError("the stream is not open: use `with client.stream(...) as s`")
        return self._astream

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._client._lt.run(coro, timeout)

    def __enter__(self) -> Stream:
        if self._astream is not None:
            raise UsageError("a stream can be entered only once; open a new one")
        self._astream = self._run(self._open())
        return self

    async def _open(self) -> AsyncStream:
        # Built on the loop thread so its queues and futures belong to that loop.
        astream = self._client._aclient.stream(self.options, ready_timeout=self._ready_timeout)
        return await astream.__aenter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A closed client has already cancelled its calls.
        if self._astream is not None and not self._client._lt.loop.is_closed():
            self._run(self._astream.aclose())

    @property
    def ready(self) -> ReadyEvent | None:
        """The server's Ready; None until it arrived."""
        return self._a.ready

    @property
    def done(self) -> bool:
        """True once the call has ended."""
        done: bool = self._a.done
        return done

    def wait_ready(self, timeout: float | None = None) -> ReadyEvent:
        """Block until Ready. Raises the stream's SeamcutRpcError if the stream fails first."""
        return self._run(self._a.wait_ready(), timeout)

    def send(self, audio: Audio) -> None:
        """Send audio (bytes or an array; see AsyncStream.send). Blocks under back-pressure."""
        # Encode on the caller's thread: it is CPU work the loop's reader should not wait on.
        data = to_wire(audio, self.options.encoding, self.options.channels)
        self._run(self._a.send(data))

    def flush(self, timeout: float | None = None) -> FlushedEvent:
        """Flush and wait for the server's Flushed (also delivered in events())."""
        return self._run(self._a.flush(), timeout)

    def close_send(self) -> None:
        """Half-close: no more audio."""
        self._run(self._a.close_send())

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event; None after the last one of a stream that ended OK.

        Raises the stream's SeamcutRpcError once a failed stream's events are used up.
        """
        return self._run(self._a.next_event(), timeout)

    def events(self) -> Iterator[Event]:
        """Iterate events until the stream ends (raises the stream's SeamcutRpcError on failure)."""
        while (ev := self.next_event()) is not None:
            yield ev

    def __iter__(self) -> Iterator[Event]:
        return self.events()


# ---------------------------------------------------------------- stream_cuts helpers

_END = object()
_PUT_POLL_S = 0.25  # how often a reader thread blocked on a full queue checks for the end


async def _anext(agen: AsyncIterator[Event]) -> Event:
    return await agen.__anext__()


def _encoder(config: StreamOptions) -> Callable[[Audio], bytes]:
    def encode(block: Audio) -> bytes:
        return to_wire(block, config.encoding, config.channels)
    return encode


async def _read_on_thread(
    items: Iterable[Audio], encode: Callable[[Audio], bytes]
) -> AsyncIterator[bytes]:
    """The blocks of ``items``, encoded, read on a daemon thread so that a blocking
    source never stalls the event loop. A queue of two blocks carries the
    back-pressure to the thread; ending early tells the thread to stop (it notices
    when its source yields again)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue(2)
    stop = threading.Event()

    def put(item: tuple[Any, BaseException | None]) -> bool:
        if loop.is_closed():
            return False
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            try:
                fut.result(_PUT_POLL_S)
                return True
            except concurrent.futures.TimeoutError:
                continue
            except concurrent.futures.CancelledError:
                return False  # the loop was stopped under it
        fut.cancel()
        return False

    def pump() -> None:
        try:
            for block in items:
                if stop.is_set() or not put((encode(block), None)):
                    return
            put((_END, None))
        except BaseException as exc:  # the source's or the encoder's error, for the caller
            put((None, exc))

    threading.Thread(target=pump, name="seamcut-audio-source", daemon=True).start()
    try:
        while True:
            data, exc = await queue.get()
            if exc is not None:
                raise exc
            if data is _END:
                return
            yield data
    finally:
        stop.set()
