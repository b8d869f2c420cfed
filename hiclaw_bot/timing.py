"""Time and backoff, in one leaf module that the clients, the engine and chat all use.

Everything that waits goes through a :class:`Clock`, so a test hands in :class:`FakeClock` and a
backoff of minutes takes no time while the test asserts exactly which waits were chosen (kopf's
``looptime`` serves the same purpose). Every retry loop takes its waits from one :class:`Backoff`:
capped exponential growth, a jitter so that many callers failing together do not retry in
lockstep, and a server's own hint (429 ``Retry-After``, ``retry_after_ms``) winning when it asks
for longer. The engine hands the same policy to tenacity through :meth:`Backoff.tenacity_wait`.

A leaf: it imports nothing of hiclaw_bot, so a client (which may not know the engine) can use it.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tenacity import RetryCallState
from tenacity.wait import wait_base


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def wall(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
"""The default of every ``clock=`` parameter: stateless, so one is enough."""


class FakeClock:
    """A clock whose sleeps return at once and move time forward by the amount asked."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Backoff:
    """The wait before attempt ``n + 1``: ``first · 2ⁿ⁻¹`` capped at ``cap``, spread by ``jitter``.

    ``jitter`` is a fraction: each wait is scaled by a random factor in ``[1 − jitter, 1 + jitter]``
    (0 makes the waits exact, as tests want). A hint from the server stretches the wait up to
    ``hint_cap`` (a server asking for an hour does not hold a step for an hour).
    """

    first: float = 0.5
    cap: float = 60.0
    jitter: float = 0.25
    hint_cap: float = math.inf

    def delay(self, failures: int, hint: float | None = None) -> float:
        """The wait after ``failures`` failures in a row (1 for the first)."""
        base = min(self.cap, self.first * 2.0 ** max(failures - 1, 0))
        if self.jitter:
            base *= random.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        if hint is not None:
            base = max(base, min(hint, self.hint_cap))
        return base

    def tenacity_wait(self, hint: Callable[[BaseException], float | None]) -> wait_base:
        """The same waits for tenacity; ``hint`` reads the server's wish from the failure."""
        return _TenacityWait(self, hint)


class Failures:
    """A run of failures in a loop that retries forever (the sync, a send): the next wait, and a reset.

    ``count`` says how long the run is, so a caller can log the first few and then only every tenth.
    """

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.count = 0

    def next(self, hint: float | None = None) -> float:
        self.count += 1
        return self.backoff.delay(self.count, hint)

    def reset(self) -> None:
        self.count = 0


class _TenacityWait(wait_base):
    def __init__(self, backoff: Backoff, hint: Callable[[BaseException], float | None]) -> None:
        self._backoff = backoff
        self._hint = hint

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        return self._backoff.delay(retry_state.attempt_number, self._hint(exc) if exc is not None else None)
