"""Progress of a long job in the log: done/total, percentage, rate and time left.

A :class:`Progress` counts units of work (frames, sequences, epochs) and logs a line such as
``encoding: 1,200/5,000 frames (24 %), 240 frames/s, ETA 0:16`` at most every ``every_s``
seconds, and once more when the work is done. The rate is measured on the work this job did
(a resumed job does not count what an earlier run did as fast). Time comes from an
injectable clock (:func:`time.monotonic` by default), so the arithmetic is testable.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

__all__ = ["Progress", "duration"]


def duration(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on), rounded to the second; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _amount(value: float) -> str:
    """A rate with three significant digits below 100, thousands separated above."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


class Progress:
    """Units of work done out of ``total``, logged with the rate and the time left.

    Parameters
    ----------
    total : int
        Units of work of the whole job.
    what : str
        The unit, plural (``frames``, ``sequences``, ``epochs``).
    name : str
        What the job is; the start of every line.
    every_s : float
        Least seconds between two lines of :meth:`update` (the last line always comes).
    done : int
        Units already done when the job starts (a resumed training, say): they count in
        the percentage, not in the rate.
    logger : logging.Logger, optional
        Where the lines go (default: this module's logger); pass the caller's, so the lines
        name the module doing the work.
    clock : callable
        Seconds, monotonic; :func:`time.monotonic` unless a test injects another.
    """

    def __init__(self, total: int, what: str = "frames", name: str = "encoding", every_s: float = 10.0, *,
                 done: int = 0, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.what, self.name, self.every_s = int(total), what, name, float(every_s)
        self.done = self._start = int(done)
        self.logger = logger or logging.getLogger(__name__)
        self.clock = clock
        self._started = self._logged = clock()
        self._finished = False

    @property
    def elapsed(self) -> float:
        """Seconds since the job started."""
        return self.clock() - self._started

    @property
    def rate(self) -> float:
        """Units per second over this job's work; NaN before any time has passed."""
        return self._rate(self.elapsed)

    @property
    def eta(self) -> float:
        """Seconds left at the current rate: 0 when done, NaN when the rate is unknown or 0."""
        return self._eta(self._rate(self.elapsed))

    def status(self) -> str:
        """``1,200/5,000 frames (24 %), 240 frames/s, ETA 0:16`` (``..., in 0:21`` when done)."""
        elapsed = self.elapsed  # one reading of the clock for the whole line
        rate = self._rate(elapsed)
        percent = 100 if self.total <= 0 else math.floor(100 * min(self.done, self.total) / self.total)
        text = f"{self.done:,}/{self.total:,} {self.what} ({percent} %)"
        if math.isfinite(rate):
            text += f", {_amount(rate)} {self.what}/s"
        if self.done >= self.total:
            return f"{text}, in {duration(elapsed)}"
        return f"{text}, ETA {duration(self._eta(rate))}"

    def _rate(self, elapsed: float) -> float:
        return (self.done - self._start) / elapsed if elapsed > 0 else math.nan

    def _eta(self, rate: float) -> float:
        left = max(self.total - self.done, 0)
        if left == 0:
            return 0.0
        return left / rate if rate > 0 else math.nan

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units without logging (the caller reports :meth:`status` itself)."""
        self.done += int(n)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; log when ``every_s`` has passed since the last line, or at the end."""
        self.advance(n)
        now = self.clock()
        finished = self.done >= self.total
        if (finished and not self._finished) or (not finished and now - self._logged >= self.every_s):
            self._logged, self._finished = now, finished
            self.logger.info("%s: %s", self.name, self.status())
