"""The runtime contract of ``backends.base.WorkerBackend``, run against every backend.

The durable engine relies on these promises when it retries or resumes an operation: repeating a
call is safe, "already in that state" is not an error, an update that fails leaves the worker as
it was, and ``list`` only ever shows this bot's own workers.
"""

from __future__ import annotations

import pytest

from backends.base import WorkerState
from backends.errors import Conflict, ExecTimeout, InvalidSpec, NotFound, UpdateFailed
from tests.fixtures.backends import eventually, unique
from tests.integration.backends.conftest import Harness


async def test_create_twice_makes_one_worker(harness: Harness) -> None:
    spec = harness.spec(unique())
    first = await harness.backend.create(spec)
    second = await harness.backend.create(spec)
    assert (first.adopted, second.adopted) == (False, True)
    assert first.external_id == second.external_id
    assert first.spec_hash == second.spec_hash == spec.spec_hash
    assert [s.name for s in await harness.backend.list()] == [spec.name]
    status = await harness.backend.status(spec.name)
    assert (status.state, status.spec_hash, status.image) == (WorkerState.STOPPED, spec.spec_hash, spec.image)


async def test_create_with_another_spec_conflicts_unless_replacing(harness: Harness) -> None:
    name = unique()
    await harness.backend.create(harness.spec(name))
    other = harness.spec(name, greeting="bonjour")
    with pytest.raises(Conflict):
        await harness.backend.create(other)
    ref = await harness.backend.create(other, replace=True)
    assert ref.adopted
    assert (await harness.backend.status(name)).spec_hash == other.spec_hash


async def test_start_and_stop_are_idempotent(harness: Harness) -> None:
    spec = await harness.running(harness.spec(unique()))
    await harness.backend.start(spec.name)  # already running: a no-op
    running = await harness.backend.status(spec.name)
    assert running.state == WorkerState.RUNNING
    assert running.started_at is not None
    await harness.backend.stop(spec.name)
    await harness.backend.stop(spec.name)  # already stopped: a no-op
    assert (await harness.wait_for(spec.name, WorkerState.STOPPED)).spec_hash == spec.spec_hash
    await harness.backend.start(spec.name)
    await harness.wait_for(spec.name, WorkerState.RUNNING)


async def test_an_absent_worker(harness: Harness) -> None:
    name = unique()
    assert (await harness.backend.status(name)).state == WorkerState.NOT_FOUND
    await harness.backend.delete(name)  # gone is success
    backend = harness.backend
    for call in (lambda: backend.start(name), lambda: backend.stop(name), lambda: backend.logs(name),
                 lambda: backend.exec(name, ["true"], 5), lambda: backend.update(name, harness.spec(name))):
        with pytest.raises(NotFound):
            await call()


async def test_delete_twice(harness: Harness) -> None:
    spec = await harness.running(harness.spec(unique()))
    await harness.backend.delete(spec.name)
    await harness.backend.delete(spec.name)
    assert (await harness.backend.status(spec.name)).state == WorkerState.NOT_FOUND
    assert await harness.backend.list() == []


async def test_update_changes_image_and_env_and_keeps_running(harness: Harness) -> None:
    name = unique()
    await harness.running(harness.spec(name))
    new = harness.spec(name, version=2, greeting="bonjour")
    await harness.backend.update(name, new)
    status = await harness.wait_for(name, WorkerState.RUNNING)
    assert (status.image, status.spec_hash) == (harness.image_v2, new.spec_hash)
    result = await harness.backend.exec(name, ["sh", "-c", "echo $GREETING"], 10)
    assert result.stdout == "bonjour\n"
    await harness.backend.update(name, new)  # already at that spec: a no-op
    assert [s.spec_hash for s in await harness.backend.list()] == [new.spec_hash]


async def test_update_of_a_stopped_worker_leaves_it_stopped(harness: Harness) -> None:
    name = unique()
    await harness.backend.create(harness.spec(name))
    new = harness.spec(name, version=2)
    await harness.backend.update(name, new)
    status = await harness.backend.status(name)
    assert (status.state, status.spec_hash, status.image) == (WorkerState.STOPPED, new.spec_hash, harness.image_v2)


async def test_failing_update_leaves_the_old_version_running(harness: Harness) -> None:
    name = unique()
    old = await harness.running(harness.spec(name))
    with pytest.raises(UpdateFailed) as failed:
        await harness.backend.update(name, harness.failing_spec(name))
    assert "GREETING" not in str(failed.value)
    status = await harness.wait_for(name, WorkerState.RUNNING)
    assert (status.spec_hash, status.image) == (old.spec_hash, old.image)
    assert (await harness.backend.exec(name, ["sh", "-c", "echo $GREETING"], 10)).stdout == "hello\n"
    assert [s.name for s in await harness.backend.list()] == [name]


async def test_exec_returns_exit_code_and_output(harness: Harness) -> None:
    spec = await harness.running(harness.spec(unique()))
    result = await harness.backend.exec(spec.name, ["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    ok = await harness.backend.exec(spec.name, ["echo", "hi"], 10)
    assert (ok.exit_code, ok.stdout) == (0, "hi\n")
    missing = await harness.backend.exec(spec.name, ["no-such-command-here"], 10)
    assert missing.exit_code != 0
    with pytest.raises(ExecTimeout):
        await harness.backend.exec(spec.name, ["sleep", "5"], 0.5)


async def test_exec_in_a_stopped_worker_is_a_conflict(harness: Harness) -> None:
    name = unique()
    await harness.backend.create(harness.spec(name))
    with pytest.raises(Conflict):
        await harness.backend.exec(name, ["true"], 5)


async def test_logs_hold_the_workers_output(harness: Harness) -> None:
    spec = await harness.running(harness.spec(unique(), greeting="salut"))
    logs = await eventually(lambda: harness.backend.logs(spec.name), lambda text: "worker-up" in text)
    assert "worker-up salut\n" in logs
    assert await harness.backend.logs(spec.name, tail=1) == "worker-up salut\n"


async def test_list_sees_only_its_own_instance(harness: Harness) -> None:
    mine, theirs = harness.spec(unique()), harness.spec(unique())
    other = harness.another_instance()
    await harness.backend.create(mine)
    await other.create(theirs)
    assert [s.name for s in await harness.backend.list()] == [mine.name]
    assert [s.name for s in await other.list()] == [theirs.name]


@pytest.mark.parametrize("bad", ["Alice", "-a", "a_b", "a" * 64, ""])
async def test_names_are_checked_before_any_call(harness: Harness, bad: str) -> None:
    backend = harness.backend
    for call in (lambda: backend.start(bad), lambda: backend.stop(bad), lambda: backend.status(bad),
                 lambda: backend.delete(bad), lambda: backend.logs(bad), lambda: backend.exec(bad, ["true"], 1)):
        with pytest.raises(InvalidSpec):
            await call()
