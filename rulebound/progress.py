"""Progress lines for long jobs: someone running ``tail -f logs/<rule>/<job>.log`` sees where the job is.

``Progress(total, "generated", log).update(n)`` logs ``generated 48/206 (23%), 31 s elapsed, ETA 1 min 44 s``
at most every ``every_s`` seconds (and always for the last item), so a fast job stays quiet and a slow one
reports steadily.
"""

from __future__ import annotations

import logging
import time


def duration(seconds: float) -> str:
    """12 s, 3 min 05 s, 1 h 02 min."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Count done items of ``total`` and log the rate and the time left."""

    def __init__(self, total: int, what: str, logger: logging.Logger, *, every_s: float = 10.0,
                 clock=time.monotonic) -> None:
        self.total, self.what, self.log, self.every_s, self.clock = int(total), what, logger, every_s, clock
        self.done = 0
        self.start = self.clock()
        self._last = self.start

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if self.done < self.total and now - self._last < self.every_s:
            return
        self._last = now
        self.log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = now - self.start
        share = self.done / self.total if self.total else 1.0
        text = f"{self.what} {self.done}/{self.total} ({share:.0%}), {duration(elapsed)} elapsed"
        if 0 < self.done < self.total:
            text += f", ETA {duration(elapsed / self.done * (self.total - self.done))}"
        return text
