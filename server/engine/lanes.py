"""Device lanes, events and the pinned staging ring: the GPU pipeline's plumbing.

A *lane* is an in-order queue of device work (a CUDA stream); an *event* marks a
point on a lane (a CUDA event). Work handed to ``Lane.run`` happens in lane order,
some time after the call; what it wrote may be read only after an event recorded
behind it has completed. ``Lane.wait(event)`` makes later work on that lane start
after the event, on the device, without the host waiting: that is how stage S1
hands a batch to S2 and S2 to S3. The host itself waits only for the last event of
a batch, and blocks on it (``Event.wait``), never spins.

Three implementations share that contract, so the engine's scheduling is one code
path:

* :class:`CudaLanes`: ``torch.cuda.Stream`` / ``torch.cuda.Event``; ``run(fn)`` calls
  ``fn`` at once under the stream's context, which only *launches* its kernels;
* :class:`HostLanes`: the CPU. ``run`` executes at once, every event is complete
  when recorded;
* :class:`FakeLanes`: for tests on machines without a GPU. Each lane is a thread that
  executes its queue in order (a test's work item may sleep to be a slow copy or a
  slow kernel), and events complete when the lane reaches them. Nothing here is a
  GPU; it is what lets CI check that the scheduling never reads a result early,
  reuses a buffer still being copied, or stalls.

The :class:`StagingRing` holds a fixed number of host buffers of one size (pinned
memory on CUDA, so that copies can be asynchronous). A buffer goes back into the
ring only when the event recorded after the copy that reads it has completed; when
none is free, :meth:`StagingRing.acquire` returns None and the caller pushes back.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

Work = Callable[[], None]


class DeviceFault(RuntimeError):
    """Device work failed (a CUDA error, an out-of-memory, a fake device's injected
    fault). Like a CUDA context error it is sticky: every later event of that lane
    reports it too, until the lanes are made anew."""


class Event(Protocol):
    def done(self) -> bool:
        """Has the device reached this point (never blocks)?"""

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block the host until the event completes (True) or ``timeout_s`` passes;
        raises :class:`DeviceFault` if work before it failed."""

    def elapsed_ms(self, end: Any) -> float:
        """Time from this event to ``end`` (both completed), in ms."""


class Lane(Protocol):
    name: str
    handle: int  # the CUDA stream's handle (cudaStream_t); 0 off CUDA

    def run(self, work: Work) -> None:
        """Queue ``work`` on this lane."""

    def record(self) -> Event:
        """An event that completes when everything queued so far on this lane has."""

    def wait(self, event: Event) -> None:
        """Later work on this lane starts only after ``event`` (a device-side wait)."""


class Lanes(Protocol):
    """A device's three stage lanes and its host buffers."""

    kind: str  # "cuda", "host" or "fake"

    def lane(self, name: str) -> Lane: ...

    def host_buffer(self, nbytes: int) -> np.ndarray:
        """A uint8 host buffer for staging (pinned on CUDA)."""


# ---------------------------------------------------------------- host (the CPU)


class _DoneEvent:
    def __init__(self) -> None:
        self.at = time.perf_counter()

    def done(self) -> bool:
        return True

    def wait(self, timeout_s: float | None = None) -> bool:
        return True

    def elapsed_ms(self, end: Any) -> float:
        return float(end.at - self.at) * 1000


class _HostLane:
    handle = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, work: Work) -> None:
        work()

    def record(self) -> Event:
        return _DoneEvent()

    def wait(self, event: Event) -> None:
        event.wait()


class HostLanes:
    kind = "host"

    def __init__(self) -> None:
        self._lanes: dict[str, _HostLane] = {}

    def lane(self, name: str) -> Lane:
        return self._lanes.setdefault(name, _HostLane(name))

    def host_buffer(self, nbytes: int) -> np.ndarray:
        return np.empty(nbytes, np.uint8)


# ---------------------------------------------------------------- fake device (tests)


class _FakeEvent:
    def __init__(self) -> None:
        self._flag = threading.Event()
        self.error: BaseException | None = None
        self.at = 0.0  # when the lane reached it

    def elapsed_ms(self, end: Any) -> float:
        return float(end.at - self.at) * 1000

    def done(self) -> bool:
        return self._flag.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        if not self._flag.wait(timeout_s):
            return False
        if isinstance(self.error, DeviceFault):
            raise self.error
        if self.error is not None:
            raise DeviceFault(f"fake device: {self.error}") from self.error
        return True


class _FakeLane:
    """A thread that runs its queue in order."""

    handle = 0

    def __init__(self, name: str) -> None:
        self.name = name
        self._q: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.error: BaseException | None = None  # sticky, like a CUDA context error
        self._thread = threading.Thread(target=self._loop, name=f"fake-lane-{name}",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            kind, item = self._q.get()
            if kind == "stop":
                return
            if kind == "run":
                if self.error is not None:
                    continue  # a failed context runs nothing more
                try:
                    item()
                except BaseException as exc:
                    self.error = exc
            elif kind == "record":
                item.error = self.error
                item.at = time.perf_counter()
                item._flag.set()
            elif kind == "wait":
                try:
                    item.wait()
                except DeviceFault as exc:  # the producer failed: so does this lane
                    self.error = exc

    def run(self, work: Work) -> None:
        self._q.put(("run", work))

    def record(self) -> Event:
        ev = _FakeEvent()
        self._q.put(("record", ev))
        return ev

    def wait(self, event: Event) -> None:
        self._q.put(("wait", event))

    def stop(self) -> None:
        self._q.put(("stop", None))
        self._thread.join(5)


class FakeLanes:
    """Lanes on threads."""

    kind = "fake"

    def __init__(self) -> None:
        self._lanes: dict[str, _FakeLane] = {}

    def lane(self, name: str) -> _FakeLane:
        if name not in self._lanes:
            self._lanes[name] = _FakeLane(name)
        return self._lanes[name]

    def host_buffer(self, nbytes: int) -> np.ndarray:
        return np.empty(nbytes, np.uint8)

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.stop()


# ---------------------------------------------------------------- CUDA


class _CudaEvent:
    def __init__(self, torch: Any, stream: Any) -> None:
        self._ev = torch.cuda.Event(enable_timing=True, blocking=True)
        self._ev.record(stream)

    def done(self) -> bool:
        return bool(self._ev.query())

    def wait(self, timeout_s: float | None = None) -> bool:
        # A blocking event sleeps the host thread in the driver until it completes.
        try:
            self._ev.synchronize()
        except RuntimeError as exc:  # an asynchronous CUDA error surfaces here
            raise DeviceFault(str(exc)) from exc
        return True

    def elapsed_ms(self, end: Any) -> float:
        return float(self._ev.elapsed_time(end._ev))


class _CudaLane:
    def __init__(self, torch: Any, name: str, device: Any) -> None:
        self.name = name
        self._torch = torch
        self.stream = torch.cuda.Stream(device=device)
        self.handle = int(self.stream.cuda_stream)

    def run(self, work: Work) -> None:
        with self._torch.cuda.stream(self.stream):
            work()

    def record(self) -> Event:
        return _CudaEvent(self._torch, self.stream)

    def wait(self, event: Event) -> None:
        assert isinstance(event, _CudaEvent)
        self.stream.wait_event(event._ev)


class CudaLanes:
    kind = "cuda"

    def __init__(self, device: str) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._lanes: dict[str, _CudaLane] = {}

    def lane(self, name: str) -> Lane:
        if name not in self._lanes:
            self._lanes[name] = _CudaLane(self._torch, name, self._device)
        return self._lanes[name]

    def host_buffer(self, nbytes: int) -> np.ndarray:
        t = self._torch.empty(nbytes, dtype=self._torch.uint8, pin_memory=True)
        return t.numpy()  # shares the pinned memory (the array keeps the tensor alive)


# ---------------------------------------------------------------- the staging ring


class Slot:
    """One staging buffer: ``data`` is its memory, ``index`` its place in the ring."""

    __slots__ = ("_free_after", "_held", "data", "index")

    def __init__(self, index: int, data: np.ndarray) -> None:
        self.index = index
        self.data = data
        self._free_after: Event | None = None
        self._held = False


class StagingRing:
    """``slots`` host buffers of ``slot_bytes`` each, reused only once the device is
    done with them. One thread acquires (the stage's); any thread may release: a
    release only ever frees a slot, writing ``_free_after`` before ``_held``, so an
    acquirer that sees a slot unheld also sees what it waits for."""

    def __init__(self, lanes: Lanes, slot_bytes: int, slots: int) -> None:
        if slots < 1 or slot_bytes < 1:
            raise ValueError("a staging ring needs at least one slot of at least one byte")
        self.slot_bytes = slot_bytes
        self._slots = [Slot(i, lanes.host_buffer(slot_bytes)) for i in range(slots)]
        self._next = 0
        self.reuses_blocked = 0  # acquires that found a slot still in use on the device

    @property
    def capacity(self) -> int:
        return len(self._slots)

    def in_use(self) -> int:
        return sum(1 for s in self._slots if s._held or not _free(s))

    def acquire(self, nbytes: int) -> Slot | None:
        """A free slot (round robin), or None when every slot is held or still being
        read by the device: the caller's in-flight limit."""
        if nbytes > self.slot_bytes:
            raise ValueError(f"{nbytes} bytes do not fit a {self.slot_bytes}-byte slot")
        for k in range(len(self._slots)):
            s = self._slots[(self._next + k) % len(self._slots)]
            if s._held:
                continue
            if not _free(s):
                self.reuses_blocked += 1
                continue
            s._held, s._free_after = True, None
            self._next = (s.index + 1) % len(self._slots)
            return s
        return None

    def release(self, slot: Slot, after: Event | None) -> None:
        """Give ``slot`` back; it is reused only once ``after`` has completed (the event
        recorded behind the last device work that reads or writes it)."""
        slot._free_after = after
        slot._held = False


def _free(slot: Slot) -> bool:
    return slot._free_after is None or slot._free_after.done()
