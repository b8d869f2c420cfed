"""The delete side of any create step: its ``undo`` run as a step of its own.

A delete operation undoes, in reverse, the resources a create made. Each of those is a step of
the delete (checkpointed, retried and crash-tested like any other), named ``remove_<step>``, and
"already gone" counts as done, so a delete of a half-made or half-deleted subject finishes.
"""

from __future__ import annotations

from collections.abc import Sequence

from hiclaw_bot.engine.errors import is_gone
from hiclaw_bot.engine.steps import Done, Outcome, Step, StepContext


class Remove(Step):
    """Undo of a create step, run as a step of its own in a delete: "already gone" is done."""

    destroys = True

    def __init__(self, step: Step, *, after: Sequence[str] | None = None) -> None:
        self.step = step
        self.name = f"remove_{step.name}"
        self.resource = step.resource
        if after is not None:
            self.after = tuple(after)

    async def do(self, ctx: StepContext) -> Outcome:
        try:
            await self.step.undo(ctx, {})
        except Exception as exc:
            if not is_gone(exc):
                raise
        return Done()
