"""A test-only operation and its command: ``!demo run NAME [--steps N] [--delay S] [--fail STEP]``.

Its steps only sleep (and one may fail on purpose), which is all the progress reporter, the
confirmation flow and the restart tests need from an operation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from hiclaw_bot.chat import NAME, TEXT, CommandContext, Integer, Permission, Registry, Reply, option, positional
from hiclaw_bot.engine import Done, Engine, FuncStep, Outcome, PermanentError, Step, StepContext
from storage import Operation


def demo_steps(op: Operation) -> list[Step]:
    delay = float(op.params.get("delay", 0.1))
    fail = op.params.get("fail")

    def make(name: str) -> Step:
        async def do(ctx: StepContext) -> Outcome:
            await asyncio.sleep(delay)
            if name == fail:
                raise PermanentError(f"{name} broke on purpose")
            return Done({"step": name})

        async def undo(ctx: StepContext, output: Mapping[str, Any]) -> None:
            await asyncio.sleep(0.01)

        return FuncStep(name, do, undo=undo)

    return [make(f"step-{i}") for i in range(1, int(op.params.get("steps", 3)) + 1)]


def register_demo(engine: Engine, registry: Registry) -> None:
    engine.register("demo.run", demo_steps)

    async def run(ctx: CommandContext) -> Reply | None:
        params: dict[str, Any] = {"steps": ctx.args.get("steps", int), "delay": float(ctx.args.get("delay", str))}
        if (fail := ctx.args.optional("fail", str)) is not None:
            params["fail"] = fail
        await ctx.start("demo.run", f"demo:{ctx.args.get('name', str)}", params)
        return None

    registry.command("demo", "run", summary="A test operation that only sleeps", handler=run,
                     permission=Permission.OPERATE,
                     args=[positional("name", NAME), option("steps", Integer(1, 20), default=3),
                           option("delay", TEXT, default="0.1"), option("fail", TEXT)])
