"""The reconciler's policy (pure, with Hypothesis) and its pass over a real store."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backends import WorkerState, WorkerStatus
from hiclaw_bot.flows.worker import REPAIR, SLEEP, UPDATE, WAKE, subject
from hiclaw_bot.lifecycle import plan
from hiclaw_bot.lifecycle.reconcile import Reconciler
from storage import Worker
from tests.unit.lifecycle.conftest import Rig, add_worker

STATES = ["Running", "Sleeping", "Pending", "Updating", "Deleting", "Failed"]


def worker(name: str, state: str) -> Worker:
    return Worker(name=name, team=None, role="worker", backend="x", image="img", model="m", spec={}, spec_hash=None,
                  state=state, previous_state=None, desired_state="Running", observed_state=None, user_id=None,
                  room_id=None, idle_timeout_s=None, last_active_at=None, created_at=0.0, updated_at=0.0)


def status(name: str, state: WorkerState, spec_hash: str = "h") -> WorkerStatus:
    return WorkerStatus(name, state, "img", spec_hash)


def wanted(row: Worker) -> str:
    return "h"


@given(st.lists(st.tuples(st.sampled_from(STATES), st.sampled_from([*WorkerState, None]),
                          st.sampled_from(["h", "other"]), st.booleans()), max_size=12))
def test_the_policy_never_deletes_and_leaves_held_and_unknown_alone(cases: list[tuple[str, WorkerState | None,
                                                                                       str, bool]]) -> None:
    rows = [worker(f"w{i}", state) for i, (state, _, _, _) in enumerate(cases)]
    observed = {f"w{i}": status(f"w{i}", seen, spec) for i, (_, seen, spec, _) in enumerate(cases) if seen is not None}
    busy = {subject(f"w{i}") for i, (_, _, _, held) in enumerate(cases) if held}
    findings = plan(rows, observed, busy, wanted)
    assert len({f.worker for f in findings}) == len(findings)
    for finding in findings:
        index = int(finding.worker[1:])
        state, seen, _, held = cases[index]
        assert not held
        assert state in ("Running", "Sleeping")
        assert finding.action in (None, WAKE, SLEEP, UPDATE, REPAIR)
        if seen is WorkerState.UNKNOWN:
            assert finding.action is None


def test_the_policy_table() -> None:
    rows = [worker("gone", "Running"), worker("stopped", "Running"), worker("crashed", "Running"),
            worker("drifted", "Running"), worker("insomniac", "Sleeping"), worker("lost", "Sleeping"),
            worker("fine", "Running"), worker("asleep", "Sleeping"), worker("unsure", "Running")]
    observed = {s.name: s for s in [
        status("stopped", WorkerState.STOPPED), status("crashed", WorkerState.FAILED),
        status("drifted", WorkerState.RUNNING, "old"), status("insomniac", WorkerState.RUNNING),
        status("fine", WorkerState.RUNNING), status("asleep", WorkerState.STOPPED, "old"),
        status("unsure", WorkerState.UNKNOWN)]}
    actions = {f.worker: f.action for f in plan(rows, observed, set(), wanted)}
    assert actions == {"gone": REPAIR, "stopped": WAKE, "crashed": WAKE, "drifted": UPDATE, "insomniac": SLEEP,
                       "lost": REPAIR, "unsure": None}


async def test_an_unknown_status_is_reported_once_and_nothing_is_started_or_deleted(rig: Rig) -> None:
    await add_worker(rig.store, "alice")
    rig.backend.show("alice", WorkerState.UNKNOWN, detail="the daemon did not say")
    reconciler = Reconciler(rig.services, rig.engine)
    for _ in range(2):
        report = await reconciler.reconcile_once()
        assert [(f.worker, f.action) for f in report.findings] == [("alice", None)]
        assert report.started == {}
    assert rig.backend.deleted == []
    assert await rig.store.ops.find() == []
    assert (await rig.store.workers.get("alice")).observed_state == "Unknown"  # type: ignore[union-attr]
    audit = await rig.store.audit.recent(subject=subject("alice"))
    assert [(a.command, a.decision) for a in audit] == [("reconcile", "reported")]


async def test_repairs_go_through_the_engine_and_held_workers_are_skipped(rig: Rig) -> None:
    await add_worker(rig.store, "stopped")
    await add_worker(rig.store, "held")
    rig.backend.show("stopped", WorkerState.STOPPED)
    rig.backend.show("held", WorkerState.STOPPED)
    await rig.store.ops.insert(kind="worker.update", subject=subject("held"), params={}, actor=None, room_id=None,
                               source_event_id=None, state="failed")
    report = await Reconciler(rig.services, rig.engine).reconcile_once()
    assert list(report.started) == ["stopped"]
    op = await rig.engine.wait(report.started["stopped"])
    assert (op.kind, op.state, op.params) == (WAKE, "succeeded", {"name": "stopped"})
    assert rig.backend.deleted == []


async def test_a_backend_that_cannot_list_changes_nothing(rig: Rig) -> None:
    await add_worker(rig.store, "alice")
    rig.backend.broken = True
    report = await Reconciler(rig.services, rig.engine).reconcile_once()
    assert report.error is not None
    assert report.findings == []
    assert await rig.store.ops.find() == []
    assert (await rig.store.workers.get("alice")).observed_state is None  # type: ignore[union-attr]
