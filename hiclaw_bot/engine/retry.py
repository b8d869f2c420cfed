"""Retry policy for transient errors: capped exponential backoff with jitter, via tenacity.

The wait grows ``initial · 2ⁿ`` up to ``maximum``, plus up to ``jitter`` seconds of randomness so
that many operations failing together do not retry in lockstep; a server's own hint (429
``Retry-After``, or a step's ``TransientError(delay=…)``) wins when it asks for longer.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import RetryCallState, wait_exponential_jitter
from tenacity.wait import wait_base

from hiclaw_bot.engine.errors import classify


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.5

    def wait(self) -> wait_base:
        return _HintedWait(wait_exponential_jitter(multiplier=self.initial, max=self.maximum, jitter=self.jitter),
                           self.maximum * 4)


class _HintedWait(wait_base):
    """Exponential jitter, stretched to the delay the error itself asks for (capped)."""

    def __init__(self, base: wait_base, cap: float) -> None:
        self._base = base
        self._cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = float(self._base(retry_state))
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            if exc is not None:
                hint = classify(exc).delay
                if hint is not None:
                    wait = max(wait, min(hint, self._cap))
        return wait
