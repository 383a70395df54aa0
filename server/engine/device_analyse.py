"""S2 (Silero VAD) and S3 (band energy) of ANALYSE batches on the device lanes.

One batch is one flight (:mod:`.flow`): the host packs the batch's frames, the blocks
for the features and any start states the requests carry into a staging slot; then
``h2d`` on the copy-in lane, ``s2`` (the VAD frame loop, :meth:`TorchVad.run_device`)
on lane "s2", ``s3`` (band energy, :func:`band_energy_db_torch`) on lane "s3" and
``d2h`` (probabilities, states, energies into an output slot) on the copy-out lane,
each behind the previous one's event. Copies have their own lanes (CUDA streams) so
that batch *k+1*'s copy in overlaps batch *k*'s compute. Nothing waits for the device
until the flow's completion thread has seen the last event; then
:meth:`DeviceAnalyse._done` turns the output slot into results.

A stream's next request usually continues from its previous one (``state_from``),
which may still be on the device: the engine keeps that state as device tensors
(``_dev_states``), and because every VAD step runs on lane "s2" in order, the next
batch's gather reads it only after it was written. The host copy of every state comes
back with the results and the engine keeps it (``remember``). A batch small enough for
the CPU starts from it, and so does a CPU re-run when the device fails: the failed
flight and every flight after it (a CUDA error is sticky) are re-run on the CPU path
in order, and the device path is off from then on.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from seamcut.server.config import ANALYSIS_RATE_HZ, HOP_SAMPLES, VAD_FRAME_SAMPLES, AppConfig
from seamcut.server.dsp.features_torch import band_energy_db_torch
from seamcut.server.engine.flow import DeviceFlow, Flight, Step
from seamcut.server.engine.lanes import Lanes, Slot, StagingRing
from seamcut.server.engine.protocol import (
    ErrorCode,
    Kind,
    Request,
    Result,
    chained_runs,
    failed,
    frames_per_block,
    hops_per_block,
    vad_frames,
)
from seamcut.server.errors import ConfigError
from seamcut.server.models.vad_torch import STATE_FLOATS, TorchVad

log = logging.getLogger(__name__)
F32 = 4


@dataclasses.dataclass(slots=True)
class _Seq:
    """One VAD sequence of a flight: a run of one stream's requests, vocal or mix."""

    frames: np.ndarray  # [n, 512]
    start: np.ndarray | None  # explicit start state [320], or None: the device's
    dev_start: tuple[Any, Any] | None  # (lstm [2, 128], ctx [64]) on the device
    ends: list[int]  # cumulative frame counts after each request of the run


class DeviceAnalyse:
    """Runs ANALYSE batches through the device. ``cpu_run(requests) -> results`` is
    the engine's CPU path, used for batches after a device fault."""

    def __init__(self, cfg: AppConfig, lanes: Lanes, vad: TorchVad,
                 cpu_run: Callable[[list[Request]], list[Result]],
                 remember: Callable[[list[Request], list[Result]], None],
                 *, slot_bytes: int, slots: int,
                 device_fault: Callable[[list[Request]], str] = lambda _b: "",
                 start_state: Callable[[Request], tuple[np.ndarray, np.ndarray]]
                 | None = None, cpu_vad: Any = None) -> None:
        import torch

        e = cfg.engine
        biggest = _sizes(cfg, 2, e.max_batch_blocks_per_stream * frames_per_block(
            e.block_samples), 2, e.max_batch_blocks_per_stream)
        if slot_bytes < biggest:
            raise ConfigError(
                f"engine.staging_mib: a slot of {slot_bytes / (1 << 20):g} MiB cannot hold "
                f"one request of engine.max_batch_blocks_per_stream = "
                f"{e.max_batch_blocks_per_stream} blocks; it needs "
                f"{biggest / (1 << 20):.2f} MiB")
        self._torch = torch
        self.cfg = cfg
        self.vad = vad
        self.device = vad.device
        self._cpu_run = cpu_run
        self._remember = remember  # the host copy of each stream's end state
        self._device_fault = device_fault  # test hook: a reason to fail a batch's S2
        self.flow = DeviceFlow(lanes, StagingRing(lanes, slot_bytes, slots),
                               StagingRing(lanes, slot_bytes, slots))
        self._dev_states: dict[str, tuple[int, Any, Any]] = {}  # stream -> id, vocal, mix
        self.broken = ""  # why the device path is off ("" while it is on)
        self._lock = threading.Lock()
        self._kept: set[str] = set()  # streams the CPU carries after a fault
        self._shed: set[str] = set()  # ... and those it ended (never taken back)
        self._cpu_s_per_audio_s = 0.0  # the CPU path's measured cost, once known
        # A request's host start state (the CPU path's lookup): its own, or the one
        # kept after a request that ran on the CPU.
        self._start_state = start_state or (lambda r: (r.vad_state, r.mix_state))
        self.timings: list[Any] = []  # CPU vs device VAD per batch size, when measured
        self.cpu_streams = self._choose(e.vad_cpu_streams, lanes, cpu_vad)
        self.on_cpu = 0  # batches that ran on the CPU by that choice

    def _choose(self, setting: int, lanes: Lanes, cpu_vad: Any) -> int:
        """Batches of at most this many streams run on the CPU (see vad_choice)."""
        if setting >= 0 or lanes.kind != "cuda" or cpu_vad is None:
            return max(setting, 0)
        from seamcut.server.engine import vad_choice

        self.timings = vad_choice.measure(cpu_vad, self.vad, self._torch.cuda.synchronize)
        chosen = vad_choice.cpu_streams(self.timings)
        log.info("S2: batches of <= %d streams on the CPU (measured, ms per block: %s)",
                 chosen, ", ".join(f"{t.streams}: cpu {t.cpu_ms:.2f} / device "
                                   f"{t.device_ms:.2f}" for t in self.timings))
        return chosen

    # ------------------------------------------------------------ submission
    def fits(self, batch: list[Request]) -> bool:
        """Whether ``batch`` fits one staging slot (an upper bound of the plan's size)."""
        per_stream: dict[str, int] = {}
        for r in batch:
            per_stream[r.stream] = per_stream.get(r.stream, 0) + sum(
                frames_per_block(n) for n in r.lengths)
        blocks = sum(len(r.lengths) for r in batch)
        return _sizes(self.cfg, 2 * len(batch), max(per_stream.values(), default=0),
                      2 * len(batch), blocks) <= self.flow.ring_in.slot_bytes

    def submit(self, batch: list[Request], done: Callable[[list[Result]], None]) -> bool:
        """Queue ``batch``; ``done(results)`` (in the batch's order) runs on the flow's
        thread. False when the staging ring is full (try again later)."""
        if not self.broken and self._small(batch):
            self.on_cpu += 1
            done(self._cpu_run(batch))  # results without ``pipeline``: the traces say so
            return True
        if not self.broken:
            plan = _Plan(self, batch)  # StateMissing goes to the caller, as on the CPU
            try:
                return self.flow.submit(plan.nbytes_in, plan.nbytes_out, plan.steps,
                                        lambda f: self._finish(f, plan, done))
            except Exception as exc:  # a launch failed (CUDA raises some errors at once)
                self._break(f"device failed at launch: {exc!r}")
        self.flow.drain()  # earlier flights first: they leave the states
        done(self._fallback(batch))
        return True

    def _small(self, batch: list[Request]) -> bool:
        """Whether ``batch`` runs on the CPU by size: only with no flight in the air,
        so every earlier state is on the host (the CPU path reads it there) and the
        stream's order holds."""
        return (0 < len({r.stream for r in batch}) <= self.cpu_streams
                and self.flow.in_flight == 0)

    def _fallback(self, batch: list[Request]) -> list[Result]:
        """``batch`` after a device fault: on the CPU path for the streams it can carry
        in real time, UNAVAILABLE (the session adds where to resume) for the others,
        or for all with ``engine.strict_gpu``."""
        e = self.cfg.engine
        limit = e.fallback_streams or self._cpu_capacity()
        run, refused = [], {}
        for r in batch:
            keep = r.stream in self._kept or (r.stream not in self._shed
                                               and len(self._kept) < limit)
            if keep and not e.strict_gpu:
                self._kept.add(r.stream)
                run.append(r)
            else:
                self._shed.add(r.stream)
                why = ("engine.strict_gpu is set" if e.strict_gpu else
                       f"the CPU carries {limit} streams in real time and this is not one")
                refused[id(r)] = failed(r, ErrorCode.UNAVAILABLE,
                                        f"the GPU pipeline failed ({self.broken}); {why}")
            if r.last:
                self._kept.discard(r.stream)
                self._shed.discard(r.stream)
        t0 = time.perf_counter()
        ran = iter(self._cpu_run(run)) if run else iter(())
        wall = time.perf_counter() - t0
        audio_s = sum(sum(r.lengths) for r in run) / ANALYSIS_RATE_HZ
        if audio_s > 0:
            cost = wall / audio_s
            self._cpu_s_per_audio_s = cost if not self._cpu_s_per_audio_s else \
                0.8 * self._cpu_s_per_audio_s + 0.2 * cost
        return [refused[id(r)] if id(r) in refused else
                dataclasses.replace(next(ran), fallback=self.broken) for r in batch]

    def _cpu_capacity(self) -> int:
        """Real-time streams the CPU path carries at its measured cost (every stream
        until measured), with a fifth kept in reserve."""
        if not self._cpu_s_per_audio_s:
            return 1 << 30
        return max(1, int(0.8 / self._cpu_s_per_audio_s))

    def _break(self, why: str) -> None:
        if not self.broken:
            self.broken = why
            log.error("GPU pipeline off, ANALYSE runs on the CPU: %s", why)
        with self._lock:
            self._dev_states.clear()

    def forget(self, stream: str) -> None:
        with self._lock:
            self._dev_states.pop(stream, None)

    # ------------------------------------------------------------ completion
    def _finish(self, flight: Flight, plan: _Plan, done: Callable[[list[Result]], None]) -> None:
        """On the flow's thread, batches in submission order: results, or the CPU's."""
        try:
            if flight.error is not None:
                self._break(f"device failed: {flight.error}")
                # Every earlier flight has completed and left its states on the host.
                results = self._fallback(plan.batch)
            else:
                ms = DeviceFlow.step_ms(flight)
                results = plan.results(
                    flight.slot_out.data, h2d_ms=ms["h2d"], vad_ms=ms["s2"],
                    features_ms=ms["s3"], d2h_ms=ms["d2h"],
                    pipeline="cuda" if self.flow.lanes.kind == "cuda" else "")
                self._remember(plan.batch, results)
        except Exception as exc:  # answer every request, whatever went wrong
            log.exception("device pipeline: a batch could not be completed")
            results = [failed(r, ErrorCode.INTERNAL, f"the engine failed on this request: "
                              f"{exc!r}") for r in plan.batch]
        finally:
            self.flow.release_out(flight)
        done(results)


def _sizes(cfg: AppConfig, seqs: int, steps: int, marks: int, blocks: int) -> int:
    """Bytes of the larger of a flight's input and output slots (see _Plan)."""
    block = cfg.engine.block_samples
    nbytes_in = F32 * (seqs * steps * VAD_FRAME_SAMPLES + seqs * STATE_FLOATS
                       + blocks * (HOP_SAMPLES + block))
    nbytes_out = F32 * (seqs * steps + marks * STATE_FLOATS + blocks * hops_per_block(block))
    return max(nbytes_in, nbytes_out)


class _Plan:
    """The layout of one flight's staging slots, and its device steps."""

    def __init__(self, owner: DeviceAnalyse, batch: list[Request]) -> None:
        self.owner = owner
        self.batch = batch
        cfg = owner.cfg
        self.block = cfg.engine.block_samples
        runs = self.runs = chained_runs(batch)
        streams = {r.stream for r in batch}
        self.seqs: list[_Seq] = []
        self.run_seqs: list[tuple[int, int | None]] = []  # per run: vocal seq, mix seq
        with owner._lock:
            kept = {s: owner._dev_states.get(s) for s in streams}
        for reqs in runs:
            r0 = reqs[0]
            prev = kept[r0.stream]
            frames = [vad_frames(r.audio[HOP_SAMPLES:], r.lengths) for r in reqs]
            ends = [int(e) for e in np.cumsum([f.shape[0] for f in frames])]
            if r0.state_from and prev is not None and prev[0] == r0.state_from:
                # continues on the device from the previous request
                start_v, start_m, dev_v, dev_m = None, None, prev[1], prev[2]
                has_mix = dev_m is not None
            else:  # its own state, or the host one after a request that ran on the CPU
                start_v, start_m = owner._start_state(r0)  # StateMissing if neither
                dev_v = dev_m = None
                has_mix = start_m.size > 0
            v = len(self.seqs)
            self.seqs.append(_Seq(np.concatenate(frames), start_v, dev_v, ends))
            m = None
            if has_mix:
                m = len(self.seqs)
                self.seqs.append(_Seq(
                    np.concatenate([vad_frames(r.mix, r.lengths) for r in reqs]),
                    start_m, dev_m, ends))
            self.run_seqs.append((v, m))
        self.order = sorted(range(len(self.seqs)), key=lambda i: -self.seqs[i].frames.shape[0])
        self.counts = [int(self.seqs[i].frames.shape[0]) for i in self.order]
        self.steps_n = max(self.counts, default=0)
        self.blocks = [(r, k) for r in batch for k in range(len(r.lengths))]
        self.hops = hops_per_block(self.block)
        # Sequence i's position in the device batch (longest first), and where its
        # state snapshots start in the snapshot rows (one per request it covers).
        self.rank = {i: j for j, i in enumerate(self.order)}
        self.snap_at = [int(x) for x in np.cumsum([0] + [len(q.ends) for q in self.seqs])]
        self.marks = self.snap_at[-1]
        self.nbytes_in = self.nbytes_out = _sizes(cfg, len(self.seqs), self.steps_n,
                                                  self.marks, len(self.blocks))

    def _views(self, buf: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        out, pos = [], 0
        for shape in shapes:
            n = int(np.prod(shape)) * F32
            out.append(buf[pos : pos + n].view(np.float32).reshape(shape))
            pos += n
        return out

    def _in_shapes(self) -> list[tuple[int, ...]]:
        s, b = len(self.seqs), len(self.blocks)
        return [(s, self.steps_n, VAD_FRAME_SAMPLES), (s, STATE_FLOATS),
                (b, HOP_SAMPLES + self.block)]

    def _out_shapes(self) -> list[tuple[int, ...]]:
        return [(len(self.seqs), self.steps_n), (self.marks, STATE_FLOATS),
                (len(self.blocks), self.hops)]

    def steps(self, slot_in: Slot, slot_out: Slot) -> list[tuple[str, Step]]:
        torch = self.owner._torch
        frames, states, blocks = self._views(slot_in.data, self._in_shapes())
        for j, i in enumerate(self.order):  # host packing into the pinned slot
            q = self.seqs[i]
            frames[j, : q.frames.shape[0]] = q.frames
            frames[j, q.frames.shape[0]:] = 0.0
            states[j] = q.start if q.start is not None else 0.0
        for k, (r, blk) in enumerate(self.blocks):
            pos = sum(r.lengths[:blk])
            n = r.lengths[blk]
            blocks[k, : HOP_SAMPLES + n] = r.audio[pos : pos + HOP_SAMPLES + n]
            blocks[k, HOP_SAMPLES + n:] = 0.0
        out_probs, out_states, out_energy = (torch.from_numpy(v) for v in
                                            self._views(slot_out.data, self._out_shapes()))
        dev = self.owner.device
        # Device tensors, referenced until the flight completes. The outputs exist from
        # now on (their values once S2 has run): the next batch's plan can name a
        # state in them before the device has computed it, since it reads it on the
        # same lane, later.
        # ``empty``, not ``zeros``: a fill would be a kernel on the host thread's
        # (default) stream, unordered with the lanes that write these.
        held: dict[str, Any] = {
            "probs": torch.empty((len(self.seqs), self.steps_n), dtype=torch.float32,
                                 device=dev),
            "snaps": torch.empty((self.marks, STATE_FLOATS), dtype=torch.float32,
                                 device=dev),
        }
        rank = self.rank
        det = self.owner.cfg.detector
        fault = self.owner._device_fault(self.batch)

        def h2d() -> None:
            # copy=True: on a CPU "device" (fake lanes) .to() would alias the slot,
            # which is refilled once this step is done.
            for name, host in (("frames", frames), ("states", states), ("blocks", blocks)):
                held[name] = torch.from_numpy(host).to(dev, non_blocking=True, copy=True)

        def s2() -> None:
            if fault:
                raise RuntimeError(fault)
            st = held["states"]
            lstm_rows, ctx_rows = [], []
            for j, i in enumerate(self.order):
                q = self.seqs[i]
                if q.dev_start is not None:
                    lstm_rows.append(q.dev_start[0])
                    ctx_rows.append(q.dev_start[1])
                else:
                    lstm_rows.append(st[j, : 2 * 128].reshape(2, 128))
                    ctx_rows.append(st[j, 2 * 128:])
            lstm = torch.stack(lstm_rows, dim=1) if lstm_rows else \
                torch.zeros((2, 0, 128), device=dev)
            ctx = torch.stack(ctx_rows) if ctx_rows else torch.zeros((0, 64), device=dev)
            wants = [(e, rank[i]) for i, q in enumerate(self.seqs) for e in q.ends]
            probs, snaps = self.owner.vad.run_device(held["frames"], self.counts, lstm, ctx,
                                                     wants)
            held["probs"].copy_(probs)
            held["snaps"].copy_(snaps)

        def s3() -> None:
            held["energy"] = band_energy_db_torch(
                held["blocks"], self.hops, rate_hz=ANALYSIS_RATE_HZ,
                low_hz=det.band_low_hz, high_hz=det.band_high_hz)

        def d2h() -> None:
            out_probs.copy_(held["probs"], non_blocking=True)
            out_states.copy_(held["snaps"], non_blocking=True)
            out_energy.copy_(held["energy"], non_blocking=True)

        self._held = held
        self._keep_device_states(held["snaps"])
        return [("h2d", Step("h2d", h2d)), ("s2", Step("s2", s2)),
                ("s3", Step("s3", s3)), ("d2h", Step("d2h", d2h))]

    def _keep_device_states(self, snaps: Any) -> None:
        """Each run's end state, as device rows of ``snaps``, for the next batch."""
        with self.owner._lock:
            for reqs, (v, mix) in zip(self.runs, self.run_seqs, strict=True):
                end = reqs[-1]
                if end.last:
                    self.owner._dev_states.pop(end.stream, None)
                    continue
                row_v = snaps[self.snap_at[v + 1] - 1]
                vocal = (row_v[: 2 * 128].reshape(2, 128), row_v[2 * 128:])
                mixed = None
                if mix is not None:
                    row_m = snaps[self.snap_at[mix + 1] - 1]
                    mixed = (row_m[: 2 * 128].reshape(2, 128), row_m[2 * 128:])
                self.owner._dev_states[end.stream] = (end.id, vocal, mixed)

    def results(self, out: np.ndarray, *, h2d_ms: float, vad_ms: float,
                features_ms: float, d2h_ms: float, pipeline: str) -> list[Result]:
        probs, states, energy = self._views(out, self._out_shapes())
        rank, offsets = self.rank, self.snap_at
        energy_of: dict[int, list[np.ndarray]] = {}
        for k, (r, blk) in enumerate(self.blocks):
            energy_of.setdefault(id(r), []).append(
                energy[k, : hops_per_block(r.lengths[blk])].copy())
        by_req: dict[int, Result] = {}
        for reqs, (v, mix) in zip(self.runs, self.run_seqs, strict=True):
            lo = 0
            for k, r in enumerate(reqs):
                hi = self.seqs[v].ends[k]
                pv = probs[rank[v], lo:hi].copy()
                pm = probs[rank[mix], lo:hi].copy() if mix is not None else pv[:0]
                sm = states[offsets[mix] + k].copy() if mix is not None else r.mix_state[:0]
                by_req[id(r)] = Result(
                    kind=Kind.ANALYSE, stream=r.stream, id=r.id, index=r.index,
                    probs=pv, vad_state=states[offsets[v] + k].copy(), probs_mix=pm,
                    mix_state=sm, batch_size=len({q.stream for q in self.batch}),
                    energy_db=np.concatenate(energy_of.get(id(r), [])) if r.lengths
                    else np.zeros(0, np.float32),
                    vad_ms=vad_ms, features_ms=features_ms, h2d_ms=h2d_ms, d2h_ms=d2h_ms,
                    pipeline=pipeline)
                lo = hi
        return [by_req[id(r)] for r in self.batch]
