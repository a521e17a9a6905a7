"""PeriodicService: runs on the injected clock and survives a failing pass."""

from __future__ import annotations

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from lightningstor.periodic import PeriodicService


class Counting(PeriodicService):
    description = "test job"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock, 10.0)
        self.calls = 0

    def run_once(self):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == 2:
            return fail(RuntimeError("one bad pass"))
        return succeed(None)


def test_first_run_after_one_interval_and_failures_do_not_stop_the_loop() -> None:
    """Nothing runs at start; a failing pass is logged and the next interval runs again."""
    clock = Clock()
    svc = Counting(clock)
    svc.startService()
    assert svc.calls == 0
    for _ in range(3):
        clock.advance(10.0)
    assert svc.calls == 3
    svc.stopService()
    clock.advance(100.0)
    assert svc.calls == 3
