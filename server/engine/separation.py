"""Stage S1: batched separation across streams, overlap-add, vocal -> 16 kHz blocks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from itertools import groupby

import numpy as np
from seamcut.server.config import HOP_SAMPLES
from seamcut.server.engine.blocks import Block, SepJob, block_from_grid
from seamcut.server.errors import InternalError, SeamcutError
from seamcut.server.models.separator import Separator

log = logging.getLogger(__name__)


class SeparationRunner:
    """The body of the S1 worker. Per stream, jobs arrive and leave in order."""

    def __init__(
        self,
        separators: Mapping[str, Separator],
        forward: Callable[[Block], None],
        fail: Callable[[SepJob, SeamcutError], None],
    ) -> None:
        self._separators = separators
        self._forward = forward
        self._fail = fail

    def __call__(self, batch: list[SepJob]) -> None:
        def backend(job: SepJob) -> str:
            assert job.stream.song is not None
            return job.stream.song.separator

        for name, group_iter in groupby(sorted(batch, key=backend), key=backend):
            group = list(group_iter)  # sorted() is stable: per-stream order is kept
            self._run_group(self._separators[name], group)

    def _run_group(self, sep: Separator, group: list[SepJob]) -> None:
        windows = [j.windows for j in group if j.windows.shape[0]]
        t0 = time.perf_counter()
        try:
            if windows:
                stacked = np.concatenate(windows)
                vocal = np.concatenate([
                    sep.separate(stacked[i : i + sep.max_batch])
                    for i in range(0, stacked.shape[0], sep.max_batch)
                ])
            else:
                vocal = np.zeros((0, 2, sep.window_samples), np.float32)
        except Exception as exc:  # the whole call failed: every job in it fails
            log.exception("separation with %s failed", sep.name)
            for job in group:
                self._fail(job, InternalError(f"separation stage failed: {exc!r}"))
            return
        ms = (time.perf_counter() - t0) * 1000
        n_windows = int(vocal.shape[0])
        offset = 0
        for job in group:
            m = int(job.windows.shape[0])
            try:
                blocks = self._post(job, vocal[offset : offset + m])
            except Exception as exc:
                log.exception("separation post-processing failed for %s", job.stream.key)
                self._fail(job, InternalError(f"separation stage failed: {exc!r}"))
                offset += m
                continue
            offset += m
            for b in blocks:
                b.separation_ms = ms
                b.separation_batch = n_windows
                b.t_submit = job.t_submit
                b.t_queue = job.t_queue
                self._forward(b)

    @staticmethod
    def _mix_slice(job: SepJob, start16: int, length16: int) -> np.ndarray:
        """The mix over [start16, start16 + length16) at 16 kHz; zeros past its end (the
        vocal path can run a few samples longer after two resamplers)."""
        song = job.stream.song
        assert song is not None
        lo = start16 - song.mix16_start
        out = song.mix16[lo : lo + length16]
        song.mix16 = song.mix16[lo + length16 :]
        song.mix16_start = start16 + length16
        if out.shape[0] < length16:
            out = np.pad(out, (0, length16 - out.shape[0]))
        return out

    def _post(self, job: SepJob, vocal: np.ndarray) -> list[Block]:
        song = job.stream.song
        assert song is not None
        if job.is_last:
            song.ola.set_total(job.total_model)
        parts = [song.ola.add(v) for v in vocal]
        if job.is_last:
            parts.append(song.ola.finish(job.total_model))
        mono = (np.concatenate(parts, axis=1).mean(axis=0) if parts
                else np.zeros(0, np.float32)).astype(np.float32)
        grid = song.reblock.push(mono, job.client, client_complete=job.is_last)
        if job.is_last:
            grid += song.reblock.finish()
        song.mix16 = np.concatenate([song.mix16, job.mix16])
        blocks = [
            block_from_grid(job.stream, gb, first_seq=job.first_seq, last_seq=job.last_seq,
                            send_ns=job.client_send_time_ns, recv_ns=job.receive_time_ns,
                            releases=0)
            for gb in grid
        ]
        for b in blocks:
            b.mix16 = self._mix_slice(job, b.start16, b.length16)
        if blocks:
            blocks[-1].releases = 1
            return blocks
        # No block completed: a marker carries the job's release through S2 and S3 so
        # that it arrives after the blocks before it (Flushed relies on that order).
        return [Block(
            stream=job.stream, index=-1, start16=0, length16=0,
            samples16=np.zeros(HOP_SAMPLES, np.float32), client_start=0,
            client=np.zeros(0, np.float32), first_seq=job.first_seq, last_seq=job.last_seq,
            client_send_time_ns=job.client_send_time_ns, receive_time_ns=job.receive_time_ns,
            is_last=False, marker=True,
        )]
