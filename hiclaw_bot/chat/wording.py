"""Operations told in people's words: "✓ alice is running — created in 1.7 s (operation 1)".

The engine names an operation by its kind and subject (``worker.create worker:alice``): exact, and
what ``!op show`` takes, but not how a person says it. Each kind the bot runs has three phrases
here: what it is doing ("creating worker alice"), what is true once it succeeded ("alice is
running") and the verb for the time it took ("created"). The operation id stays in every message,
for ``!op show``, ``!op retry`` and ``!op abort``. A kind without phrases (a test's, a future one's)
keeps the engine's words, so nothing is ever left unsaid. A new command declares its kind's words
beside itself with :func:`declare`, so adding one does not mean editing this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storage import Operation


@dataclass(frozen=True)
class Phrases:
    doing: str
    """What the operation does, as a gerund phrase: "creating worker {name}"."""
    done: str
    """What is true once it succeeded: "{name} is running"."""
    verb: str
    """The past participle the time goes with: "created" (in 1.7 s)."""


PHRASES: Mapping[str, Phrases] = {
    "worker.create": Phrases("creating worker {name}", "{name} is running", "created"),
    "worker.sleep": Phrases("putting {name} to sleep", "{name} is asleep", "stopped"),
    "worker.wake": Phrases("waking {name}", "{name} is running", "woken"),
    "worker.update": Phrases("updating worker {name}", "{name} runs its new settings", "updated"),
    "worker.delete": Phrases("deleting worker {name}", "{name} is gone", "deleted"),
    "worker.repair": Phrases("repairing worker {name}", "{name} is back", "repaired"),
    "team.create": Phrases("creating team {name}", "team {name} is ready", "created"),
    "team.add": Phrases("adding {worker} to team {name}", "{worker} is in team {name}", "added"),
    "team.remove": Phrases("taking {worker} out of team {name}", "{worker} has left team {name}", "removed"),
    "team.delete": Phrases("deleting team {name}", "team {name} is gone", "deleted"),
    "human.create": Phrases("adding human {name}", "{name} is a member", "created"),
    "human.invite": Phrases("inviting {name} again", "{name}'s rooms and workers are up to date", "invited"),
    "human.delete": Phrases("removing human {name}", "{name} is removed", "deleted"),
    "gc.sweep": Phrases("deleting the leftovers", "the leftovers are deleted", "swept"),
}


_DECLARED: dict[str, Phrases] = {}


def declare(kind: str, said: Phrases) -> None:
    """Give ``kind`` its words, from where its command is declared (the same words each time)."""
    _DECLARED[kind] = said


def _fill(template: str, params: Mapping[str, Any]) -> str | None:
    try:
        return template.format_map({k: str(v) for k, v in params.items()})
    except (KeyError, ValueError, IndexError):
        return None


def phrases(op: Operation) -> tuple[str, str, str] | None:
    """(doing, done, verb) for ``op``, or None when its kind (or its params) has no words of ours."""
    found = PHRASES.get(op.kind) or _DECLARED.get(op.kind)
    if found is None:
        return None
    doing, done = _fill(found.doing, op.params), _fill(found.done, op.params)
    if doing is None or done is None:
        return None
    return doing, done, found.verb


def doing(op: Operation) -> str:
    """"creating worker alice (operation 1)", or the engine's "worker.create worker:alice (operation 1)"."""
    said = phrases(op)
    return f"{said[0] if said else f'{op.kind} {op.subject}'} (operation {op.op_id})"


def succeeded(op: Operation, took: str | None) -> str:
    """"alice is running — created in 1.7 s (operation 1)", without the icon."""
    said = phrases(op)
    if said is None:
        return f"{op.kind} {op.subject} (operation {op.op_id}) succeeded{f' in {took}' if took else ''}"
    _, done, verb = said
    return f"{done} — {verb}{f' in {took}' if took else ''} (operation {op.op_id})"
