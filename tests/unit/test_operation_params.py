"""Operations' typed params: an old row's missing keys take defaults, a round of JSON changes
nothing, and params a flow could not run are refused when submitted, before anything is recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hiclaw_bot.engine import Done, Engine, FuncStep, StepContext
from hiclaw_bot.flows.names import InvalidName
from hiclaw_bot.flows.params import HumanParams, InvalidParams, SleepParams, TeamParams, WakeParams, WorkerParams
from hiclaw_bot.types import Role, WorkerPhase
from storage import Operation, Store

NAMES = st.from_regex(r"[a-z0-9][a-z0-9-]{0,12}", fullmatch=True)
TEXT = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)


def test_an_old_row_with_only_a_name_loads_with_defaults() -> None:
    params = WorkerParams.of({"name": "alice"})
    assert (params.model, params.image, params.runtime, params.role) == (None, None, "reference", Role.WORKER)
    assert (params.skills, params.mcp, dict(params.env), params.state) == ((), (), {}, None)
    assert SleepParams.of({"name": "alice"}).idle_s is None
    assert WakeParams.of({"name": "alice"}).missed is None
    assert TeamParams.of({"name": "red"}).workers == ()
    assert HumanParams.of({"name": "bob"}).teams is None


@given(name=NAMES, model=TEXT, team=st.none() | NAMES, role=st.sampled_from(list(Role)),
       skills=st.lists(TEXT, max_size=3), env=st.dictionaries(TEXT, TEXT, max_size=3),
       idle=st.none() | st.integers(0, 10**6), cpus=st.none() | st.sampled_from(["0.5", "500m", 2]))
def test_worker_params_survive_the_store(name: str, model: str, team: str | None, role: Role, skills: list[str],
                                         env: dict[str, str], idle: int | None, cpus: Any) -> None:
    given_params = {"name": name, "model": model, "image": "img", "team": team, "role": role, "skills": skills,
                    "env": env, "idle_timeout": idle, "cpus": cpus}
    stored = json.loads(json.dumps(given_params))
    assert WorkerParams.of(stored) == WorkerParams.of(given_params)
    parsed = WorkerParams.of(stored)
    assert parsed.spec == stored, "the row records the params as they were submitted"
    assert parsed.cpus == (None if cpus is None else str(cpus))
    assert parsed.leads is (role is Role.TEAM_LEADER and team is not None)


@pytest.mark.parametrize("params", [
    {}, {"name": "Bad Name"}, {"name": "alice", "env": {"A": 1}}, {"name": "alice", "skills": "file-sync"},
    {"name": "alice", "role": "boss"}, {"name": "alice", "state": "Asleep"}, {"name": "alice", "idle_timeout": "2h"},
])
def test_malformed_worker_params_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises((InvalidParams, InvalidName)):
        WorkerParams.of(params)


def test_a_repair_reads_its_phase_typed() -> None:
    assert WorkerParams.of({"name": "alice", "state": "Sleeping"}).state is WorkerPhase.SLEEPING


async def test_the_engine_refuses_params_its_flow_cannot_parse_before_recording(store: Store) -> None:
    async def done(ctx: StepContext) -> Done:
        return Done()

    def build(op: Operation) -> list[FuncStep]:
        return [FuncStep("only", done)]

    engine = Engine(store)
    engine.register("worker.sleep", build, parse=SleepParams.of)
    with pytest.raises(InvalidParams):
        await engine.submit("worker.sleep", "worker:alice", {"name": "alice", "idle_s": "long"})
    assert await store.ops.holder("worker:alice") is None
    assert await store.ops.find(subject="worker:alice") == []
