"""The team flows' step lists, for any team: unique step names, a valid dependency graph, the order
that matters (rooms released before workers go; the row forgotten last), and bad names refused
before any step exists."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hiclaw_bot.engine.steps import dependencies
from hiclaw_bot.flows import team as teams
from hiclaw_bot.flows.names import InvalidName
from storage import Operation

NAMES = st.from_regex(r"[a-z0-9][a-z0-9-]{0,12}", fullmatch=True)
SERVICES: Any = SimpleNamespace(domain="example.org")


def op(kind: str, **params: Any) -> Operation:
    return Operation(op_id=1, kind=kind, subject=f"team:{params['name']}", params=params, actor=None, room_id=None,
                     source_event_id=None, state="running", error=None, failed_step=None, progress_event_id=None,
                     created_at=0.0, updated_at=0.0, finished_at=None)


def before(deps: dict[str, tuple[str, ...]], first: str, later: str) -> bool:
    """Whether ``first`` is a (transitive) prerequisite of ``later``."""
    todo, seen = list(deps[later]), set()
    while todo:
        name = todo.pop()
        if name == first:
            return True
        if name not in seen:
            seen.add(name)
            todo.extend(deps[name])
    return False


@given(team=NAMES, leader=NAMES, members=st.lists(NAMES, max_size=6, unique=True))
def test_create_steps_form_a_valid_graph(team: str, leader: str, members: list[str]) -> None:
    members = [m for m in members if m != leader]
    steps = teams.create_steps(SERVICES, None, op(teams.CREATE, name=team, leader=leader, workers=members))  # type: ignore[arg-type]
    deps = dependencies(steps)
    every_member = ["leader", *(f"member_{m}" for m in members)]
    assert all(deps[name] == ("register",) for name in every_member), "members start together"
    assert all(before(deps, name, "join") for name in [*every_member, "team_room", "leader_dm"])
    assert before(deps, "join", "leader_config")
    assert [s.name for s in steps][-1] == "record"


@given(team=NAMES, leader=NAMES, members=st.lists(NAMES, max_size=6, unique=True), with_workers=st.booleans())
@example(team="red", leader="boss", members=["leader"], with_workers=False)  # no step name clash with the leader's
@example(team="red", leader="boss", members=["leader"], with_workers=True)
def test_delete_steps_release_the_rooms_first_and_forget_last(team: str, leader: str, members: list[str],
                                                              with_workers: bool) -> None:
    members = [m for m in members if m != leader]
    steps = teams.delete_steps(SERVICES, None, op(teams.DELETE, name=team, leader=leader, workers=members,  # type: ignore[arg-type]
                                                  with_workers=with_workers))
    deps = dependencies(steps)
    verb = "delete" if with_workers else "detach"
    workers = [f"{verb}_leader", *(f"{verb}_member_{m}" for m in members)]
    assert all(before(deps, room, w) for room in ("remove_team_room", "remove_leader_dm") for w in workers)
    assert all(before(deps, f"{verb}_member_{m}", f"{verb}_leader") for m in members), "the leader goes last"
    assert all(before(deps, w, "forget") for w in workers)


@pytest.mark.parametrize("params", [
    {"name": "Red", "leader": "lead"},
    {"name": "red", "leader": "Lead"},
    {"name": "red", "leader": "lead", "workers": ["ok", "not ok"]},
])
def test_bad_names_are_refused_before_any_step(params: dict[str, Any]) -> None:
    with pytest.raises(InvalidName):
        teams.create_steps(SERVICES, None, op(teams.CREATE, **params))  # type: ignore[arg-type]


def test_the_leader_is_not_also_a_member() -> None:
    with pytest.raises(ValueError, match="distinct"):
        teams.create_steps(SERVICES, None, op(teams.CREATE, name="red", leader="a", workers=["b", "a"]))  # type: ignore[arg-type]
