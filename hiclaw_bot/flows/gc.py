"""``gc.sweep``: delete the orphans a person confirmed, one system per step.

The operation's params hold the confirmed list (:class:`~hiclaw_bot.flows.inventory.Orphan`s),
never a fresh inventory: the sweep deletes what was shown and nothing else. Each step re-reads
the claims first, so an object that a new worker of the same name (or a running operation) has
taken since the proposal is kept. Every delete is idempotent ("already gone" is done), so a
retried or resumed sweep simply finds less to do; the ledger rows of what it removed are marked
``deleted``. Steps run in :data:`~hiclaw_bot.flows.inventory.SYSTEMS` order: route entries before
the consumers they name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from hiclaw_bot.engine import Done, Engine, Outcome, Skipped, Step, StepContext, is_gone
from hiclaw_bot.flows import names
from hiclaw_bot.flows.inventory import ALIAS, CONSUMER, IDENTITY, PREFIX, ROUTE, RUNTIME, SYSTEMS, Orphan, claims
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import RoomAlias
from storage import Operation

SWEEP = "gc.sweep"
SUBJECT = "gc"

_LEDGER_KIND = {ALIAS: "matrix_room", ROUTE: "gateway_auth", CONSUMER: "gateway_consumer",
                PREFIX: "object_prefix", IDENTITY: "storage_identity", RUNTIME: "worker_runtime"}


class SweepSystem(Step):
    """Delete the confirmed orphans of one system."""

    def __init__(self, services: Services, system: str, orphans: Sequence[Orphan]) -> None:
        self.services = services
        self.system = system
        self.orphans = orphans
        self.name = system

    async def do(self, ctx: StepContext) -> Outcome:
        if not self.orphans:
            return Skipped("nothing to delete here")
        known = await claims(self.services)
        expected = known.expected(self.services.domain)
        deleted: list[str] = []
        kept: list[str] = []
        for orphan in self.orphans:
            if known.covers(orphan, expected):
                kept.append(orphan.describe())
                continue
            try:
                async with ctx.external(self.system):
                    await self._delete(orphan)
            except Exception as exc:
                if not is_gone(exc):
                    raise
            await self._forget(ctx, orphan)
            deleted.append(orphan.describe())
        return Done({"deleted": deleted, "kept": kept})

    async def _delete(self, orphan: Orphan) -> None:
        services = self.services
        if orphan.system == ALIAS:
            await services.matrix.delete_alias(RoomAlias(orphan.name))
        elif orphan.system == ROUTE and services.gateway is not None:
            await services.gateway.deauthorize(orphan.name, [orphan.where])
        elif orphan.system == CONSUMER and services.gateway is not None:
            await services.gateway.deauthorize_mcp(orphan.name, "all")
            await services.gateway.delete_consumer(orphan.name)
        elif orphan.system == PREFIX:
            await services.objects.delete_prefix(orphan.name)
        elif orphan.system == IDENTITY:
            await services.identities.delete(orphan.name)
        elif orphan.system == RUNTIME:
            backend = services.backends.get(orphan.where) if orphan.where else services.backend
            if backend is not None:  # a backend no longer served: nothing here can reach it
                await backend.delete(orphan.name)

    async def _forget(self, ctx: StepContext, orphan: Orphan) -> None:
        kind = _LEDGER_KIND[orphan.system]
        name = names.container(orphan.name) if orphan.system == RUNTIME else orphan.name
        row = await ctx.store.ledger.get(kind, name)
        if row is not None and row.state != "deleted" and orphan.system != ROUTE:
            await ctx.store.ledger.record(kind, name, "deleted", owner=row.owner, op_id=ctx.op.op_id, step=self.name)


def orphans_of(params: Mapping[str, Any]) -> list[Orphan]:
    return sorted(Orphan.from_param(value) for value in params.get("orphans", []))


def sweep_steps(services: Services, op: Operation) -> Sequence[Step]:
    orphans = orphans_of(op.params)
    return [SweepSystem(services, system, [o for o in orphans if o.system == system]) for system in SYSTEMS]


def register_gc_flow(engine: Engine, services: Services) -> None:
    engine.register(SWEEP, partial(sweep_steps, services))
