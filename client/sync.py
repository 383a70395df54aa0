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
import threading
from collections.abc import Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
from seamcut.client.aio import DEFAULT_TARGET, AsyncClient, AsyncStream, Metadata
from seamcut.client.audio import Audio, to_wire
from seamcut.client.security import PemSource
from seamcut.client.stream import Event, FlushedEvent, ReadyEvent, StreamOptions

from seamcut.v1 import seamcut_pb2 as pb

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
            raise RuntimeError("the sync client cannot be called from its own event loop")
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("the client is closed")
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
        target: str = DEFAULT_TARGET,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Metadata = (),
        options: Sequence[tuple[str, Any]] = (),
        tls: bool = False,
        tls_ca: PemSource | None = None,
        tls_cert: PemSource | None = None,
        tls_key: PemSource | None = None,
        token: str | None = None,
    ) -> None:
        self.target = target
        self._aclient = AsyncClient(
            target, credentials=credentials, metadata=metadata, options=options, tls=tls,
            tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, token=token,
        )
        self._lt = _LoopThread()

    def get_capabilities(self, *, timeout: float | None = None) -> pb.Capabilities:
        """The server's capabilities; ``timeout`` in seconds. Raises SeamcutRpcError."""
        caps: pb.Capabilities = self._lt.run(self._aclient.get_capabilities(timeout=timeout))
        return caps

    def stream(self, config: StreamOptions) -> Stream:
        """A new stream; the call starts when it is entered (``with``)."""
        return Stream(self, config)

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

    def __init__(self, client: Client, options: StreamOptions) -> None:
        self.options = options
        self._client = client
        self._astream: AsyncStream | None = None

    @property
    def _a(self) -> AsyncStream:
        if self._astream is None:
            raise RuntimeError("the stream is not open: use `with client.stream(...) as s`")
        return self._astream

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._client._lt.run(coro, timeout)

    def __enter__(self) -> Stream:
        if self._astream is not None:
            raise RuntimeError("a stream can be entered only once; open a new one")
        self._astream = self._run(self._open())
        return self

    async def _open(self) -> AsyncStream:
        # Built on the loop thread so its queues and futures belong to that loop.
        return await self._client._aclient.stream(self.options).__aenter__()

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
        """Block until Ready. Raises SeamcutStreamError if the stream fails first."""
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

        Raises SeamcutStreamError once a failed stream's events are used up.
        """
        return self._run(self._a.next_event(), timeout)

    def events(self) -> Iterator[Event]:
        """Iterate events until the stream ends (raises SeamcutStreamError on failure)."""
        while (ev := self.next_event()) is not None:
            yield ev

    def __iter__(self) -> Iterator[Event]:
        return self.events()
