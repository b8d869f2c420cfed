"""Gateway authorization under contention: 50 concurrent authorizations on one AI route.

Starts the Higress console simulator (real HTTP, OpenAPI-validated, console bug #744 on), creates 50
consumers, then authorizes all of them on the default AI route at once through one client. A second
run adds a second client (another process, as far as the lock is concerned) doing the same with 50
other consumers, so optimistic-version conflicts really happen.
Prints one JSON object (last line). Targets: all 50 in the allow list, at most 100 PUTs.

    .venv/bin/python bench/gateway.py [consumers]
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hiclaw_bot.clients.higress import HigressClient
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator

CONSUMERS = int(sys.argv[1]) if len(sys.argv) > 1 else 50
ROUTE = "default"


PATH = f"/v1/ai/routes/{ROUTE}"


async def run(writers: int) -> dict[str, object]:
    """``writers`` clients authorize ``CONSUMERS`` consumers each, all at once, on one route."""
    async with HigressConsoleSimulator() as sim:
        clients = [HigressClient(sim.url, "admin", "bench-password") for _ in range(writers)]
        names = [[f"worker-w{w}-{i:03d}" for i in range(CONSUMERS)] for w in range(writers)]
        pairs = [(c, n) for c, ns in zip(clients, names, strict=True) for n in ns]
        try:
            await asyncio.gather(*(c.ensure_consumer(n, f"key-{n}") for c, n in pairs))
            gets_before = sim.count("GET", PATH)
            started = time.perf_counter()
            await asyncio.gather(*(c.authorize(n, [ROUTE]) for c, n in pairs))
            wall_ms = (time.perf_counter() - started) * 1000
        finally:
            for client in clients:
                await client.close()
        everyone = {n for ns in names for n in ns}
        allowed = set(sim.ai_routes[ROUTE]["authConfig"]["allowedConsumers"])
        return {
            "consumers": len(everyone),
            "authorized": len(everyone & allowed),
            "data_plane_authorized": sum(sim.is_authorized(f"key-{n}", ai_route=ROUTE) for n in everyone),
            "puts": sim.count("PUT", PATH),
            "gets": sim.count("GET", PATH) - gets_before,
            "retries": sum(c.stats.retries for c in clients),
            "conflicts": sum(c.stats.conflicts for c in clients),
            "violations": len(sim.violations),
            "wall_ms": round(wall_ms, 1),
        }


async def main() -> dict[str, object]:
    result = await run(writers=1)
    result["two_writers"] = await run(writers=2)
    result["ok"] = result["authorized"] == CONSUMERS and int(str(result["puts"])) <= 100
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(main()), sort_keys=True))
