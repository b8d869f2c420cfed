"""Prometheus metrics of the bot, in a registry of its own (no process-global state to leak
between tests or to collide with a host application's metrics).

Two kinds of numbers, fed two ways:

* what *happens* (operations finishing, step and external-call latencies, failures, retries) is
  counted from the engine's progress events, through a synchronous listener: nothing polls, and a
  counter is current the moment an operation ends;
* what *is* (operations by kind and state, workers by state) is read at scrape time with one
  ``GROUP BY`` query each, so a scrape costs the same for ten workers or ten thousand and the
  numbers survive a restart (they live in the database, not in this process).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from hiclaw_bot.engine import EventKind, ProgressEvent
from storage import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_OUTCOMES = {
    EventKind.OP_SUCCEEDED: "succeeded", EventKind.OP_FAILED: "failed",
    EventKind.OP_COMPENSATED: "compensated", EventKind.OP_CANCELLED: "cancelled",
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.operations = Gauge("hiclaw_operations", "Operations in the database, by kind and state",
                                ["kind", "state"], registry=r)
        self.workers = Gauge("hiclaw_workers", "Workers by state", ["state"], registry=r)
        self.finished = Counter("hiclaw_operations_finished_total",
                                "Operations that reached an outcome in this process, by kind and outcome",
                                ["kind", "outcome"], registry=r)
        self.step_seconds = Histogram("hiclaw_step_duration_seconds", "Duration of completed steps",
                                      ["kind", "step"], buckets=_STEP_BUCKETS, registry=r)
        self.call_seconds = Histogram("hiclaw_external_call_duration_seconds",
                                      "Latency of calls to external systems, by system",
                                      ["system"], buckets=_CALL_BUCKETS, registry=r)
        self.step_failures = Counter("hiclaw_step_failures_total", "Steps that gave up, by error class",
                                     ["kind", "step", "error_class"], registry=r)
        self.step_retries = Counter("hiclaw_step_retries_total", "Step attempts retried after a transient error",
                                    ["kind", "step"], registry=r)

    def observe(self, event: ProgressEvent) -> None:
        """The engine listener: cheap, synchronous, never raises on a well-formed event."""
        for system, seconds in event.calls:
            self.call_seconds.labels(system).observe(seconds)
        kind, step = event.op_kind, event.step or ""
        if event.kind is EventKind.STEP_DONE and event.duration_ms is not None:
            self.step_seconds.labels(kind, step).observe(event.duration_ms / 1000)
        elif event.kind is EventKind.STEP_FAILED:
            self.step_failures.labels(kind, step, event.error_class or "unknown").inc()
        elif event.kind is EventKind.STEP_RETRYING:
            self.step_retries.labels(kind, step).inc()
        elif (outcome := _OUTCOMES.get(event.kind)) is not None:
            self.finished.labels(kind, outcome).inc()

    async def refresh(self, store: Store) -> None:
        """Read the state gauges from the database (two GROUP BY queries)."""
        ops = await store.summary.ops_by_kind_state()
        workers = await store.summary.workers_by_state()
        # Clear and set with no await in between: a concurrent scrape never sees a half-set gauge.
        self.operations.clear()
        for (kind, state), count in ops.items():
            self.operations.labels(kind, state).set(count)
        self.workers.clear()
        for state, count in workers.items():
            self.workers.labels(state).set(count)

    async def render(self, store: Store) -> bytes:
        await self.refresh(store)
        return generate_latest(self.registry)
