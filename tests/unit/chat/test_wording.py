"""Results and headlines in people's words, with the operation id kept for ``!op show``."""

from __future__ import annotations

from typing import Any

import pytest

from hiclaw_bot.chat.progress import render, render_result
from hiclaw_bot.chat.wording import PHRASES, Phrases, declare
from storage import Operation


def _op(kind: str, params: dict[str, Any], state: str, *, finished: float | None = 1.7, op_id: int = 1,
        error: str | None = None, failed_step: str | None = None) -> Operation:
    return Operation(op_id=op_id, kind=kind, subject=f"{kind.split('.')[0]}:{params.get('name', '')}", params=params,
                     actor=None, room_id="!r:hs", source_event_id="$c", state=state, error=error,
                     failed_step=failed_step, progress_event_id=None, created_at=0, updated_at=0, finished_at=finished)


def test_a_created_worker_is_said_to_run() -> None:
    assert render_result(_op("worker.create", {"name": "alice"}, "succeeded"), []).text == \
        "✓ alice is running — created in 1.7 s (operation 1)"


@pytest.mark.parametrize(("kind", "params", "said"), [
    ("worker.sleep", {"name": "alice"}, "✓ alice is asleep — stopped in 1.7 s (operation 1)"),
    ("worker.delete", {"name": "alice"}, "✓ alice is gone — deleted in 1.7 s (operation 1)"),
    ("team.create", {"name": "red", "leader": "lead"}, "✓ team red is ready — created in 1.7 s (operation 1)"),
    ("team.add", {"name": "red", "worker": "cal"}, "✓ cal is in team red — added in 1.7 s (operation 1)"),
    ("human.create", {"name": "bob"}, "✓ bob is a member — created in 1.7 s (operation 1)"),
    ("gc.sweep", {"items": []}, "✓ the leftovers are deleted — swept in 1.7 s (operation 1)"),
])
def test_every_kind_speaks_plainly(kind: str, params: dict[str, Any], said: str) -> None:
    assert render_result(_op(kind, params, "succeeded"), []).text == said


def test_every_kind_the_bot_runs_has_words() -> None:
    from hiclaw_bot.flows import gc, human, team, worker

    kinds = {worker.CREATE, worker.SLEEP, worker.WAKE, worker.UPDATE, worker.DELETE, worker.REPAIR,
             team.CREATE, team.ADD, team.REMOVE, team.DELETE, human.CREATE, human.INVITE, human.DELETE, gc.SWEEP}
    assert kinds <= set(PHRASES)


def test_a_failure_says_what_was_being_done_and_how_to_go_on() -> None:
    op = _op("worker.create", {"name": "alice"}, "failed", op_id=7, error="room taken", failed_step="room")
    assert render_result(op, []).text == (
        "✗ creating worker alice (operation 7) failed at step room: room taken. Fix the cause, then "
        "`!op retry 7` resumes at that step; `!op abort 7` undoes what was done.")


def test_the_progress_headline_says_what_is_being_done() -> None:
    op = _op("human.invite", {"name": "bob"}, "running", finished=None)
    assert render(op, []).text == "⏳ running: inviting bob again (operation 1)"


def test_an_unknown_kind_keeps_the_engine_words() -> None:
    assert render_result(_op("demo.run", {"name": "x"}, "succeeded"), []).text == \
        "✓ demo.run demo:x (operation 1) succeeded in 1.7 s"


def test_a_kind_declared_beside_its_command_speaks_plainly() -> None:
    declare("demo.spin", Phrases("spinning {name}", "{name} spins", "spun"))
    said = render_result(_op("demo.spin", {"name": "x"}, "succeeded"), []).text
    assert said == "✓ x spins — spun in 1.7 s (operation 1)"
