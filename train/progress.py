"""Progress of a stage (collection, evaluation, an update): a tqdm bar on a terminal; elsewhere (a
log file, CI, `nohup`) a log line at least every 30 s with the rate and the time left, so a run
whose output goes to a file never looks stalled."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

log = logging.getLogger("autodidact")

LOG_EVERY_S = 30.0


class Progress:
    """Counts `total` units of a stage called `desc`."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "it",
        every_s: float = LOG_EVERY_S,
        terminal: bool | None = None,
    ):
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.done = 0
        self._start = self._last_log = time.monotonic()
        self._bar = (
            tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
            if self.terminal
            else None
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_log >= self.every_s and self.done < self.total:
            self._last_log = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """`desc: done/total unit (rate unit/s, m:ss left)`."""
        elapsed = (now or time.monotonic()) - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = f"{int(left // 60)}:{int(left % 60):02d} left" if left == left else "? left"
        return (
            f"{self.desc}: {self.done}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s, {eta})"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def progress_bar(total: int, desc: str, unit: str = "it") -> Iterator[Progress]:
    """A `Progress` of `total` units, closed on exit."""
    bar = Progress(total, desc, unit)
    try:
        yield bar
    finally:
        bar.close()
