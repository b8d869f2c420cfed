"""SIGKILL the bot at every step boundary of ``team.create`` and ``team.delete``; afterwards every
resource exists exactly once (or, after a delete, not at all, but for what is kept by design).

One team per test walks through all the boundaries of its operation: each run of the child process
is killed at the next boundary not killed before (``tests.chaos.team_app``), the next run resumes,
until the operation succeeds. A duplicate made by any of the crashes would still be there at the
end, where it is counted at the servers: rooms on Synapse (admin API, by alias and by name), power
levels, files in the object store, runtimes on this machine; and the worker rows in the database.
Members run ``sh`` with readiness "the process runs", so the walk costs process starts, not agents.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.flows import names
from hiclaw_bot.flows import team as teams
from hiclaw_bot.types import RoomAlias, RoomId, UserId
from storage import Operation, Store
from tests.chaos.harness import POINTS, child_config, run_app
from tests.fixtures.processes import runtimes
from tests.fixtures.synapse import SynapseEnv, unique


def write_config(path: Path, synapse: SynapseEnv, gateway: HigressConsoleSimulator, tmp: Path) -> Config:
    document = child_config(synapse, tmp, gateway,
                            backend={"kind": "process", "instance": "team-crash", "ready_check": "running"},
                            lifecycle={"ready_timeout": "20s"})
    path.write_text(json.dumps(document))
    return Config.model_validate(document)


class Walk:
    """Runs one team operation again and again, a kill at each boundary, until it succeeds."""

    def __init__(self, synapse: SynapseEnv, config: Path, team: str, leader: str, member: str) -> None:
        self.synapse = synapse
        self.config = config
        self.argv = [team, leader, member]

    async def run(self, kind: str, *extra: str, markers: Path | None = None) -> int:
        env = {}
        if markers is not None:
            markers.mkdir(exist_ok=True)  # noqa: ASYNC240 -- a test directory, once per run
            env["HICLAW_TEAM_WALK"] = str(markers)
        return await run_app("team_app", str(self.config), kind, *self.argv, *extra,
                             token=self.synapse.admin_token, env=env)

    async def through_every_boundary(self, kind: str, *extra: str, markers: Path) -> int:
        """Run until success; return how many runs were killed."""
        kills = 0
        while await self.run(kind, *extra, markers=markers) == -signal.SIGKILL:
            kills += 1
            assert kills < 60, "the walk does not end"
        return kills


def boundaries(config: Config, kind: str, params: dict[str, object]) -> set[str]:
    """Every step boundary the walk must have killed at, from the flow's own step list."""
    op = Operation(op_id=0, kind=kind, subject="", params=params, actor=None, room_id=None, source_event_id=None,
                   state="running", error=None, failed_step=None, progress_event_id=None, created_at=0.0,
                   updated_at=0.0, finished_at=None)
    builder = teams.create_steps if kind == teams.CREATE else teams.delete_steps
    services = SimpleNamespace(domain=config.matrix.server_name)  # names only: the steps are never run
    steps = builder(services, None, op)  # type: ignore[arg-type]
    return {f"{step.name}.{point}" for step in steps for point in POINTS}


async def check_created(synapse: SynapseEnv, config: Config, tmp: Path, team: str, leader: str,
                        member: str) -> RoomId:
    domain = synapse.server_name
    async with MatrixAdmin(synapse.url, server_name=domain, access_token=synapse.admin_token) as admin:
        room = await admin.resolve_alias(RoomAlias(names.full_alias(names.team_room_alias(team), domain)))
        dm = await admin.resolve_alias(RoomAlias(names.full_alias(names.team_leader_dm_alias(team), domain)))
        leader_room = await admin.resolve_alias(RoomAlias(names.full_alias(names.worker_room_alias(leader), domain)))
        member_room = await admin.resolve_alias(RoomAlias(names.full_alias(names.worker_room_alias(member), domain)))
        assert await admin.rooms_of(UserId(f"@{leader}:{domain}")) == {leader_room, room, dm}
        assert await admin.rooms_of(UserId(f"@{member}:{domain}")) == {member_room, room}
        titled = [r for r in await admin.rooms_of(synapse.admin_user_id)
                  if (await admin.state(r, "m.room.name") or {}).get("name") in (f"Team: {team}",
                                                                                   f"Leader DM: {team}")]
        assert sorted(titled) == sorted([room, dm]), "one team room and one leader DM, no copies"
        levels = (await admin.state(room, "m.room.power_levels") or {}).get("users", {})
        assert (levels[f"@{leader}:{domain}"], levels[f"@{member}:{domain}"]) == (100, 0)
        # The admin here is the bot, the rooms' creator: unlisted when creators are privileged (MSC4289).
        assert levels.get(synapse.admin_user_id, 100) == 100
    # A write the SIGKILL cut short leaves its ``.hiclaw-tmp-*`` file: a reserved name no reader of
    # the store sees (LocalObjectStore.list skips it); what the store holds is the rest.
    keeps = sorted(p.relative_to(tmp / "objects").as_posix() for p in (tmp / "objects" / "teams" / team).rglob("*")
                   if not p.name.startswith(".hiclaw-tmp"))
    assert keeps == [f"teams/{team}/shared", *(f"teams/{team}/shared/{f}{k}" for f in ("knowledge", "projects",
                     "tasks") for k in ("", "/.keep"))]
    store = await Store.open(config.database_path)
    try:
        rows = {w.name: w for w in await store.workers.all(team=team)}
        assert sorted(rows) == sorted([leader, member])
        assert {w.state for w in rows.values()} == {"Running"}
        assert (await store.teams.get(team)).state == "Active"  # type: ignore[union-attr]
    finally:
        await store.close()
    counts = len(runtimes(config.data_dir, leader)), len(runtimes(config.data_dir, member))
    assert counts == (1, 1), "one runtime each: none orphaned"
    return room


async def check_deleted(synapse: SynapseEnv, config: Config, tmp: Path, team: str, room: RoomId,
                        workers: list[str], *, with_workers: bool) -> None:
    domain = synapse.server_name
    async with MatrixAdmin(synapse.url, server_name=domain, access_token=synapse.admin_token) as admin:
        for localpart in (names.team_room_alias(team), names.team_leader_dm_alias(team)):
            with pytest.raises(NotFoundError):
                await admin.resolve_alias(RoomAlias(names.full_alias(localpart, domain)))
        assert (await admin.state(room, "m.room.name") or {}).get("name") == f"[deleted] Team: {team}"
        for worker in workers:
            assert room not in await admin.rooms_of(UserId(f"@{worker}:{domain}"))
    assert (tmp / "objects" / "teams" / team / "shared" / "tasks" / ".keep").exists(), "kept by design"
    store = await Store.open(config.database_path)
    try:
        assert await store.teams.get(team) is None
        rows = [await store.workers.get(w) for w in workers]
    finally:
        await store.close()
    if with_workers:
        assert rows == [None, None]
        assert [runtimes(config.data_dir, w) for w in workers] == [[], []]
    else:
        assert [(r.team, r.role) for r in rows if r is not None] == [(None, "worker")] * 2
        assert [len(runtimes(config.data_dir, w)) for w in workers] == [1, 1]


@pytest.mark.parametrize("with_workers", [True, False], ids=["with-workers", "keeping-workers"])
async def test_kill_at_every_boundary_of_a_team_create_and_delete(synapse: SynapseEnv,
                                                                  gateway: HigressConsoleSimulator,
                                                                  tmp_path: Path, with_workers: bool) -> None:
    team, leader, member = unique("t"), unique("l"), unique("m")
    config = write_config(tmp_path / "config.json", synapse, gateway, tmp_path)
    walk = Walk(synapse, tmp_path / "config.json", team, leader, member)
    try:
        if with_workers:  # the create walk once; the other case starts from a plain create
            assert await walk.through_every_boundary("create", markers=tmp_path / "create") > 0
            expected = boundaries(config, teams.CREATE, {"name": team, "leader": leader, "workers": [member]})
            assert {p.name for p in (tmp_path / "create").iterdir()} == expected
        else:
            assert await walk.run("create") == 0
        room = await check_created(synapse, config, tmp_path, team, leader, member)

        extra = ("with-workers",) if with_workers else ()
        assert await walk.through_every_boundary("delete", *extra, markers=tmp_path / "delete") > 0
        expected = boundaries(config, teams.DELETE, {"name": team, "leader": leader, "workers": [member],
                                                     "with_workers": with_workers})
        assert {p.name for p in (tmp_path / "delete").iterdir()} == expected
        await check_deleted(synapse, config, tmp_path, team, room, [leader, member], with_workers=with_workers)
    finally:
        for worker in (leader, member):
            for proc in runtimes(config.data_dir, worker):
                proc.terminate()


async def test_kill_at_every_boundary_of_a_member_delete(synapse: SynapseEnv, gateway: HigressConsoleSimulator,
                                                         tmp_path: Path) -> None:
    """``worker.delete`` of a team member, killed at each boundary: it leaves the team exactly once
    (out of the team room and the leader's files) and every resource of its own is gone."""
    team, leader, member = unique("t"), unique("l"), unique("m")
    config = write_config(tmp_path / "config.json", synapse, gateway, tmp_path)
    walk = Walk(synapse, tmp_path / "config.json", team, leader, member)
    domain = synapse.server_name
    try:
        assert await walk.run("create") == 0
        room = await check_created(synapse, config, tmp_path, team, leader, member)
        assert await walk.through_every_boundary("member-delete", markers=tmp_path / "walk") > 0
        assert {p.name.split(".")[0] for p in (tmp_path / "walk").iterdir()} >= {"leave_team", "forget"}
        async with MatrixAdmin(synapse.url, server_name=domain, access_token=synapse.admin_token) as admin:
            assert room not in await admin.rooms_of(UserId(f"@{member}:{domain}"))
            assert f"@{member}:{domain}" not in (await admin.state(room, "m.room.power_levels") or {})["users"]
        leader_files = tmp_path / "objects" / "agents" / leader
        assert member not in (leader_files / "AGENTS.md").read_text()
        assert f"@{member}:{domain}" not in (leader_files / "openclaw.json").read_text()
        assert not (tmp_path / "objects" / "agents" / member).exists()
        store = await Store.open(config.database_path)
        try:
            assert await store.workers.get(member) is None
            assert [w.name for w in await store.workers.all(team=team)] == [leader]
        finally:
            await store.close()
        assert (len(runtimes(config.data_dir, leader)), runtimes(config.data_dir, member)) == (1, [])
    finally:
        for worker in (leader, member):
            for proc in runtimes(config.data_dir, worker):
                proc.terminate()
