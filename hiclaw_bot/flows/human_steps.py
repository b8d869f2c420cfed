"""The steps of a human member's life: account, profile, rooms by level, credentials, record.

A human differs from a worker in what we may touch. The account may be someone's already: it is
then *adopted* (used as it is, its password never reset) and only an account we registered gets a
generated password, which is delivered exactly once and then forgotten. Room access is a set of
memberships, one ledger row each (kind ``matrix_membership``), so an invite is checkpointed per
room and a delete kicks from exactly the rooms we invited to, whatever happened to teams since.

A viewer reads but does not write: in each of its rooms its power level is set one below the
lowest level any event needs there (``events_default`` and every ``events`` entry), so it can join
and read but the server refuses anything it sends. The room's own levels are not changed, so
nobody else's rights move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hiclaw_bot.clients.errors import UnauthorizedError
from hiclaw_bot.clients.mail import Mailer, MailOutcome
from hiclaw_bot.engine import Done, Outcome, PermanentError, ResourceRef, Skipped, Step, StepContext
from hiclaw_bot.flows import names
from hiclaw_bot.flows.params import HumanParams
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import RoomId, UserId
from storage import Resource, Team, Worker

PASSWORD = "password"  # noqa: S105 (the name of a secret, not one)
MEMBERSHIP = "matrix_membership"
ACCOUNT = "matrix_user"
LEVELS = ("admin", "team", "viewer")
PENDING, ACTIVE, DELETING = "Pending", "Active", "Deleting"


def talks_to(level: str, teams: Sequence[str], workers: Sequence[str], worker: str, team: str | None) -> bool:
    """Whether a human of ``level`` may talk to ``worker`` (of ``team``): admin-level humans to
    every worker, ``team`` humans to the workers of their teams and those named with ``--workers``,
    viewers to none (they read only)."""
    if level == "admin":
        return True
    return level == "team" and ((team is not None and team in teams) or worker in workers)


def desired_rooms(level: str, teams: Sequence[str], all_teams: Sequence[Team],
                  all_workers: Sequence[Worker], workers: Sequence[str] = ()) -> dict[str, bool]:
    """The rooms a level grants, each mapped to whether it is read-only there.

    admin: every team room and every worker room; team: its teams' rooms and the rooms of the
    workers it talks to (:func:`talks_to`); viewer: its teams' rooms, read-only. Rooms not made
    yet (no room id) are left out.
    """
    mine = set(teams)
    rooms: dict[str, bool] = {}
    for team in all_teams:
        if team.room_id and (level == "admin" or team.name in mine):
            rooms[team.room_id] = level == "viewer"
    for worker in all_workers:
        if worker.room_id and talks_to(level, teams, workers, worker.name, worker.team):
            rooms[worker.room_id] = False
    return rooms


def membership_name(user_id: str, room_id: str) -> str:
    """The ledger name of one membership: the idempotency key of one invite."""
    return f"{room_id} {user_id}"


def send_threshold(power_levels: Mapping[str, Any]) -> int:
    """The lowest level that may send some event in a room (so one below it sends nothing)."""
    default = _int(power_levels.get("events_default"), 0)
    events = power_levels.get("events") or {}
    return min([default, *(_int(v, default) for v in events.values())])


def _int(value: object, fallback: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback


@dataclass(frozen=True)
class HumanRef:
    """What every step knows: the human's name and where its account lives."""

    name: str
    domain: str

    @property
    def user_id(self) -> UserId:
        return names.user_id(self.name, self.domain)

    @property
    def subject(self) -> str:
        return f"human:{self.name}"


class HumanStep(Step):
    """A step about one human, with the services it needs (the steps of a human flow run in order)."""

    def __init__(self, services: Services, human: HumanRef) -> None:
        self.services = services
        self.human = human


class Register(HumanStep):
    """Record the human (``Pending``) and generate its password before any external call."""

    name = "register"

    def __init__(self, services: Services, human: HumanRef, params: HumanParams) -> None:
        super().__init__(services, human)
        self.params = params

    async def do(self, ctx: StepContext) -> Outcome:
        p = self.params
        if p.level is None:
            raise PermanentError("a human needs a level")
        if await ctx.store.humans.get(self.human.name) is None:
            await ctx.store.humans.upsert(self.human.name, user_id=self.human.user_id, level=p.level, state=PENDING,
                                          email=p.email, teams=list(p.teams or ()), workers=list(p.workers or ()),
                                          display_name=p.display_name)
        await ctx.secret(PASSWORD)
        return Done()

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        await ctx.store.humans.delete(self.human.name)
        await ctx.store.secrets.delete(ctx.op.subject)


class Account(HumanStep):
    """Register the account with the generated password, or adopt an existing one untouched.

    A retry after a lost reply meets ``M_USER_IN_USE`` and logs in with the stored password: that
    it works proves the account is ours (nobody else knows a password generated a moment ago). When
    it does not, the account was someone's before: adopted, its password left alone, ours deleted.
    Our own session is ended at once: the bot keeps no token of a human's.
    """

    name = "account"

    def __init__(self, services: Services, human: HumanRef) -> None:
        super().__init__(services, human)
        self.resource = ResourceRef(ACCOUNT, human.user_id)

    async def observe(self, ctx: StepContext) -> Outcome | None:
        """Refuse an account the ledger says is something else of ours (a worker's, even a deleted one)."""
        known = await ctx.store.ledger.get(ACCOUNT, self.human.user_id)
        if known is not None and known.owner != ctx.op.subject:
            raise PermanentError(f"{self.human.user_id} is the account of {known.owner}; choose another name")
        return None

    async def do(self, ctx: StepContext) -> Outcome:
        matrix = self.services.matrix
        password = (await ctx.secret(PASSWORD)).reveal()
        async with ctx.external("matrix"):
            try:
                user = await matrix.ensure_user(self.human.name, password)
            except UnauthorizedError:
                if await matrix.is_deactivated(self.human.user_id):
                    raise PermanentError(f"{self.human.user_id} was deactivated and cannot be used again; "
                                         "choose another name") from None
                await ctx.store.secrets.delete(ctx.op.subject, PASSWORD)
                await ctx.store.ledger.record(ACCOUNT, self.human.user_id, "intended", owner=ctx.op.subject,
                                              op_id=ctx.op.op_id, attrs={"adopted": True})
                return Done({"user_id": self.human.user_id, "adopted": True}, external_id=self.human.user_id)
            await matrix.logout(user.access_token)
        return Done({"user_id": user.user_id, "adopted": False}, external_id=user.user_id)

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        """Deactivate an account we registered (where the server allows); an adopted one is kept."""
        if await adopted(ctx, self.human):
            return
        async with ctx.external("matrix"):
            await self.services.matrix.deactivate_user(self.human.user_id)


async def adopted(ctx: StepContext, human: HumanRef) -> bool:
    row = await ctx.store.ledger.get(ACCOUNT, human.user_id)
    return row is not None and bool(row.attrs.get("adopted"))


class Profile(HumanStep):
    """The display name: set on an account we made (default: the name), on an adopted one only if asked."""

    name = "profile"

    def __init__(self, services: Services, human: HumanRef, display_name: str | None) -> None:
        super().__init__(services, human)
        self.display_name = display_name

    async def do(self, ctx: StepContext) -> Outcome:
        wanted = self.display_name
        if wanted is None and not ctx.output("account").get("adopted"):
            wanted = self.human.name
        if wanted is None:
            return Skipped("an adopted account keeps its display name")
        async with ctx.external("matrix"):
            await self.services.matrix.set_displayname(self.human.user_id, wanted)
        return Done({"display_name": wanted})


class Invites(HumanStep):
    """Bring the human's rooms to what its level grants: invite (viewers read-only), kick from the rest.

    Each room is checkpointed on its own in the ledger (intended → created, deleting → deleted),
    and every call is idempotent, so a crash anywhere repeats at most a no-op.
    """

    name = "invites"

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.humans.get(self.human.name)
        if row is None:
            raise PermanentError(f"no human named {self.human.name}")
        wanted = desired_rooms(row.level, row.teams, await ctx.store.teams.all(), await ctx.store.workers.all(),
                               row.workers)
        for room_id, read_only in sorted(wanted.items()):
            await grant(ctx, self.services, self.human, RoomId(room_id), read_only, step=self.name)
        for resource in await memberships(ctx, self.human):
            if resource.attrs.get("room_id") not in wanted:
                await revoke(ctx, self.services, self.human, resource.external_name, resource.attrs)
        return Done({"rooms": sorted(wanted), "read_only": sorted(r for r, ro in wanted.items() if ro)})

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        await revoke_all(ctx, self.services, self.human)


async def grant(ctx: StepContext, services: Services, human: HumanRef, room_id: RoomId, read_only: bool, *,
                step: str) -> None:
    """Invite the human to one room (a viewer read-only), checkpointed in the ledger as the human's
    membership whichever operation grants it, so that deleting the human finds it."""
    matrix, user_id = services.matrix, human.user_id
    key = membership_name(user_id, room_id)
    attrs = {"room_id": room_id, "user_id": user_id, "read_only": read_only}
    await ctx.store.ledger.record(MEMBERSHIP, key, "intended", owner=human.subject, op_id=ctx.op.op_id,
                                  step=step, attrs=attrs)
    async with ctx.external("matrix"):
        levels = await matrix.state(room_id, "m.room.power_levels") or {}
        threshold = send_threshold(levels)
        current = (levels.get("users") or {}).get(user_id)
        if read_only:
            await matrix.set_user_power(room_id, user_id, threshold - 1)
        elif isinstance(current, int) and current < threshold:
            await matrix.set_user_power(room_id, user_id, None)  # a former viewer may speak again
        await matrix.invite(room_id, user_id)
    await ctx.store.ledger.record(MEMBERSHIP, key, "created", owner=human.subject, op_id=ctx.op.op_id,
                                  external_id=room_id, attrs=attrs)


async def memberships(ctx: StepContext, human: HumanRef) -> list[Resource]:
    return [r for r in await ctx.store.ledger.by_owner(human.subject) if r.kind == MEMBERSHIP]


async def revoke(ctx: StepContext, services: Services, human: HumanRef, key: str, attrs: Mapping[str, Any]) -> None:
    """Kick (or withdraw the invite) from one room and lift a viewer's restriction there."""
    room_id = RoomId(str(attrs["room_id"]))
    await ctx.store.ledger.record(MEMBERSHIP, key, "deleting", owner=human.subject)
    async with ctx.external("matrix"):
        await services.matrix.kick(room_id, human.user_id, reason=f"{human.name} no longer has access")
        if attrs.get("read_only"):
            await services.matrix.set_user_power(room_id, human.user_id, None)
    await ctx.store.ledger.record(MEMBERSHIP, key, "deleted", owner=human.subject)


async def revoke_all(ctx: StepContext, services: Services, human: HumanRef) -> int:
    found = await memberships(ctx, human)
    for resource in found:
        await revoke(ctx, services, human, resource.external_name, resource.attrs)
    return len(found)


class Deliver(HumanStep):
    """Hand over the credentials once: by mail when an address was given, else in the admin's DM.

    Mail is at-least-once: a crash after the server took the message and before this step's
    checkpoint sends it again on resume, with the *same* password (the stored one), never a new
    one. The DM is exactly-once: its transaction id is the operation's, so the homeserver answers a
    repeat with the event it already has. The DM is re-checked before sending: if anyone but the
    admin and the bot has joined it since, nothing is sent and the operation fails.
    """

    name = "deliver"

    def __init__(self, services: Services, human: HumanRef, mailer: Mailer, email: str | None) -> None:
        super().__init__(services, human)
        self.mailer = mailer
        self.email = email

    async def do(self, ctx: StepContext) -> Outcome:
        secret = await ctx.store.secrets.get(ctx.op.subject, PASSWORD)
        adopted_account = bool(ctx.output("account").get("adopted"))
        if secret is None and not adopted_account:
            raise PermanentError(f"the password of {self.human.user_id} is no longer stored; "
                                 f"`!human delete {self.human.name}` and create it again")
        password = None if adopted_account or secret is None else secret.reveal()
        rooms = len(ctx.output("invites").get("rooms", []))
        if self.email is not None:
            return await self._mail(ctx, self.email, password, rooms)
        return await self._dm(ctx, password, rooms)

    async def _mail(self, ctx: StepContext, email: str, password: str | None, rooms: int) -> Outcome:
        config = self.services.config.matrix
        async with ctx.external("smtp"):
            outcome = await self.mailer.send_welcome(email, f"Your account on {config.server_name}",
                                                     welcome_text(self.human.user_id, config.homeserver,
                                                                  password, rooms))
        if outcome is MailOutcome.DISABLED:
            raise PermanentError("mail is not configured (mail.enabled), so the credentials cannot be mailed")
        return Done({"by": "mail", "to": email, "password": password is not None})

    async def _dm(self, ctx: StepContext, password: str | None, rooms: int) -> Outcome:
        room_id, actor = ctx.op.room_id, ctx.op.actor
        if room_id is None or actor is None:
            raise PermanentError("no email and no admin's room to deliver the credentials to")
        matrix = self.services.matrix
        async with ctx.external("matrix"):
            members = set(await matrix.members(RoomId(room_id)))
            if not members <= {self.services.bot_user_id, UserId(actor)}:
                raise PermanentError("the room the command came from is no longer a direct chat with you alone; "
                                     "the credentials were not sent")
            text = "Credentials for the new member (this message is their only copy; hand them over in person):\n"
            await matrix.send_notice(RoomId(room_id), text + welcome_text(
                self.human.user_id, self.services.config.matrix.homeserver, password, rooms),
                txn_id=f"hiclaw-human-credentials-{ctx.op.op_id}")
        return Done({"by": "dm", "password": password is not None})


def welcome_text(user_id: str, homeserver: str, password: str | None, rooms: int) -> str:
    """The welcome message: who, where, and the password when we set one."""
    lines = [f"Username: {user_id}", f"Homeserver: {homeserver}"]
    if password is None:
        lines.append("Password: unchanged (the account existed already; sign in as before)")
    else:
        lines.append(f"Password: {password}")
        lines.append("Sign in with any Matrix client (Element, …) and change the password in its settings.")
    lines.append(f"Invitations are waiting in {rooms} room(s): accept them to join.")
    return "\n".join(lines)


class Record(HumanStep):
    """The human is active; the delivered password is forgotten (only the person holds it now)."""

    name = "record"

    def __init__(self, services: Services, human: HumanRef, state: str = ACTIVE) -> None:
        super().__init__(services, human)
        self.state = state

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.humans.get(self.human.name)
        if row is None:
            raise PermanentError(f"no human named {self.human.name}")
        await ctx.store.humans.upsert(self.human.name, user_id=row.user_id, level=row.level, state=self.state)
        await ctx.store.secrets.delete(ctx.op.subject, PASSWORD)
        return Done({"state": self.state})
