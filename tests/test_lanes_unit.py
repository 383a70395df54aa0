"""The device flow's scheduling on a fake device (threads whose work takes set times).

What a real GPU would do wrong silently, these make visible: a result read before
the device wrote it, a staging buffer reused while a copy still reads it, batches
completing out of order, a fault lost or a stall.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from seamcut.server.engine.flow import DeviceFlow, Flight, Step, Timeline
from seamcut.server.engine.lanes import (
    DeviceFault,
    FakeLanes,
    HostLanes,
    Lanes,
    Slot,
    StagingRing,
)

pytestmark = pytest.mark.unit
STEPS = ("h2d", "s1", "s2", "s3", "d2h")


@pytest.fixture
def fake() -> Iterator[FakeLanes]:
    lanes = FakeLanes()
    yield lanes
    lanes.close()


class Device:
    """A toy 'device memory' per batch: h2d copies the slot in, each stage adds to it,
    d2h writes the result into the output slot."""

    def __init__(self, lanes: Lanes, *, slots: int = 4, cost_s: float = 0.002,
                 fail_at: tuple[str, int] | None = None,
                 slower: dict[str, float] | None = None, copy_lanes: bool = False) -> None:
        self.lanes = lanes
        self.copy_lanes = copy_lanes  # copies on lanes of their own, as the engine does
        self.flow = DeviceFlow(lanes, StagingRing(lanes, 64, slots), StagingRing(lanes, 64, slots))
        self.mem: dict[int, int] = {}
        self.log: list[tuple[int, str, float, float]] = []  # batch, step, start, end
        self.done: list[tuple[int, int | None, BaseException | None]] = []
        self.cost_s = cost_s
        self.fail_at = fail_at
        self.slower = slower or {}
        self._lock = threading.Lock()

    def _step(self, b: int, name: str, slot_in: Slot, slot_out: Slot) -> Step:
        lane = name if self.copy_lanes else {"h2d": "s1", "d2h": "s3"}.get(name, name)

        def work() -> None:  # device time first, then the effect (as a kernel's)
            t0 = time.perf_counter()
            time.sleep(self.cost_s * self.slower.get(name, 1.0))
            if self.fail_at == (name, b):
                raise RuntimeError(f"injected fault in {name} of batch {b}")
            if name == "h2d":
                self.mem[b] = int(slot_in.data[0])
            elif name == "d2h":
                slot_out.data[0] = self.mem[b] % 256
            else:
                self.mem[b] += 1
            with self._lock:
                self.log.append((b, name, t0, time.perf_counter()))
        return Step(lane, work)

    def submit(self, b: int) -> bool:
        def plan(slot_in: Slot, slot_out: Slot) -> list[tuple[str, Step]]:
            slot_in.data[0] = b
            return [(n, self._step(b, n, slot_in, slot_out)) for n in STEPS]

        def on_done(f: Flight) -> None:
            value = None if f.error is not None else int(f.slot_out.data[0])
            self.done.append((b, value, f.error))
            self.flow.release_out(f)

        return self.flow.submit(1, 1, plan, on_done)

    def drain(self, timeout_s: float = 10.0) -> None:
        t_end = time.monotonic() + timeout_s
        while self.flow.in_flight and time.monotonic() < t_end:
            time.sleep(0.005)
        assert self.flow.in_flight == 0


def submit_all(dev: Device, n: int) -> None:
    for b in range(n):
        while not dev.submit(b):
            dev.flow.wait_room(0.05)


@pytest.mark.parametrize("kind", ["fake", "host"])
def test_steps_run_in_order_and_batches_complete_in_order(kind: str, fake: FakeLanes) -> None:
    lanes: Lanes = fake if kind == "fake" else HostLanes()
    dev = Device(lanes)
    submit_all(dev, 30)
    dev.drain()
    assert [b for b, _, _ in dev.done] == list(range(30))
    assert all(v == (b + 3) % 256 and e is None for b, v, e in dev.done)
    for b in range(30):
        mine = sorted((t0, name) for bb, name, t0, _ in dev.log if bb == b)
        assert [name for _, name in mine] == list(STEPS)


def test_stages_of_different_batches_overlap(fake: FakeLanes) -> None:
    dev = Device(fake, slots=8, cost_s=0.01)
    submit_all(dev, 12)
    dev.drain()
    # Lane "s1" (copy in + S1) of one batch runs while lane "s2" works on another.
    lane1 = [(b, t0, t1) for b, n, t0, t1 in dev.log if n in ("h2d", "s1")]
    lane2 = [(b, t0, t1) for b, n, t0, t1 in dev.log if n == "s2"]
    overlaps = sum(1 for a, a0, a1 in lane1 for b, b0, b1 in lane2
                   if a != b and a0 < b1 - 0.002 and b0 < a1 - 0.002)
    assert overlaps >= 5


def test_the_timeline_measures_the_copy_time_hidden_under_compute(fake: FakeLanes) -> None:
    """One batch at a time, a batch's copies wait for its own compute: nothing hidden.
    Pipelined, with copies on lanes of their own (as the engine has them), a batch's
    copies run under other batches' compute. The timeline, from the flights' events,
    tells the two apart."""
    shares = {}
    for serial in (True, False):
        dev = Device(fake, slots=8, cost_s=0.004, copy_lanes=True)
        dev.flow.timeline = Timeline()
        for b in range(12):
            while not dev.submit(b):
                dev.flow.wait_room(0.05)
            if serial:
                dev.drain()
        dev.drain()
        total, hidden = dev.flow.timeline.copy_hidden()
        assert total > 0 and 0 <= hidden <= total
        shares[serial] = hidden / total
    assert shares[True] <= 0.1 and shares[False] >= 0.5, shares


def test_copy_hidden_counts_only_overlap_with_compute() -> None:
    t = Timeline()
    t.add({"h2d": (0.0, 2.0), "s2": (1.0, 4.0)})
    t.add({"h2d": (3.0, 5.0), "s2": (5.0, 6.0), "d2h": (6.0, 7.0)})
    assert t.copy_hidden() == (5.0, 2.0)  # [1, 2] and [3, 4] overlap S2; d2h does not


def test_a_staging_slot_is_reused_only_after_its_copy_completed() -> None:
    lanes = FakeLanes()
    try:
        dev = Device(lanes, slots=2, cost_s=0.002, slower={"h2d": 20.0})  # a slow copy
        refused = 0
        for b in range(10):
            while not dev.submit(b):
                refused += 1
                dev.flow.wait_room(0.01)
        dev.drain()
        # Every batch saw its own input: no slot was overwritten while being copied.
        assert [v for _, v, _ in dev.done] == [(b + 3) % 256 for b in range(10)]
        assert refused > 0 and dev.flow.ring_in.reuses_blocked > 0
        assert dev.flow.ring_in.in_use() == 0 and dev.flow.ring_out.in_use() == 0
    finally:
        lanes.close()


def test_a_full_output_ring_pushes_back_until_the_consumer_reads(fake: FakeLanes) -> None:
    flow = DeviceFlow(fake, StagingRing(fake, 8, 4), StagingRing(fake, 8, 2))
    held: list[Flight] = []

    def plan(_i: Slot, _o: Slot) -> list[tuple[str, Step]]:
        return [("k", Step("s1", lambda: None))]
    for _ in range(2):
        assert flow.submit(1, 1, plan, held.append)
    assert not flow.submit(1, 1, plan, held.append)  # the output ring is full
    deadline = time.monotonic() + 5
    while len(held) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not flow.submit(1, 1, plan, held.append)  # done, but not read yet
    flow.release_out(held[0])
    assert flow.submit(1, 1, plan, held.append)
    flow.close()


def test_a_device_fault_reaches_the_consumer_and_sticks(fake: FakeLanes) -> None:
    dev = Device(fake, fail_at=("s2", 3))
    submit_all(dev, 6)
    dev.drain()
    assert [b for b, _, _ in dev.done] == list(range(6))
    assert all(e is None for b, _, e in dev.done if b < 3)
    # Like a CUDA context error: batch 3 and everything after it on that lane fail.
    assert all(isinstance(e, DeviceFault) for b, _, e in dev.done if b >= 3)
    assert "injected fault in s2 of batch 3" in str(dev.done[3][2])


def test_ring_refuses_what_does_not_fit() -> None:
    ring = StagingRing(HostLanes(), 16, 1)
    with pytest.raises(ValueError, match="do not fit"):
        ring.acquire(17)
    slot = ring.acquire(16)
    assert slot is not None and ring.acquire(1) is None
    ring.release(slot, None)
    assert ring.acquire(1) is slot
    assert isinstance(slot.data, np.ndarray) and slot.data.nbytes == 16
