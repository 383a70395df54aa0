"""Re-blocking arbitrary client messages onto the fixed analysis grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from seamcut.server.config import ANALYSIS_RATE_HZ, HOP_SAMPLES
from seamcut.server.dsp.resample import StreamResampler
from seamcut.server.errors import InternalError

_EMPTY = np.zeros(0, np.float32)


@dataclass(frozen=True, slots=True)
class GridBlock:
    index: int
    start16: int
    length16: int
    samples16: np.ndarray  # [HOP + length16], left halo first
    client_start: int
    client: np.ndarray  # mono client-rate samples of [client_start, client_start + len)
    is_last: bool


class Reblocker:
    """Analysis source + client mono in, fixed 16 kHz blocks out, whatever the slicing.

    The source is what detection runs on (the downmixed mix in SPEECH mode, the
    separated or client-supplied vocal in SONG mode) at ``source_rate_hz``; it is
    resampled to 16 kHz. The client mono (the mix, at the client's rate) rides along
    for the zero-crossing snap. Block k covers analysis samples [k*B, (k+1)*B) and
    client frames [floor(k*B*R/16k), floor((k+1)*B*R/16k)); the last block takes
    what is left.
    """

    def __init__(self, client_rate_hz: int, block_samples: int,
                 source_rate_hz: int | None = None, *, first_block: int = 0) -> None:
        """``first_block``: the grid block the first sample pushed starts (a resumed
        stream's pre-roll starts on the grid of the stream it resumes); its start must
        be a whole client frame."""
        self.rate = client_rate_hz
        self.block = block_samples
        self.resampler = StreamResampler(source_rate_hz or client_rate_hz, ANALYSIS_RATE_HZ)
        self._buf16 = _EMPTY
        self._start16 = first_block * block_samples
        if self._start16 * client_rate_hz % ANALYSIS_RATE_HZ:
            raise ValueError(f"block {first_block} does not start on a client frame")
        self._halo = np.zeros(HOP_SAMPLES, np.float32)
        self._client = _EMPTY
        self._client_start = self._start16 * client_rate_hz // ANALYSIS_RATE_HZ
        self.received = self._client_start  # client frames pushed (from the grid's origin)
        self.index = first_block
        self._client_complete = False

    @property
    def buffered_frames(self) -> int:
        return int(self._client.shape[0])

    def push(self, source: np.ndarray, client: np.ndarray | None = None, *,
             client_complete: bool = False) -> list[GridBlock]:
        """Add source samples (and the client mono they go with; default: the source
        itself); return the blocks that are now complete.

        ``client_complete`` says the client audio has ended: a source that runs a few
        samples longer (resampler rounding) then gets empty client slices.
        """
        self._client_complete = client_complete
        client = source if client is None else client
        if client.size:
            self.received += int(client.shape[0])
            self._client = np.concatenate([self._client, client])
        if source.size:
            self._buf16 = np.concatenate([self._buf16, self.resampler.process(source)])
        out = []
        while self._buf16.shape[0] >= self.block:
            out.append(self._cut(self.block, last=False))
        return out

    def finish(self) -> list[GridBlock]:
        """End of stream: flush the resampler; the last block is marked ``is_last``."""
        tail = self.resampler.process(_EMPTY, last=True)
        self._buf16 = np.concatenate([self._buf16, tail])
        out = []
        while self._buf16.shape[0] > self.block:
            out.append(self._cut(self.block, last=False))
        out.append(self._cut(int(self._buf16.shape[0]), last=True))
        return out

    def _cut(self, n: int, *, last: bool) -> GridBlock:
        start16 = self._start16
        end16 = start16 + n
        client_end = self.received if last else end16 * self.rate // ANALYSIS_RATE_HZ
        if self._client_complete:
            client_end = min(client_end, self.received)
        take = client_end - self._client_start
        if take < 0 or take > self._client.shape[0]:
            raise InternalError(
                f"re-blocking: client audio for block {self.index} not available "
                f"({take} of {self._client.shape[0]} frames)"
            )
        samples = np.concatenate([self._halo, self._buf16[:n]])
        block = GridBlock(
            index=self.index, start16=start16, length16=n, samples16=samples,
            client_start=self._client_start, client=self._client[:take].copy(), is_last=last,
        )
        self._halo = samples[-HOP_SAMPLES:]
        self._buf16 = self._buf16[n:]
        self._start16 = end16
        self._client = self._client[take:]
        self._client_start = client_end
        self.index += 1
        return block
