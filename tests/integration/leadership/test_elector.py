"""The Lease elector against a real API (the fake, or a cluster): one holder at a time, expiry
measured on the standby's own clock, a clean release, and a leader that stops in time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubernetes.aio.client.exceptions import ApiException

from hiclaw_bot.leadership import LeadershipLost
from hiclaw_bot.leadership.elector import LeaseElector
from hiclaw_bot.leadership.leading import while_leading
from tests.fixtures.k8s import KubeTarget
from tests.integration.leadership.conftest import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, elector, lease_name


async def read_spec(api: Any, namespace: str, name: str) -> Any:
    return (await api.read_namespaced_lease(name, namespace)).spec


async def test_of_two_racing_candidates_exactly_one_wins(coordination: Any, kube: KubeTarget) -> None:
    for _ in range(3):
        name = lease_name()
        first, second = elector(coordination, kube.namespace, name, "a"), elector(coordination, kube.namespace,
                                                                                  name, "b")
        won = await asyncio.gather(first.try_acquire_or_renew(), second.try_acquire_or_renew())
        assert sorted(won) == [False, True]
        holder = "a" if won[0] else "b"
        spec = await read_spec(coordination, kube.namespace, name)
        assert spec.holder_identity == holder
        assert spec.lease_duration_seconds == 2
        assert spec.lease_transitions == 0


async def test_a_standby_waits_for_the_lease_to_expire_on_its_own_clock(coordination: Any, kube: KubeTarget) -> None:
    name = lease_name()
    leader, standby = elector(coordination, kube.namespace, name, "a"), elector(coordination, kube.namespace,
                                                                                name, "b")
    await leader.acquire()
    keeper = asyncio.ensure_future(leader.hold())
    deadline = time.monotonic() + 2 * LEASE_DURATION
    while time.monotonic() < deadline:  # the leader renews: the standby never gets in
        assert not await standby.try_acquire_or_renew()
        assert standby.holder == "a"
        await asyncio.sleep(RETRY_PERIOD)
    keeper.cancel()  # the leader dies without releasing
    stopped = time.monotonic()
    await asyncio.gather(keeper, return_exceptions=True)
    await standby.acquire()
    waited = time.monotonic() - stopped
    # From its last renewal (a retry period and a request before the kill) plus lease_duration.
    assert LEASE_DURATION - RETRY_PERIOD - 0.5 <= waited <= LEASE_DURATION + 1.5, waited
    spec = await read_spec(coordination, kube.namespace, name)
    assert (spec.holder_identity, spec.lease_transitions) == ("b", 1)


async def test_a_released_lease_is_taken_at_once(coordination: Any, kube: KubeTarget) -> None:
    name = lease_name()
    leader, standby = elector(coordination, kube.namespace, name, "a"), elector(coordination, kube.namespace,
                                                                                name, "b")
    await leader.acquire()
    assert not await standby.try_acquire_or_renew()
    await leader.release()
    assert not leader.is_leader
    assert await standby.try_acquire_or_renew()


async def test_the_leader_stops_its_work_when_another_holds_the_lease(coordination: Any, kube: KubeTarget) -> None:
    name = lease_name()
    leader = elector(coordination, kube.namespace, name, "a")
    started, cancelled = asyncio.Event(), asyncio.Event()
    overruns: list[str] = []

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    running = asyncio.ensure_future(while_leading(leader, work, on_overrun=lambda: overruns.append("overrun")))
    await asyncio.wait_for(started.wait(), 10)
    lease = await coordination.read_namespaced_lease(name, kube.namespace)
    assert lease.spec is not None
    lease.spec.holder_identity = "intruder"
    await coordination.replace_namespaced_lease(name, kube.namespace, lease)
    taken = time.monotonic()
    with pytest.raises(LeadershipLost, match="held by intruder"):
        await asyncio.wait_for(running, 10)
    assert cancelled.is_set()
    assert not overruns
    assert time.monotonic() - taken <= RENEW_DEADLINE  # at the next renewal, not at the deadline


async def test_the_leader_gives_up_before_its_lease_can_expire(coordination: Any, kube: KubeTarget) -> None:
    if kube.fake is None:
        pytest.skip("needs the fake API server's fault injection")
    name = lease_name()
    leader = elector(coordination, kube.namespace, name, "a")
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.Event().wait()

    running = asyncio.ensure_future(while_leading(leader, work, on_overrun=lambda: None))
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(RETRY_PERIOD * 3)
    kube.fake.fail("PUT", f"/leases/{name}$", 500, times=10_000)  # the API keeps failing renewals
    broken, seen = time.monotonic(), len(kube.fake.requests)
    with pytest.raises(LeadershipLost, match="could not renew"):
        await asyncio.wait_for(running, 10)
    gave_up = time.monotonic() - broken
    # The leader keeps trying until renew_deadline after its last renewal (sent a retry period
    # and a request or so before the outage), and stops before lease_duration lets anyone in.
    assert RENEW_DEADLINE / 2 <= gave_up < LEASE_DURATION - 0.1, gave_up
    puts = [r for r in kube.fake.requests if r.method == "PUT" and r.path.endswith(f"/leases/{name}")]
    refused = [r for r in kube.fake.requests[seen:] if r.method == "PUT" and r.path.endswith(f"/leases/{name}")]
    assert len(refused) >= 2  # it retried within the deadline rather than giving up at the first refusal
    assert puts
    assert all(r.body["metadata"].get("resourceVersion") for r in puts)


async def test_work_that_outlives_the_lease_ends_the_process(coordination: Any, kube: KubeTarget) -> None:
    name = lease_name()
    leader = elector(coordination, kube.namespace, name, "a")
    started, unhang = asyncio.Event(), asyncio.Event()
    overruns: list[float] = []

    async def hangs_on_shutdown() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await unhang.wait()  # a shutdown stuck on some call
            raise

    running = asyncio.ensure_future(while_leading(leader, hangs_on_shutdown,
                                                  on_overrun=lambda: overruns.append(time.monotonic())))
    await asyncio.wait_for(started.wait(), 10)
    lease = await coordination.read_namespaced_lease(name, kube.namespace)
    lease.spec.holder_identity = "intruder"
    await coordination.replace_namespaced_lease(name, kube.namespace, lease)
    taken = time.monotonic()
    try:
        with pytest.raises(LeadershipLost):
            await asyncio.wait_for(running, 10)
    finally:
        unhang.set()
    assert len(overruns) == 1
    assert overruns[0] - taken <= RETRY_PERIOD * 2 + (LEASE_DURATION - RENEW_DEADLINE) + 1.0


async def test_a_stale_write_loses_to_the_fresh_one(coordination: Any, kube: KubeTarget) -> None:
    """What every takeover relies on: a replace with an old resourceVersion is refused (409)."""
    name = lease_name()
    leader: LeaseElector = elector(coordination, kube.namespace, name, "a")
    await leader.acquire()
    stale = await coordination.read_namespaced_lease(name, kube.namespace)
    assert await leader.try_acquire_or_renew()
    stale.spec.holder_identity = "b"
    with pytest.raises(ApiException) as refused:
        await coordination.replace_namespaced_lease(name, kube.namespace, stale)
    assert refused.value.status == 409
