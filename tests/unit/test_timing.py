"""The one backoff: its growth, its cap, its jitter, a server's hint, and the same waits under tenacity."""

from __future__ import annotations

import pytest
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from hiclaw_bot.timing import Backoff, Failures, FakeClock


def test_waits_double_up_to_the_cap() -> None:
    backoff = Backoff(first=0.5, cap=3.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_spreads_each_wait_within_its_fraction() -> None:
    backoff = Backoff(first=4.0, cap=4.0, jitter=0.25)
    waits = {backoff.delay(1) for _ in range(200)}
    assert all(3.0 <= wait <= 5.0 for wait in waits)
    assert len(waits) > 1


def test_a_hint_stretches_the_wait_up_to_its_cap() -> None:
    backoff = Backoff(first=1.0, cap=8.0, jitter=0.0, hint_cap=10.0)
    assert backoff.delay(1, hint=7.0) == 7.0
    assert backoff.delay(1, hint=3600.0) == 10.0
    assert backoff.delay(4, hint=0.1) == 8.0  # a short hint never shortens the backoff


def test_a_run_of_failures_counts_and_resets() -> None:
    failures = Failures(Backoff(first=1.0, cap=4.0, jitter=0.0))
    assert [failures.next() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert failures.count == 4
    failures.reset()
    assert failures.next() == 1.0


class Busy(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("busy")
        self.retry_after = retry_after


async def test_tenacity_waits_the_same_on_the_clock_it_is_given() -> None:
    clock = FakeClock()
    errors = [Busy(), Busy(5.0), Busy()]

    async def call() -> str:
        if errors:
            raise errors.pop(0)
        return "done"

    wait = Backoff(first=1.0, jitter=0.0).tenacity_wait(lambda exc: getattr(exc, "retry_after", None))
    retrying = AsyncRetrying(stop=stop_after_attempt(4), retry=retry_if_exception_type(Busy), reraise=True,
                             wait=wait, sleep=clock.sleep)
    assert await retrying(call) == "done"
    assert clock.sleeps == [1.0, 5.0, 4.0]


async def test_fake_clock_sleeps_move_its_time_forward() -> None:
    clock = FakeClock(start=10.0)
    await clock.sleep(2.5)
    assert clock.monotonic() == pytest.approx(12.5)
    assert clock.sleeps == [2.5]
