"""Activity from seen messages, wake on mention, and the idle sweep, over a real store and engine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from hiclaw_bot.flows.worker import SLEEP, WAKE, subject
from hiclaw_bot.lifecycle import Lifecycle
from tests.unit.lifecycle.conftest import DOMAIN, Rig, add_worker

ROOM_A, ROOM_B, TEAM_ROOM, ELSEWHERE = "!a:x", "!b:x", "!team:x", "!dm:x"
PERSON = "@person:example.org"


@dataclass(frozen=True)
class Seen:
    room_id: str
    sender: str
    body: str
    event_id: str = "$e"
    sent_at: int | None = 1_000_000_000
    content: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.content.setdefault("msgtype", "m.text")
        self.content.setdefault("body", self.body)


async def setup(rig: Rig) -> Lifecycle:
    await rig.store.teams.upsert("red", leader="ann", state="Active", room_id=TEAM_ROOM)
    await add_worker(rig.store, "ann", room_id=ROOM_A, team="red")
    await add_worker(rig.store, "bob", room_id=ROOM_B, team="red", state="Sleeping")
    await add_worker(rig.store, "cid", room_id="!c:x")
    return Lifecycle(rig.services, rig.engine, clock=rig.clock)


async def active(rig: Rig) -> dict[str, float | None]:
    return {w.name: w.last_active_at for w in await rig.store.workers.all()}


async def test_what_counts_as_a_workers_activity(rig: Rig) -> None:
    lifecycle = await setup(rig)
    await lifecycle.observe(Seen(ROOM_A, PERSON, "anything at all", sent_at=1_000_000_000), command=False)
    await lifecycle.observe(Seen(TEAM_ROOM, f"@cid:{DOMAIN}", "cid speaks in a team room it is not in",
                                 sent_at=2_000_000_000), command=False)
    await lifecycle.observe(Seen(TEAM_ROOM, PERSON, "a general remark", sent_at=3_000_000_000), command=False)
    await lifecycle.observe(Seen(ELSEWHERE, PERSON, f"@ann:{DOMAIN} in a room we do not know"), command=False)
    assert await active(rig) == {"ann": None, "bob": None, "cid": None}  # nothing written before a flush
    assert await lifecycle.activity.flush() == 2
    assert await active(rig) == {"ann": 1_000_000.0, "bob": None, "cid": 2_000_000.0}

    # A command in a worker's room is for the bot, not for the worker; activity never goes back.
    await lifecycle.observe(Seen(ROOM_A, PERSON, "!worker status ann", sent_at=5_000_000_000), command=True)
    await lifecycle.observe(Seen(ROOM_A, f"@ann:{DOMAIN}", "old news", sent_at=500_000_000), command=False)
    await lifecycle.activity.flush()
    assert (await active(rig))["ann"] == 1_000_000.0


async def test_a_mention_wakes_a_sleeping_worker_once(rig: Rig) -> None:
    lifecycle = await setup(rig)
    await lifecycle.observe(Seen(TEAM_ROOM, PERSON, "bob: are you there?", event_id="$1"), command=False)
    await lifecycle.observe(Seen(TEAM_ROOM, PERSON, "bob: hello??", event_id="$2"), command=False)
    await lifecycle.observe(Seen(ROOM_B, PERSON, "!worker delete bob", event_id="$3"), command=True)
    await lifecycle.observe(Seen(TEAM_ROOM, PERSON, "ann: you are awake anyway", event_id="$4"), command=False)
    await lifecycle.observe(Seen(ROOM_B, f"@bob:{DOMAIN}", "@bob:example.org talking to itself", event_id="$5"),
                            command=False)
    ops = await rig.store.ops.find(limit=10)
    assert [(op.kind, op.subject) for op in ops] == [(WAKE, subject("bob"))]
    assert ops[0].params["missed"] == {"room_id": TEAM_ROOM, "event_id": "$1", "sender": PERSON}
    assert ops[0].actor == PERSON


async def test_the_idle_sweep_sleeps_only_idle_unheld_workers(rig: Rig) -> None:
    lifecycle = await setup(rig)
    now = rig.clock.wall()
    await rig.store.workers.update("ann", last_active_at=now - 13 * 3600)
    await rig.store.workers.update("cid", last_active_at=now - 13 * 3600, idle_timeout_s=24 * 3600.0)
    await add_worker(rig.store, "dan", last_active_at=now - 13 * 3600)
    await rig.store.ops.insert(kind="worker.update", subject=subject("dan"), params={}, actor=None, room_id=None,
                               source_event_id=None, state="queued")
    await add_worker(rig.store, "eve", last_active_at=now - 13 * 3600)
    await rig.services.objects.put("agents/eve/state/activity.json", json.dumps(
        {"started_at": "2000-01-01T00:00:00+00:00", "last_reply": _iso(now - 60)}).encode())
    sweep = await lifecycle.sweep_once()
    assert sweep.candidates == 2  # ann and eve: cid has a longer timeout, dan is queued on, bob sleeps
    assert list(sweep.slept) == ["ann"]
    assert sweep.still_active == ["eve"]
    op = await rig.engine.wait(sweep.slept["ann"])
    assert (op.kind, op.params["idle_s"], op.actor) == (SLEEP, 13 * 3600, rig.services.bot_user_id)
    assert (await rig.store.workers.get("eve")).last_active_at == pytest.approx(now - 60)  # type: ignore[union-attr]


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat()
