"""The drift reconciler: what the backend runs, compared with what the workers table wants.

Each pass makes ONE ``list()`` call per backend served and reads the table once; :func:`plan` then decides,
per worker, from its recorded state (``Running`` wants a running runtime, ``Sleeping`` a stopped
one; workers in any other state are in the middle of something and left alone):

=====================  ==================================  =====================================
recorded               observed                            repair (an engine operation)
=====================  ==================================  =====================================
Running or Sleeping    absent (vanished)                   ``worker.repair``: recreated from the
                                                           row's spec, in the row's state
Running                stopped or failed                   ``worker.wake``
Running                runs another spec (image drift)     ``worker.update`` with the row's spec
Sleeping               running                             ``worker.sleep``
any                    unknown                             none: reported only
=====================  ==================================  =====================================

Nothing here ever deletes. A worker an operation holds or waits for is skipped (the engine
serialises; a submit that still meets a holder is refused, never queued). Repairs are ordinary
operations, so they are checkpointed, resumable, and visible in ``!op list``. Every finding is
written to the audit log; new findings are also posted to ``lifecycle.report_room`` when one is
configured, once each (a worker that stays unknown is not reported every pass).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from backends import BackendError, WorkerState, WorkerStatus
from hiclaw_bot.engine import Engine, EngineError, describe
from hiclaw_bot.flows import worker as flows
from hiclaw_bot.flows.params import WorkerParams
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_identity import worker_storage
from hiclaw_bot.flows.worker_runtime import worker_spec
from hiclaw_bot.lifecycle.report import post_report
from hiclaw_bot.types import WorkerPhase
from storage import Worker

log = logging.getLogger("hiclaw_bot.lifecycle")

OBSERVED = {
    WorkerState.RUNNING: "Running", WorkerState.STARTING: "Starting", WorkerState.STOPPED: "Sleeping",
    WorkerState.FAILED: "Failed", WorkerState.NOT_FOUND: "Missing", WorkerState.UNKNOWN: "Unknown",
}
"""Backend states in the words of the workers table (its ``observed_state`` column)."""


@dataclass(frozen=True)
class Finding:
    worker: str
    reason: str
    action: str | None
    """The operation kind that repairs it, or None: report only."""


def _spec_params(row: Worker) -> dict[str, object]:
    return {**row.spec, "model": row.model, "image": row.image, "name": row.name}


def _params(action: str, row: Worker) -> dict[str, object]:
    if action == flows.UPDATE:
        return _spec_params(row)
    if action == flows.REPAIR:
        return {**_spec_params(row), "state": row.state}
    return {"name": row.name}


def plan(rows: Iterable[Worker], observed: Mapping[str, WorkerStatus], busy: set[str],
         expected_hash: Callable[[Worker], str | None]) -> list[Finding]:
    """The findings of one pass; pure, so the policy is tested without any backend."""
    findings: list[Finding] = []
    for row in rows:
        if row.state not in (WorkerPhase.RUNNING, WorkerPhase.SLEEPING) or flows.subject(row.name) in busy:
            continue
        status = observed.get(row.name)
        state = status.state if status is not None else WorkerState.NOT_FOUND
        if state is WorkerState.UNKNOWN:
            detail = f" ({status.detail})" if status is not None and status.detail else ""
            findings.append(Finding(row.name, f"the backend cannot tell its state{detail}", None))
        elif state is WorkerState.NOT_FOUND:
            findings.append(Finding(row.name, "its runtime vanished", flows.REPAIR))
        elif row.state == WorkerPhase.RUNNING and state in (WorkerState.STOPPED, WorkerState.FAILED):
            detail = f" ({status.detail})" if status is not None and status.detail else ""
            findings.append(Finding(row.name, f"its runtime {state} behind our back{detail}", flows.WAKE))
        elif row.state == WorkerPhase.SLEEPING and state in (WorkerState.RUNNING, WorkerState.STARTING):
            findings.append(Finding(row.name, "it runs while it should sleep", flows.SLEEP))
        elif row.state == WorkerPhase.RUNNING and status is not None and status.spec_hash is not None:
            wanted = expected_hash(row)
            if wanted is not None and status.spec_hash != wanted:
                image = f" (runs {status.image}, wants {row.image})" if status.image != row.image else ""
                findings.append(Finding(row.name, f"it runs another spec{image}", flows.UPDATE))
    return findings


@dataclass
class ReconcileReport:
    workers: int = 0
    observed: int = 0
    findings: list[Finding] = field(default_factory=list)
    started: dict[str, int] = field(default_factory=dict)
    """Worker → the repair operation started for it."""
    refused: list[str] = field(default_factory=list)
    """Workers an operation took between the read and the submit."""
    error: str | None = None
    """Which backends could not list (their workers were left alone this pass)."""
    elapsed_ms: float = 0.0


class Reconciler:
    def __init__(self, services: Services, engine: Engine) -> None:
        self.services = services
        self.engine = engine
        self._reported: set[Finding] = set()

    async def expected_hash(self, row: Worker) -> str | None:
        try:
            storage = await worker_storage(self.services, self.services.store, row.name)
            return worker_spec(self.services, row.name, WorkerParams.of(_spec_params(row)), storage).spec_hash
        except (BackendError, EngineError, KeyError, ValueError):
            return None  # a spec we cannot rebuild is not drift we can repair

    async def reconcile_once(self) -> ReconcileReport:
        started = time.perf_counter()
        report = ReconcileReport()
        store = self.services.store
        listed: dict[str, dict[str, WorkerStatus]] = {}
        errors = []
        for kind, backend in self.services.backends.items():
            try:
                listed[kind] = {status.name: status for status in await backend.list()}
            except BackendError as exc:
                errors.append(f"the {kind} backend cannot list its workers: {describe(exc)}")
        if errors:
            report.error = "; ".join(errors)
            log.warning("reconciler: %s", report.error)
        if not listed:
            return report
        # The table is read after the backends, never before: an operation finishing in between then
        # makes the row newer than the observation, and the repair that follows is a no-op (waking a
        # worker that runs, stopping one that is stopped), never undoing what a person just asked.
        # Each worker is compared with its own backend's list only, and a worker whose backend did
        # not answer (or is not served here) is left alone: absent from a list nobody read is no
        # evidence that its runtime vanished.
        all_rows = await store.workers.all()
        stranded = {row.name for row in self.services.stranded(all_rows)}
        rows = [row for row in all_rows if row.backend in listed and row.name not in stranded]
        observed = {row.name: listed[row.backend][row.name] for row in rows if row.name in listed[row.backend]}
        busy = await store.ops.active_subjects()
        report.workers, report.observed = len(rows), len(observed)
        hashes = {row.name: await self.expected_hash(row) for row in rows}
        report.findings = plan(rows, observed, busy, lambda row: hashes.get(row.name))
        by_name = {row.name: row for row in rows}
        for finding in report.findings:
            if finding.action is None:
                continue
            row = by_name[finding.worker]
            params = _params(finding.action, row)
            try:
                submission = await self.engine.submit(finding.action, flows.subject(row.name), params,
                                                      actor=self.services.bot_user_id)
            except EngineError as exc:
                log.debug("reconciler: not repairing %s: %s", row.name, describe(exc))
                report.refused.append(row.name)
                continue
            report.started[row.name] = submission.op.op_id
        now_seen = {row.name: OBSERVED[observed[row.name].state if row.name in observed else WorkerState.NOT_FOUND]
                    for row in rows}
        changed = {name: state for name, state in now_seen.items() if by_name[name].observed_state != state}
        if changed:
            await store.workers.set_observed(changed)
        await self._report(report)
        report.elapsed_ms = (time.perf_counter() - started) * 1000
        return report

    async def _report(self, report: ReconcileReport) -> None:
        current = set(report.findings)
        new = [f for f in report.findings if f not in self._reported or f.worker in report.started]
        self._reported = current
        if not new:
            return
        lines = []
        for finding in new:
            op_id = report.started.get(finding.worker)
            if op_id is not None:
                outcome, decision = f"repairing with {finding.action} (operation {op_id})", "repairing"
            elif finding.action is None:
                outcome, decision = "reported only", "reported"
            else:
                outcome, decision = "busy, left for the next pass", "busy"
            lines.append(f"{finding.worker}: {finding.reason}; {outcome}")
            await self.services.store.audit.add(actor=self.services.bot_user_id, command="reconcile",
                                                decision=decision, subject=flows.subject(finding.worker),
                                                op_id=op_id, detail=finding.reason)
            log.info("reconciler: %s", lines[-1])
        await post_report(self.services, "Drift reconciler:\n" + "\n".join(lines))
