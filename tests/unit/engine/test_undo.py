"""The engine's generic ``Remove`` step: a create step's undo, run as a delete's own step, where
"already gone" is done and any other failure is the step's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from hiclaw_bot.engine import Done, Remove, ResourceRef, Step, StepContext


class Gone(Exception):
    not_found: ClassVar[bool] = True


class Made(Step):
    name = "room"
    resource = ResourceRef("matrix_room", "#room:example.org")

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.undone = 0

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        self.undone += 1
        if self.error is not None:
            raise self.error


async def test_remove_undoes_the_step_and_takes_its_resource() -> None:
    made = Made(None)
    remove = Remove(made, after=("mark",))
    assert (remove.name, remove.resource, remove.after, remove.destroys) == \
        ("remove_room", made.resource, ("mark",), True)
    assert isinstance(await remove.do(None), Done)  # type: ignore[arg-type]
    assert made.undone == 1


async def test_already_gone_is_done_and_anything_else_fails() -> None:
    assert isinstance(await Remove(Made(Gone("no such room"))).do(None), Done)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await Remove(Made(RuntimeError("homeserver down"))).do(None)  # type: ignore[arg-type]
