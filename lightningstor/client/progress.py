"""A plain-text progress bar on stderr (no dependency, no terminal control
beyond a carriage return), safe to update from several upload threads."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ProgressBar:
    """``label  [#######.....]  42%  12.0 MiB/28.6 MiB  35.2 MiB/s``, redrawn
    at most every ``interval`` seconds; a no-op when not ``enabled``."""

    WIDTH = 24

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = 0.1,
    ) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.done = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._width = 0  # of the line drawn last, so a shorter one blanks it out

    def set_total(self, total: int) -> None:
        self.total = total

    def __call__(self, n: int) -> None:
        """Record ``n`` more bytes (the client's progress callback)."""
        with self._lock:
            self.done += n
            now = time.monotonic()
            if self.enabled and now - self._last_draw >= self.interval:
                self._last_draw = now
                self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now if now is not None else time.monotonic()) - self._start, 1e-6)
        rate = f"{human(self.done / elapsed)}/s"
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            return f"{self.label}  [{bar}] {fraction:4.0%}  {human(self.done)}/{human(self.total)}  {rate}"
        return f"{self.label}  {human(self.done)}  {rate}"

    def _draw(self, now: float) -> None:
        text = self.line(now)
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """Draw the final state and end the line."""
        with self._lock:
            if self.enabled:
                self._draw(time.monotonic())
                self.stream.write("\n")
                self.stream.flush()
