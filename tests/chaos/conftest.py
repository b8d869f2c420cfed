"""The crash tests' shared fixtures: the gateway simulator their children configure, one per test
module, and the end of the agent launcher a test's children left idling."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hiclaw_bot.app import make_backend
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from tests.chaos.harness import ZYGOTE


@pytest.fixture(scope="session", autouse=True)
def _zygote_ends_with_the_session() -> Iterator[None]:
    yield
    ZYGOTE.stop()


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[HigressConsoleSimulator]:
    async with HigressConsoleSimulator(initialized=True) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _launcher_ends_with_its_test(tmp_path: Path) -> Iterator[None]:
    """A preloading process backend's launcher outlives the children (a restarted bot finds it
    again) and idles two minutes before it leaves; removing its socket ends it now, so a run's
    tests do not pile up idle launchers."""
    yield
    path = tmp_path / "config.json"
    if path.exists():
        launcher = getattr(make_backend(Config.model_validate(json.loads(path.read_text()))), "_launcher", None)
        if launcher is not None:
            launcher.path.unlink(missing_ok=True)
