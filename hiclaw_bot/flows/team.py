"""Team operations as ordered steps (ARCHITECTURE §4), on the subject ``team:<name>``.

``team.create``::

    register ─┬► leader ──────┬──────────────────► join ─► leader_config ─► record
              ├► member_<a> ──┤                    ▲
              ├► member_<b> ──┘                    │
              ├► team_room ─┬► power ──────────────┘
              ├► leader_dm ─┘
              └► shared

The leader and every member are child ``worker.create`` operations started side by side (each holds
its own worker and its own engine slot), so a team of six costs about one worker's creation, not six.
The rooms are made meanwhile, inviting the workers by name before their accounts exist (the
homeserver allows it); each worker joins with its own token once every member is done.

``team.delete`` releases the two rooms (renamed "[deleted] …", workers kicked, aliases removed;
the history stays), then either deletes the workers through child ``worker.delete`` operations
(``--with-workers``) or detaches them: they stay as teamless workers and the leader becomes a
plain worker. The shared folder ``teams/<name>/`` is **kept**: it holds the team's work, and a
team created again under the same name finds it.

``team.add`` and ``team.remove`` move one worker in or out (``team.add`` may also create it, for
``!worker create NAME --team TEAM``), then refresh the team room, the power levels and the leader's
config, which are all computed from the store when they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from hiclaw_bot.engine import Engine, Remove, Step
from hiclaw_bot.flows.params import TeamParams
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.team_members import Attach, CreateMember, DeleteMember, Detach, LeaderConfig
from hiclaw_bot.flows.team_steps import (
    ACTIVE,
    DELETING,
    Forget,
    Join,
    LeaveTeamRoom,
    Register,
    SetState,
    SharedFolder,
    TeamRoom,
)
from storage import Operation

CREATE = "team.create"
ADD = "team.add"
REMOVE = "team.remove"
DELETE = "team.delete"


def subject(team: str) -> str:
    return f"team:{team}"


def params_of(op: Operation) -> TeamParams:
    """A team operation's params, typed (names checked: a bad one is refused before any step exists)."""
    return TeamParams.of(op.params)


def create_steps(services: Services, engine: Engine, op: Operation) -> Sequence[Step]:
    params = params_of(op)
    team, leader, members = params.name, params.needs_leader(), list(params.workers)
    if leader in members or len(set(members)) != len(members):
        raise ValueError("the leader and the members must be distinct workers")
    template = {key: value for key, value in (("model", params.model), ("image", params.image),
                                              ("command", list(params.command or ())), ("runtime", params.runtime))
                if value}
    leader_template = {**template, **({"runtime": params.leader_runtime} if params.leader_runtime else {})}
    workers = [CreateMember(services, engine, team, w, leader=leader, template=leader_template if w == leader
                            else template, adopt=w in params.adopt, after=("register",)) for w in [leader, *members]]
    everyone = tuple(step.name for step in workers)
    return [
        Register(services, team, params),
        *workers,
        SharedFolder(services, team, after=("register",)),
        TeamRoom(services, team, dm=False, after=("register",)),
        TeamRoom(services, team, dm=True, after=("register",)),
        Join(services, team, after=(*everyone, "team_room", "leader_dm")),
        LeaderConfig(services, team),
        SetState(services, team, ACTIVE, "record"),
    ]


def add_steps(services: Services, engine: Engine, op: Operation) -> Sequence[Step]:
    """An existing worker joins; or, with ``create`` (the params of a ``worker.create``), a new one
    is made in the team (``!worker create NAME --team TEAM``)."""
    params = params_of(op)
    team, worker = params.name, params.needs_worker()
    joining: Step = Attach(services, team, worker)
    if params.create is not None:
        joining = CreateMember(services, engine, team, worker, leader=params.needs_leader(), template=params.create,
                               adopt=False)
    return [joining, TeamRoom(services, team, dm=False), Join(services, team),
            LeaderConfig(services, team)]


def remove_steps(services: Services, op: Operation) -> Sequence[Step]:
    params = params_of(op)
    team, worker, leader = params.name, params.needs_worker(), params.needs_leader()
    return [LeaveTeamRoom(services, team, worker), Detach(services, team, worker, leader=leader),
            LeaderConfig(services, team)]


def delete_steps(services: Services, engine: Engine, op: Operation) -> Sequence[Step]:
    params = params_of(op)
    team, leader, members = params.name, params.needs_leader(), list(params.workers)
    rooms = ("remove_team_room", "remove_leader_dm")
    steps: list[Step] = [
        SetState(services, team, DELETING, "mark"),
        Remove(TeamRoom(services, team, dm=False), after=("mark",)),
        Remove(TeamRoom(services, team, dm=True), after=("mark",)),
    ]
    if params.with_workers:
        gone = [DeleteMember(services, engine, team, w, leader=False, after=rooms) for w in members]
        steps += [*gone, DeleteMember(services, engine, team, leader, leader=True,
                                      after=tuple(s.name for s in gone) or rooms)]
    else:
        kept = [Detach(services, team, w, leader=leader, after=rooms) for w in members]
        steps += [*kept, Detach(services, team, leader, leader=leader, after=tuple(s.name for s in kept) or rooms)]
    return [*steps, Forget(services, team)]


def register_team_flows(engine: Engine, services: Services) -> None:
    """Teach the engine the team operations, bound to ``services`` (and to the engine itself, which
    runs the member workers' operations)."""
    engine.register(CREATE, partial(create_steps, services, engine), parse=TeamParams.of)
    engine.register(ADD, partial(add_steps, services, engine), parse=TeamParams.of)
    engine.register(REMOVE, partial(remove_steps, services), parse=TeamParams.of)
    engine.register(DELETE, partial(delete_steps, services, engine), supersedes_failed=True, parse=TeamParams.of)
