"""A child process for the team crash tests: the real worker and team flows on real services.

Usage: ``python -m tests.chaos.team_app CONFIG_JSON KIND TEAM LEADER MEMBER [with-workers]``, KIND
``create``, ``delete`` or ``member-delete`` (a ``worker.delete`` of MEMBER, which leaves the team
first), the bot's access token in ``HICLAW_TEST_BOT_TOKEN``.

With ``HICLAW_TEAM_WALK`` naming a directory, the process SIGKILLs itself at the first step boundary
(``after_intent`` or ``after_call``) of ``team.KIND`` that has no marker file there yet, writing the
marker first. Run again and again, it walks through every boundary of the operation, one kill each,
resuming what the previous run left; it exits 0 once the operation succeeds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from hiclaw_bot.engine import BoundaryHook
from hiclaw_bot.flows import team as teams
from hiclaw_bot.flows import worker as workers
from storage import Operation
from tests.chaos.child import child, report

POINTS = ("after_intent", "after_call")
LOOP = ["sh", "-c", "while true; do sleep 1; done"]


def walk(kind: str, markers: Path) -> BoundaryHook:
    def hook(op: Operation, step: str, at: str) -> None:
        if op.kind != kind or at not in POINTS:
            return
        marker = markers / f"{step}.{at}"
        if marker.exists():
            return
        marker.write_text(f"{op.op_id}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    return hook


async def main(config_path: str, kind: str, team: str, leader: str, member: str, with_workers: bool) -> int:
    walk_dir = os.environ.get("HICLAW_TEAM_WALK")
    op_kind = workers.DELETE if kind == "member-delete" else f"team.{kind}"
    async with child(config_path, walk(op_kind, Path(walk_dir)) if walk_dir else None) as run:
        engine, store = run.engine, run.store
        workers.register_worker_flows(engine, run.services)
        teams.register_team_flows(engine, run.services)
        await engine.start()
        subject = workers.subject(member) if kind == "member-delete" else teams.subject(team)
        holder = await store.ops.holder(subject)
        if holder is not None and holder.state == "running":
            op_id = holder.op_id
        elif kind == "member-delete":
            row = await store.workers.get(member)
            assert row is not None, f"no worker {member} to delete"
            params = {**row.spec, "model": row.model, "image": row.image, "name": member}
            op_id = (await engine.submit(workers.DELETE, subject, params)).op.op_id
        else:
            params: dict[str, Any] = {"name": team, "leader": leader, "workers": [member]}
            if kind == "create":
                params.update(model="qwen-max", image="hiclaw/worker-agent:1", command=LOOP)
            else:
                params["with_workers"] = with_workers
            op_id = (await engine.submit(f"team.{kind}", teams.subject(team), params)).op.op_id
        return report([await engine.wait(op_id)])


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(asyncio.run(main(args[0], args[1], args[2], args[3], args[4], args[5:] == ["with-workers"])))
