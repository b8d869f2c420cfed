"""Leader election timings on the fake Kubernetes API server (real HTTP, schema-validated Leases).

Two electors on one Lease, with the periods given below (the production defaults are 15 s / 10 s
/ 2 s; these are scaled down so the run is short, and every result scales with them):

- ``renew_p50_ms`` / ``renew_p99_ms``: one renewal (read + resourceVersion-guarded replace);
- ``handover_ms``: a leader that stops cleanly releases the Lease; until the standby leads;
- ``takeover_s``: a leader that dies without releasing; until the standby leads (bounded below
  by ``lease_duration``: the standby may not start earlier);
- ``loss_detect_s``: the API refuses every renewal; until the leader gives up (at most
  ``renew_deadline`` after its last renewal, so before the Lease can expire for anyone else).

Prints one JSON object (last line).

    .venv/bin/python bench/failover.py [rounds]
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hiclaw_bot.leadership import LeadershipLost
from hiclaw_bot.leadership.elector import LeaseElector, LeaseSettings, coordination_api
from tests.fakes.k8s_apiserver import FakeKubeApiServer

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
NAMESPACE = "bench"
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 2.0, 1.5, 0.25


def settings(name: str, identity: str) -> LeaseSettings:
    return LeaseSettings(NAMESPACE, name, identity, LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD)


async def main() -> dict[str, object]:
    fake = FakeKubeApiServer(namespaces=(NAMESPACE,))
    await fake.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = fake.kubeconfig(Path(tmp) / "kubeconfig", NAMESPACE)
            async with coordination_api(kubeconfig=str(kubeconfig), context=None, in_cluster=False) as api:
                return await measure(api, fake)
    finally:
        await fake.stop()


async def measure(api: object, fake: FakeKubeApiServer) -> dict[str, object]:
    leader = LeaseElector(api, settings("renewals", "a"))
    await leader.acquire()
    renewals = []
    for _ in range(200):
        started = time.perf_counter()
        assert await leader.try_acquire_or_renew()
        renewals.append((time.perf_counter() - started) * 1000)
    renewals.sort()

    handovers, takeovers, detections = [], [], []
    for round_ in range(ROUNDS):
        leader, standby = LeaseElector(api, settings(f"handover-{round_}", "a")), \
            LeaseElector(api, settings(f"handover-{round_}", "b"))
        await leader.acquire()
        waiting = asyncio.ensure_future(standby.acquire())
        await asyncio.sleep(RETRY_PERIOD * 2)
        await leader.release()
        released = time.perf_counter()
        await waiting
        handovers.append((time.perf_counter() - released) * 1000)

        leader, standby = LeaseElector(api, settings(f"takeover-{round_}", "a")), \
            LeaseElector(api, settings(f"takeover-{round_}", "b"))
        await leader.acquire()
        keeper = asyncio.ensure_future(leader.hold())
        waiting = asyncio.ensure_future(standby.acquire())
        await asyncio.sleep(LEASE_DURATION)
        keeper.cancel()  # dies without releasing
        died = time.perf_counter()
        await asyncio.gather(keeper, return_exceptions=True)
        await waiting
        takeovers.append(time.perf_counter() - died)

        name = f"outage-{round_}"
        leader = LeaseElector(api, settings(name, "a"))
        await leader.acquire()
        keeper = asyncio.ensure_future(leader.hold())
        await asyncio.sleep(RETRY_PERIOD * 3)
        fake.fail("PUT", f"/leases/{name}$", 500, times=10_000)
        broken = time.perf_counter()
        try:
            await keeper
        except LeadershipLost:
            detections.append(time.perf_counter() - broken)

    return {
        "lease_duration_s": LEASE_DURATION, "renew_deadline_s": RENEW_DEADLINE, "retry_period_s": RETRY_PERIOD,
        "rounds": ROUNDS,
        "renew_p50_ms": round(statistics.median(renewals), 2),
        "renew_p99_ms": round(renewals[int(len(renewals) * 0.99) - 1], 2),
        "handover_ms": round(max(handovers), 1),
        "takeover_s": round(max(takeovers), 3),
        "takeover_min_s": round(min(takeovers), 3),
        "loss_detect_s": round(max(detections), 3) if len(detections) == ROUNDS else None,
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(asyncio.run(main())))
