"""Workers on several backends: each is compared with, and reached through, its own backend only;
a worker whose backend is not served stops the bot from starting instead of being "repaired"."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import ValidationError

from backends import WorkerState
from hiclaw_bot.config import BackendConfig
from hiclaw_bot.engine import PermanentError
from hiclaw_bot.flows.services import StrandedWorkers
from hiclaw_bot.flows.worker import REPAIR
from hiclaw_bot.lifecycle.reconcile import Reconciler
from tests.unit.lifecycle.conftest import Rig, ScriptedBackend, add_worker


def test_available_backends_include_the_default_first() -> None:
    assert BackendConfig().kinds == ["process"]
    assert BackendConfig(kind="docker", available=["process", "docker"]).kinds == ["docker", "process"]
    with pytest.raises(ValidationError, match="not in available"):
        BackendConfig(kind="docker", available=["process"])


async def test_each_worker_is_compared_with_its_own_backends_list(rig: Rig) -> None:
    second = ScriptedBackend(name="second")
    rig.services.others = {"second": cast(Any, second)}
    await add_worker(rig.store, "here")       # on the default backend, where it runs
    await add_worker(rig.store, "there", backend="second")  # runs on the second backend only
    await add_worker(rig.store, "gone")       # vanished from the default backend
    rig.backend.show("here", WorkerState.RUNNING)
    second.show("there", WorkerState.RUNNING)
    report = await Reconciler(rig.services, rig.engine).reconcile_once()
    assert {f.worker: f.action for f in report.findings} == {"gone": REPAIR}


async def test_workers_of_a_backend_that_does_not_answer_are_left_alone(rig: Rig) -> None:
    second = ScriptedBackend(name="second", broken=True)
    rig.services.others = {"second": cast(Any, second)}
    await add_worker(rig.store, "there", backend="second")
    await add_worker(rig.store, "gone")
    report = await Reconciler(rig.services, rig.engine).reconcile_once()
    assert {f.worker for f in report.findings} == {"gone"}
    assert report.error is not None
    assert "second" in report.error


async def test_workers_on_a_backend_not_served_are_named_and_never_reached(rig: Rig, tmp_path: Path) -> None:
    await add_worker(rig.store, "ok")
    await add_worker(rig.store, "old-kind", backend="docker")
    await add_worker(rig.store, "old-instance", backend_instance="elsewhere")
    rig.backend.show("ok", WorkerState.RUNNING)
    rows = await rig.store.workers.all()
    stranded = rig.services.stranded(rows)
    assert sorted(row.name for row in stranded) == ["old-instance", "old-kind"]
    message = str(StrandedWorkers(stranded, list(rig.services.backends), "hiclaw"))
    assert "old-kind on docker" in message
    assert "old-instance on scripted (instance elsewhere)" in message
    with pytest.raises(PermanentError, match=r"backend\.available"):
        await rig.services.worker_backend("old-kind")
    report = await Reconciler(rig.services, rig.engine).reconcile_once()
    assert report.findings == []
    assert rig.backend.deleted == []
