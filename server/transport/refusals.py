"""Rate-limited logging of refused and failed streams.

A hostile client can make the server refuse thousands of streams a second; one log
line each once wrote 135 MB in 5 s. Per status code, the first ``burst`` lines of
each ``window_s`` are logged; the rest are counted and summed up in one line when the
window ends (on the next refusal, or from :meth:`RefusalLog.flush`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping

MAX_LINE = 300  # characters of one message in the log


class RefusalLog:
    def __init__(self, log: logging.Logger, *, burst: int = 20, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._burst = burst
        self._window_s = window_s
        self._clock = clock
        self._start = clock()
        self._logged: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self.total: Counter[str] = Counter()  # every refusal by code (for tests, metrics)

    def note(self, code: str, text: str, *args: object,
             extra: Mapping[str, object] | None = None) -> None:
        """Log ``text % args`` at INFO unless this code's burst is spent; ``extra``:
        logging extra fields (the stream's ids)."""
        self.total[code] += 1
        now = self._clock()
        if now - self._start >= self._window_s:
            self.flush(now)
        if self._logged[code] < self._burst:
            self._logged[code] += 1
            line = text % args if args else text
            self._log.info("%s", line if len(line) <= MAX_LINE else line[:MAX_LINE] + "…",
                           extra=extra)
        else:
            self._dropped[code] += 1

    def flush(self, now: float | None = None) -> None:
        """Sum up what the window dropped and start a new window."""
        if self._dropped:
            parts = ", ".join(f"{c} {n}" for c, n in sorted(self._dropped.items()))
            self._log.warning("%d more refused or failed streams not logged in the last "
                              "%.0f s (%s)", sum(self._dropped.values()),
                              self._window_s, parts)
        self._logged.clear()
        self._dropped.clear()
        self._start = self._clock() if now is None else now
