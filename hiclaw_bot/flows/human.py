"""Human member operations as ordered steps (ARCHITECTURE §4).

``human.create``::

    register ─► account ─► profile ─► invites ─► workers ─► deliver ─► record

``human.invite`` changes the teams when asked and brings the rooms back to what the level grants
(someone who left or declined is invited again; rooms of teams no longer theirs are taken away).
Each ends by rendering the workers' allow lists again (``workers``), so who may talk to a
worker follows the human's level, teams and ``--workers`` (:mod:`hiclaw_bot.flows.access`).
``human.delete`` kicks from every room the ledger says we invited to, deactivates an account we
registered (an adopted one is only removed from our rooms), and forgets the row and secrets.

Mail delivery is at-least-once (see :class:`~hiclaw_bot.flows.human_steps.Deliver`): a crash between
the SMTP server's "accepted" and the checkpoint re-sends the same password on resume.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from email.headerregistry import Address
from functools import partial
from typing import Any

from hiclaw_bot.clients.mail import DisabledMailer, Mailer, SmtpMailer
from hiclaw_bot.config import MailConfig
from hiclaw_bot.engine import Done, Engine, Outcome, PermanentError, ResourceRef, Skipped, Step, StepContext
from hiclaw_bot.flows import worker as worker_flows
from hiclaw_bot.flows.human_steps import (
    ACCOUNT,
    DELETING,
    Account,
    Deliver,
    HumanRef,
    HumanStep,
    Invites,
    Profile,
    Record,
    Register,
    adopted,
    revoke_all,
)
from hiclaw_bot.flows.params import HumanParams
from hiclaw_bot.flows.rendering import push_config
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_steps import ACCESS_TOKEN
from hiclaw_bot.types import WorkerPhase
from storage import Operation

CREATE = "human.create"
INVITE = "human.invite"
DELETE = "human.delete"

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_MAX_ADDRESS = 254


class InvalidEmail(ValueError):
    """Not one plain mail address (``name@example.org``)."""


def parse_email(text: str) -> str:
    """One plain address, checked by the standard library's RFC 5322 parser, plus a host-name domain.

    Display names, lists, quoted or non-ASCII local parts and address literals are refused: the
    address goes into an SMTP envelope as it is, and a person should be able to read it back.
    """
    try:
        address = Address(addr_spec=text)
    except Exception as exc:  # the parser raises IndexError, ValueError and header defects alike
        raise InvalidEmail(f"{text!r} is not a mail address like name@example.org") from exc
    spec, domain = address.addr_spec, address.domain
    labels = domain.split(".")
    if spec != text or '"' in spec or len(spec) > _MAX_ADDRESS or not all(_LABEL.match(label) for label in labels):
        raise InvalidEmail(f"{text!r} is not a plain mail address like name@example.org")
    return spec


def subject(name: str) -> str:
    return f"human:{name}"


def human_of(services: Services, op: Operation) -> HumanRef:
    return HumanRef(HumanParams.of(op.params).name, services.domain)


def mailer_from_config(mail: MailConfig) -> Mailer:
    """The SMTP mailer the configuration describes, or one that is switched off."""
    if not mail.enabled:
        return DisabledMailer()
    password = mail.password.get_secret_value() if mail.password is not None else None
    return SmtpMailer(mail.host, mail.port, from_address=mail.sender,
                      security="ssl" if mail.security == "tls" else mail.security,
                      username=mail.username, password=password)


class SetTeams(HumanStep):
    """Replace the human's teams and workers (``human.invite --teams/--workers``) before the rooms
    and allow lists follow them."""

    name = "teams"

    def __init__(self, services: Services, human: HumanRef, teams: Sequence[str] | None,
                 workers: Sequence[str] | None = None) -> None:
        super().__init__(services, human)
        self.teams = teams
        self.workers = workers

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.humans.get(self.human.name)
        if row is None:
            raise PermanentError(f"no human named {self.human.name}")
        changes: dict[str, Any] = {}
        if self.teams is not None:
            changes["teams"] = list(self.teams)
        if self.workers is not None:
            changes["workers"] = list(self.workers)
        if not changes:
            return Skipped("the teams and workers stay as they are")
        await ctx.store.humans.upsert(self.human.name, user_id=row.user_id, level=row.level, state=row.state,
                                      **changes)
        return Done(changes)


class WorkerAccess(HumanStep):
    """Re-render the allow lists of the workers, so that they follow the human's access now.

    Every worker with a room is rendered again from the tables (:func:`push_config`): byte-stable,
    so only the workers whose allow list changed get new files, and a re-run is a no-op. A worker
    being deleted is left alone, and one not yet configured reads the tables in its own ``config`` step.
    """

    name = "workers"

    async def do(self, ctx: StepContext) -> Outcome:
        return Done({"workers": await self._push_all(ctx)})

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        """An aborted create: the human (about to be forgotten by ``register``) leaves the allow lists."""
        row = await ctx.store.humans.get(self.human.name)
        if row is not None:
            await ctx.store.humans.upsert(self.human.name, user_id=row.user_id, level=row.level, state=DELETING)
        await self._push_all(ctx)

    async def _push_all(self, ctx: StepContext) -> list[str]:
        pushed: list[str] = []
        for worker in await ctx.store.workers.all():
            if worker.room_id is None or worker.state == WorkerPhase.DELETING \
                    or await ctx.store.secrets.get(worker_flows.subject(worker.name), ACCESS_TOKEN) is None:
                continue
            await push_config(self.services, ctx, worker.name)
            pushed.append(worker.name)
        return pushed


class Reaccess(WorkerAccess):
    """The allow lists of ``human.invite``: an abort leaves them as the human's access stands, as
    :class:`Reinvite` leaves the rooms."""

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        return None


class Reinvite(Invites):
    """The invites of ``human.invite``: an abort leaves the rooms as they are, since they are what
    the level grants (undoing them would take away what ``human.create`` gave)."""

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        return None


class Mark(HumanStep):
    name = "mark"

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.humans.get(self.human.name)
        if row is not None:
            await ctx.store.humans.upsert(self.human.name, user_id=row.user_id, level=row.level, state=DELETING)
        return Done()


class RemoveInvites(HumanStep):
    name = "remove_invites"

    async def do(self, ctx: StepContext) -> Outcome:
        return Done({"rooms": await revoke_all(ctx, self.services, self.human)})


class RemoveAccount(HumanStep):
    """Deactivate an account we registered; Synapse also ends its sessions. Adopted ones are left."""

    name = "remove_account"
    destroys = True

    def __init__(self, services: Services, human: HumanRef) -> None:
        super().__init__(services, human)
        self.resource = ResourceRef(ACCOUNT, human.user_id)

    async def do(self, ctx: StepContext) -> Outcome:
        if await ctx.store.ledger.get(ACCOUNT, self.human.user_id) is None:
            return Skipped("no account of ours to deactivate")
        if await adopted(ctx, self.human):
            return Done({"deactivated": False, "adopted": True})
        async with ctx.external("matrix"):
            deactivated = await self.services.matrix.deactivate_user(self.human.user_id)
        return Done({"deactivated": deactivated})


class Forget(HumanStep):
    name = "forget"

    async def do(self, ctx: StepContext) -> Outcome:
        await ctx.store.humans.delete(self.human.name)
        await ctx.store.secrets.delete(ctx.op.subject)
        return Done()


def create_steps(services: Services, mailer: Mailer, op: Operation) -> Sequence[Step]:
    human, params = human_of(services, op), HumanParams.of(op.params)
    return [
        Register(services, human, params),
        Account(services, human),
        Profile(services, human, params.display_name),
        Invites(services, human),
        WorkerAccess(services, human),
        Deliver(services, human, mailer, params.email),
        Record(services, human),
    ]


def invite_steps(services: Services, op: Operation) -> Sequence[Step]:
    human, params = human_of(services, op), HumanParams.of(op.params)
    return [SetTeams(services, human, list(params.teams) if params.teams is not None else None,
                     list(params.workers) if params.workers is not None else None),
            Reinvite(services, human), Reaccess(services, human)]


def delete_steps(services: Services, op: Operation) -> Sequence[Step]:
    human = human_of(services, op)
    return [Mark(services, human), RemoveInvites(services, human), RemoveAccount(services, human),
            WorkerAccess(services, human), Forget(services, human)]


def register_human_flows(engine: Engine, services: Services, mailer: Mailer | None = None) -> None:
    """Teach the engine the human operations; ``mailer`` defaults to the configured one."""
    flows: Mapping[str, Callable[[Operation], Sequence[Step]]] = {
        CREATE: partial(create_steps, services, mailer or mailer_from_config(services.config.mail)),
        INVITE: partial(invite_steps, services),
    }
    for kind, make in flows.items():
        engine.register(kind, make, parse=HumanParams.of)
    engine.register(DELETE, partial(delete_steps, services), supersedes_failed=True, parse=HumanParams.of)

