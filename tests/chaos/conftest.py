"""The gateway simulator the crash tests' children configure, one per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[HigressConsoleSimulator]:
    async with HigressConsoleSimulator(initialized=True) as sim:
        yield sim
