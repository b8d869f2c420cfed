"""Retry policy for transient errors: how many attempts, and the :class:`~hiclaw_bot.timing.Backoff` between them.

The engine has one default (from ``engine:`` in the configuration); a step may declare its own
(``Step.retry``, kopf-style), read by the engine when it runs that step. The wait grows
``initial · 2ⁿ`` up to ``maximum``, spread by ``jitter`` (a fraction) so that many operations
failing together do not retry in lockstep; the error's own hint (429 ``Retry-After``, or a step's
``TransientError(delay=…)``) wins when it asks for longer, up to four times ``maximum``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity.wait import wait_base

from hiclaw_bot.engine.errors import classify
from hiclaw_bot.timing import Backoff


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.25

    @property
    def backoff(self) -> Backoff:
        return Backoff(first=self.initial, cap=self.maximum, jitter=self.jitter, hint_cap=self.maximum * 4)

    def wait(self) -> wait_base:
        return self.backoff.tenacity_wait(lambda exc: classify(exc).delay)
