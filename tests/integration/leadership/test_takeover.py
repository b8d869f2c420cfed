"""Two bot instances, one Lease: the leader acts, the standby waits; SIGKILL the leader in the
middle of an operation and the standby takes over once the Lease expires, then resumes the
operation to success from its checkpoints.

Both instances are real child processes sharing one data directory (as two replicas sharing a
volume would), talking to the session's Kubernetes API (the fake, or a cluster with ``KUBECONFIG``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from storage import Store
from tests.fixtures.k8s import KubeTarget
from tests.integration.leadership.conftest import lease_name
from tests.integration.leadership.leader_app import LEASE_DURATION, RETRY_PERIOD

ROOT = Path(__file__).resolve().parents[3]
Event = tuple[float, str, str]  # (wall-clock time, identity, event)


def read_journal(path: Path) -> list[Event]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        at, identity, event = line.split(" ", 2)
        events.append((float(at), identity, event))
    return events


def tail(path: Path) -> str:
    return path.read_text()[-3000:] if path.exists() else ""


async def until(journal: Path, wanted: Callable[[list[Event]], bool], what: str, logs: Path) -> list[Event]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = read_journal(journal)
        if wanted(events):
            return events
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}; journal: {read_journal(journal)}\n{tail(logs)}")


async def test_the_standby_takes_over_and_resumes_the_operation(kube: KubeTarget, tmp_path: Path) -> None:
    lease, db, journal, logs = lease_name(), tmp_path / "hiclaw.db", tmp_path / "journal", tmp_path / "children.log"

    async def instance(identity: str, slow: float) -> asyncio.subprocess.Process:
        with logs.open("ab") as out:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.integration.leadership.leader_app", str(kube.kubeconfig),
                kube.namespace, lease, str(db), str(journal), identity, str(slow),
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=out)

    leader = await instance("a", 120)
    standby: asyncio.subprocess.Process | None = None
    try:
        await until(journal, lambda e: any(ev[1:] == ("a", "slow-start") for ev in e), "a to start the slow step", logs)
        standby = await instance("b", 0.2)
        await until(journal, lambda e: any(ev[1:] == ("b", "standby") for ev in e), "b to wait", logs)
        await asyncio.sleep(LEASE_DURATION * 1.5)  # longer than a lease: a renews, b must stay out
        assert [ev for ev in read_journal(journal) if ev[1] == "b"][-1][2] == "standby"
        killed = time.time()
        leader.send_signal(signal.SIGKILL)
        await leader.wait()
        assert await asyncio.wait_for(standby.wait(), 60) == 0, tail(logs)
    finally:
        for process in (leader, standby):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()

    events = read_journal(journal)
    by_a = [event for at, who, event in events if who == "a"]
    by_b = [(at, event) for at, who, event in events if who == "b"]
    assert by_a == ["standby", "leader", "open", "first-start", "first-end", "slow-start"]
    assert [event for _, event in by_b] == ["standby", "leader", "open", "slow-start", "slow-end", "last-start",
                                            "last-end", "op-1-succeeded", "exit"]
    took_over = dict((event, at) for at, event in by_b)["leader"]
    # a's last renewal was at most a retry period (plus a request) before the kill; b may only
    # take over a full lease duration after it first saw that renewal.
    assert took_over - killed >= LEASE_DURATION - RETRY_PERIOD - 0.5, "b took over while a's lease was live"
    assert all(at < killed for at, who, _ in events if who == "a")
    store = await Store.open(db)
    try:
        op = await store.ops.get(1)
        assert op is not None
        assert op.state == "succeeded"
    finally:
        await store.close()
    if kube.fake is not None:
        spec = kube.fake.store.get("Lease", kube.namespace, lease)["spec"]
        assert spec["leaseTransitions"] == 1
        assert "holderIdentity" not in spec  # b released it on its clean exit
