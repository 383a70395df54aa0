"""A batch's way through the device: copy in, S1 -> S2 -> S3 on their lanes, copy out.

:meth:`DeviceFlow.submit` only queues work; it never waits for the device. Each step
is queued on its stage's lane behind a device-side wait for the previous step's
event, so batches overlap: while batch *k* runs S2, batch *k+1* can copy in and run
S1. One completion thread blocks on each batch's last event, in submission order,
and then hands the batch to ``on_done``: the host touches results only after the
device has finished writing them, and batches complete in the order they were
submitted (so a stream's requests do too).

The flow's in-flight limit is its staging ring: a batch needs a slot for its input
(released when the copy that reads it has completed) and one for its output
(released by the consumer after reading it). When either ring is full ``submit``
returns False and the stage keeps the batch: the engine takes no more work, its
credits run out, and the workers stop reading the streams concerned.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from seamcut.server.engine.lanes import Event, Lanes, Slot, StagingRing

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Step:
    """One piece of device work: ``work`` queued on lane ``lane``."""

    lane: str
    work: Callable[[], None]


@dataclass(slots=True)
class Flight:
    """A batch on the device."""

    slot_in: Slot
    slot_out: Slot
    on_done: Callable[[Flight], None]
    # step name -> the event after it; ``begins``: the event where it starts (after
    # its lane's earlier work and the wait for the previous step)
    marks: dict[str, Event] = field(default_factory=dict)
    begins: dict[str, Event] = field(default_factory=dict)
    error: BaseException | None = None


COPIES = ("h2d", "d2h")  # the steps that move data; the others compute


@dataclass(slots=True)
class Timeline:
    """Where the device time of completed flights went, for a run's figures: the copy
    time and the part of it that overlapped compute ("hidden"; copies have lanes of
    their own, so any overlap is another lane's)."""

    intervals: list[tuple[float, float, bool]] = field(default_factory=list)  # ms, copy?
    limit: int = 1 << 16
    origin: Event | None = None  # the zero of its times: recorded with the first flight

    def add(self, spans: dict[str, tuple[float, float]]) -> None:
        if len(self.intervals) < self.limit:
            self.intervals += [(a, b, name in COPIES) for name, (a, b) in spans.items()]

    def copy_hidden(self) -> tuple[float, float]:
        """(copy ms, of which hidden under compute ms) over the intervals so far."""
        compute = sorted((a, b) for a, b, copy in self.intervals if not copy)
        merged: list[list[float]] = []
        for a, b in compute:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        total = hidden = 0.0
        for a, b, copy in self.intervals:
            if copy:
                total += b - a
                hidden += sum(max(0.0, min(b, hi) - max(a, lo)) for lo, hi in merged)
        return total, hidden


class DeviceFlow:
    def __init__(self, lanes: Lanes, ring_in: StagingRing, ring_out: StagingRing) -> None:
        self.lanes = lanes
        self.ring_in = ring_in
        self.ring_out = ring_out
        self._cv = threading.Condition()
        self._flights: deque[Flight] = deque()
        self._closed = False
        self.completed = 0
        self.failed = 0
        self.refused = 0  # submits turned away by a full ring (the in-flight limit)
        self.timeline: Timeline | None = None  # set to record one (benchmarks)
        self._thread = threading.Thread(target=self._complete, name="device-flow",
                                        daemon=True)
        self._thread.start()

    @property
    def in_flight(self) -> int:
        with self._cv:
            return len(self._flights)

    def submit(self, nbytes_in: int, nbytes_out: int,
               plan: Callable[[Slot, Slot], list[tuple[str, Step]]],
               on_done: Callable[[Flight], None]) -> bool:
        """Stage a batch. ``plan(slot_in, slot_out)`` writes the input into ``slot_in``
        (host memory) and returns the steps, (name, step), that run in order, each on
        its lane after the previous one's event: the first copies ``slot_in`` to the
        device, the last copies results out into ``slot_out``. ``on_done(flight)``
        runs once the last step has completed. False (nothing queued) when a ring is
        full."""
        slot_in = self.ring_in.acquire(nbytes_in)
        if slot_in is None:
            self.refused += 1
            return False
        slot_out = self.ring_out.acquire(nbytes_out)
        if slot_out is None:
            self.ring_in.release(slot_in, None)
            self.refused += 1
            return False
        flight = Flight(slot_in, slot_out, on_done)
        try:
            steps = plan(slot_in, slot_out)
        except BaseException:
            self.ring_in.release(slot_in, None)
            self.ring_out.release(slot_out, None)
            raise
        prev: Event | None = None
        try:
            assert steps, "a batch needs at least one step"
            if self.timeline is not None and self.timeline.origin is None:
                self.timeline.origin = self.lanes.lane(steps[0][1].lane).record()
            for name, step in steps:
                lane = self.lanes.lane(step.lane)
                if prev is not None:
                    lane.wait(prev)
                flight.begins[name] = lane.record()
                lane.run(step.work)
                prev = flight.marks[name] = lane.record()
        except BaseException:
            # A launch failed (CUDA raises some errors at once): whatever was queued may
            # still read the slot, so it goes back only after that.
            self.ring_in.release(slot_in, prev)
            self.ring_out.release(slot_out, prev)
            raise
        assert prev is not None
        # The input slot may be reused once the first step (the copy in) has read it.
        self.ring_in.release(slot_in, flight.marks[steps[0][0]])
        with self._cv:
            self._flights.append(flight)
            self._cv.notify_all()
        return True

    @staticmethod
    def step_ms(flight: Flight) -> dict[str, float]:
        """Each step's device time in ms, from its begin to its end event (after
        completion): the time it ran, not the time it queued."""
        return {name: flight.begins[name].elapsed_ms(end) for name, end in flight.marks.items()}

    def _record(self, flight: Flight) -> None:
        """The flight's steps on the timeline (ms from the origin event)."""
        timeline = self.timeline
        if timeline is None or timeline.origin is None or flight.error is not None:
            return
        origin = timeline.origin
        timeline.add({name: (origin.elapsed_ms(flight.begins[name]), origin.elapsed_ms(end))
                      for name, end in flight.marks.items()})

    def drain(self) -> None:
        """Block until every flight has completed and its consumer has run."""
        with self._cv:
            while self._flights:
                self._cv.wait(0.05)

    def wait_room(self, timeout_s: float) -> None:
        """Block until a batch completes (so ring slots may be free) or the timeout."""
        with self._cv:
            self._cv.wait(timeout_s)

    def release_out(self, flight: Flight) -> None:
        """The consumer has read ``slot_out``: it may be reused."""
        self.ring_out.release(flight.slot_out, None)

    def _complete(self) -> None:
        while True:
            with self._cv:
                while not self._flights and not self._closed:
                    self._cv.wait()
                if not self._flights:
                    return
                flight = self._flights[0]
            last = list(flight.marks.values())[-1]
            try:
                last.wait()  # blocks in the driver (CUDA) or on a flag (fake); never spins
            except Exception as exc:  # DeviceFault: the consumer falls back
                flight.error = exc
            try:
                self._record(flight)
                flight.on_done(flight)
            except BaseException as exc:  # a consumer bug must not stop completions
                self.failed += 1
                log.exception("device flow: completing a batch failed")
                flight.error = exc
                self.release_out(flight)
            # Only now does the flight leave: a caller waiting for an empty flow (the
            # CPU path after a fault) must come after this batch's own re-run.
            with self._cv:
                self._flights.popleft()
                self.completed += 1
                self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(10)
