"""Team creation on the local stack (real Synapse, SeaweedFS when installed, the gateway simulator)
with the process backend running the reference agent: a team of 1 leader + 5 workers.

Each round creates a team (``team.create``: six child ``worker.create`` operations side by side,
then the team room, the leader's DM, power levels, the leader's config), then deletes it with its
workers. Reported, as medians over the rounds:

* ``team_create_ms``: wall time from submitting ``team.create`` to its success (target ≤ 3000 ms);
* ``external_ms``: the time spent inside external calls — Matrix, gateway, object store, backend,
  and waiting for agents to boot — summed over the team operation and all six worker operations,
  from the per-step timings the engine records;
* ``overhead_ratio`` = ``team_create_ms / external_ms``: wall time per unit of external work. Above
  1 the bot adds time of its own; below 1 the parallel members save more than the engine costs;
* ``slowest_worker_ms``: the slowest member's own ``worker.create`` wall time, and
  ``vs_slowest_worker`` = ``team_create_ms / slowest_worker_ms``: what the team costs beyond its
  slowest member (1.0 would be perfect parallelism and free rooms);
* ``team_delete_ms``: wall time of ``team.delete --with-workers``;
* ``slowest_step_ms``: per step, the longest any member (``member:…``) took, and the team
  operation's own steps (``team:…``): where the wall time goes.

Prints one JSON object as its last line.
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

from hiclaw_bot.app import App, running
from hiclaw_bot.devstack.stack import LocalStack
from hiclaw_bot.flows import team as teams
from hiclaw_bot.flows import worker as workers

ROUNDS = 3
MEMBERS = 5


async def external_and_wall(app: App, op_id: int) -> tuple[float, float]:
    """An operation's summed external ms, and its wall ms (created to finished)."""
    op = await app.store.ops.get(op_id)
    assert op is not None
    assert op.finished_at is not None
    steps = await app.store.steps.of(op_id)
    return sum(s.external_ms for s in steps), (op.finished_at - op.created_at) * 1000


async def one_round(app: App, index: int) -> dict[str, float]:
    team, leader = f"bench-{index}", f"bench-{index}-lead"
    members = [f"bench-{index}-w{i}" for i in range(MEMBERS)]
    started = time.perf_counter()
    sub = await app.engine.submit(teams.CREATE, teams.subject(team), {
        "name": team, "leader": leader, "workers": members, "model": "qwen-max",
        "image": "hiclaw/worker-agent:latest"})
    op = await app.engine.wait(sub.op.op_id)
    wall = (time.perf_counter() - started) * 1000
    assert op.state == "succeeded", (op.failed_step, op.error)
    external, _ = await external_and_wall(app, op.op_id)
    child_walls = []
    slowest_step: dict[str, float] = {}
    for worker in [leader, *members]:
        [child] = await app.store.ops.find(subject=workers.subject(worker), limit=1)
        child_external, child_wall = await external_and_wall(app, child.op_id)
        external += child_external
        child_walls.append(child_wall)
        for step in await app.store.steps.of(child.op_id):
            slowest_step[step.name] = max(slowest_step.get(step.name, 0.0), step.duration_ms or 0.0)
    team_steps: dict[str, float] = {}
    for s in await app.store.steps.of(op.op_id):  # member steps are named after the member: keep the slowest
        key = s.name.split(f"_{team}")[0]
        team_steps[key] = max(team_steps.get(key, 0.0), s.duration_ms or 0.0)

    started = time.perf_counter()
    sub = await app.engine.submit(teams.DELETE, teams.subject(team), {
        "name": team, "leader": leader, "workers": members, "with_workers": True})
    deleted = await app.engine.wait(sub.op.op_id)
    assert deleted.state == "succeeded", (deleted.failed_step, deleted.error)
    return {"team_create_ms": wall, "external_ms": external, "slowest_worker_ms": max(child_walls),
            "team_delete_ms": (time.perf_counter() - started) * 1000,
            **{f"member:{k}": v for k, v in slowest_step.items()}, **{f"team:{k}": v for k, v in team_steps.items()}}


async def main() -> dict[str, object]:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalStack(Path(tmp) / "stack", bcrypt_rounds=4) as stack:
            backend = stack.config.backend.model_copy(update={"kind": "process"})
            config = stack.config.model_copy(update={"backend": backend})
            async with running(config) as app:
                rounds = [await one_round(app, i) for i in range(ROUNDS)]
                left = await app.services.backend.list()
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    return {
        "team": f"1 leader + {MEMBERS} workers",
        "rounds": ROUNDS,
        "team_create_ms": round(median["team_create_ms"], 1),
        "team_create_max_ms": round(max(r["team_create_ms"] for r in rounds), 1),
        "external_ms": round(median["external_ms"], 1),
        "overhead_ratio": round(median["team_create_ms"] / median["external_ms"], 4),
        "slowest_worker_ms": round(median["slowest_worker_ms"], 1),
        "vs_slowest_worker": round(median["team_create_ms"] / median["slowest_worker_ms"], 3),
        "team_delete_ms": round(median["team_delete_ms"], 1),
        "runtimes_left": len(left),
        "slowest_step_ms": {key: round(value) for key, value in median.items() if ":" in key},
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
