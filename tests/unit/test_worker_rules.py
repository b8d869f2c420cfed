"""The worker rules of :mod:`hiclaw_bot.flows.worker_rules`, on a real store and fake services: each
refusal in people's words (the same texts chat and the API answer with), and params for what may go."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import BackendError, WorkerState
from hiclaw_bot.config import Config
from hiclaw_bot.flows import worker_rules as rules
from hiclaw_bot.flows.skills import builtin_skills
from hiclaw_bot.types import Refused, Role, WorkerPhase
from storage import Store, Worker


def config(**quotas: Any) -> Config:
    return Config.model_validate({
        "matrix": {"homeserver": "http://127.0.0.1:9", "server_name": "example.org", "bot": {"password": "x"},
                   "admins": ["@root:example.org"], "registration": {"mode": "token", "token": "x"}},
        "storage": {"kind": "local", "directory": "objects"},
        "quotas": {"allowed_models": ["qwen-max", "qwen-plus"], "default_model": "qwen-max", **quotas},
    })


class Matrix:
    async def user_exists(self, user_id: str) -> bool:
        return user_id == "@taken:example.org"


class Backend:
    """A backend whose every worker is in ``state`` (or that cannot answer at all)."""

    def __init__(self, state: WorkerState | None) -> None:
        self.state = state

    async def status(self, name: str) -> Any:
        if self.state is None:
            raise BackendError("process", "the backend is down")
        return SimpleNamespace(state=self.state)


def services(cfg: Config | None = None) -> Any:
    return SimpleNamespace(config=cfg or config(), domain="example.org", bot_user_id="@hiclaw-bot:example.org",
                           matrix=Matrix(), gateway=None, backends={"process": object(), "docker": object()})


async def refusal(coro: Any) -> str | None:
    try:
        await coro
    except Refused as exc:
        return exc.reason
    return None


async def add(store: Store, name: str, *, state: str = WorkerPhase.RUNNING, team: str | None = None,
              role: str = Role.WORKER) -> Worker:
    await store.workers.insert(name, backend="process", state=state, desired_state=state, team=team, role=role,
                               image="img", model="qwen-max", spec={"env": {"A": "1"}, "runtime": "reference"})
    row = await store.workers.get(name)
    assert row is not None
    return row


async def test_a_create_that_breaks_no_rule_gets_its_params(store: Store) -> None:
    plan = await rules.plan_create(services(), store, rules.CreateRequest(
        "alice", skills=["file-sync"], env={"A": "1"}, idle_timeout="2h", cpus="500m", backend="docker"))
    assert plan.team is None
    assert plan.params["model"] == "qwen-max"
    assert plan.params["idle_timeout"] == 7200
    assert plan.params["backend"] == "docker"
    assert plan.params["cpus"] == "500m"
    assert "memory" not in plan.params


@pytest.mark.parametrize(("request_", "reason"), [
    (rules.CreateRequest("taken"), "The worker name `taken` cannot be used: @taken:example.org is an existing "
                                   "account this bot did not register; choose another name."),
    (rules.CreateRequest("root"), "The worker name `root` cannot be used: @root:example.org is an admin's account; "
                                  "choose another name."),
    (rules.CreateRequest("a", model="gpt-4"), "Model `gpt-4` is not allowed here; allowed: qwen-max, qwen-plus."),
    (rules.CreateRequest("a", team="red"), "There is no team named `red`."),
    (rules.CreateRequest("a", skills=["nope"]), f"Unknown skill(s): nope. Known: {', '.join(builtin_skills())}."),
    (rules.CreateRequest("a", mcp=["search"]),
     "MCP server(s) not allowed here: search. Allowed: none (gateway.mcp_servers is empty)."),
    (rules.CreateRequest("a", backend="kubernetes"),
     "Backend `kubernetes` is not offered here; offered: process, docker."),
    (rules.CreateRequest("a", idle_timeout="soon"), "`--idle-timeout` takes a duration such as 30m or 12h."),
    (rules.CreateRequest("a", memory="0"), "`--memory` takes a positive quantity such as 512Mi or 2Gi."),
])
async def test_a_create_that_breaks_a_rule_is_refused_in_words(store: Store, request_: rules.CreateRequest,
                                                                reason: str) -> None:
    assert await refusal(rules.plan_create(services(), store, request_)) == reason


async def test_an_existing_name_is_refused_first(store: Store) -> None:
    await add(store, "alice")
    assert await refusal(rules.plan_create(services(), store, rules.CreateRequest("alice", model="gpt-4"))) == \
        "A worker named `alice` already exists: `!worker status alice`."


async def test_the_quotas_refuse_one_worker_too_many(store: Store) -> None:
    await store.teams.upsert("red", leader="boss", state="Active", spec={}, max_workers=1)
    await add(store, "boss", team="red", role=Role.TEAM_LEADER)
    plan = rules.plan_create(services(), store, rules.CreateRequest("bob", team="red"))
    assert await refusal(plan) == "Team `red` is at its limit of 1 workers."
    full = services(config(max_workers=1))
    assert await refusal(rules.plan_create(full, store, rules.CreateRequest("bob"))) == \
        "The installation is at its limit of 1 workers (quotas.max_workers)."


async def test_an_update_keeps_the_spec_and_merges_the_environment(store: Store) -> None:
    row = await add(store, "alice")
    params = await rules.plan_update(services(), row, model="qwen-plus", env={"B": "2"})
    assert params == {"env": {"A": "1", "B": "2"}, "runtime": "reference", "model": "qwen-plus", "image": "img",
                      "name": "alice"}
    assert await refusal(rules.plan_update(services(), row)) == \
        "Nothing to change: give `--model`, `--image`, `--env KEY=VALUE`, `--cpus` or `--memory`."
    assert await refusal(rules.plan_update(services(), row, model="gpt-4")) == \
        "Model `gpt-4` is not allowed here; allowed: qwen-max, qwen-plus."


@given(phase=st.sampled_from(list(WorkerPhase)), runtime=st.sampled_from([*WorkerState, None]), idle=st.booleans())
async def test_wake_and_sleep_are_refused_only_when_row_and_runtime_agree(
        phase: WorkerPhase, runtime: WorkerState | None, idle: bool) -> None:
    row: Any = SimpleNamespace(name="alice", state=phase)
    backend: Any = Backend(runtime)
    woken = await refusal(rules.check_wake(row, backend, idle=idle))
    slept = await refusal(rules.check_sleep(row, backend, idle=idle))
    assert (woken is not None) == (idle and phase is WorkerPhase.RUNNING and runtime is WorkerState.RUNNING)
    assert (slept is not None) == (idle and phase is WorkerPhase.SLEEPING and runtime is not None
                                   and runtime is not WorkerState.RUNNING)
    assert woken in (None, "alice is already running.")
    assert slept in (None, "alice is already asleep.")
    assert rules.wakes_on_mention(row) is (phase is WorkerPhase.SLEEPING)


async def test_a_leader_cannot_be_deleted_before_its_team(store: Store) -> None:
    await store.teams.upsert("red", leader="boss", state="Active", spec={})
    await add(store, "boss", team="red", role=Role.TEAM_LEADER)
    assert await refusal(rules.check_delete(store, "boss")) == (
        "`boss` leads team `red`; delete the team first: "
        "`!team delete red --with-workers` deletes it with its workers.")
    assert await refusal(rules.check_delete(store, "ghost")) == "There is no worker named `ghost`."
