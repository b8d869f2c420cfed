"""From one message to one answer: parse, look up, bind, authorise, confirm, run, record, reply.

The dispatcher is where "every command gets an answer" is enforced, and where the answer is tied to
the durable record. The order for each event is fixed:

1. not a command for the bot, an edit, or already processed → nothing, silently;
2. older than ``matrix.command_max_age`` (found when catching up after downtime) → "ignored";
3. a grammar, lookup or argument problem → usage / "did you mean";
4. not allowed → a refusal naming the rule;
5. destructive and not yet confirmed → a code to ``!confirm``;
6. the handler runs; an operation it starts is recorded together with the processed-event mark.

Every outcome writes one audit row, in the same transaction as the processed-event mark, *before*
the reply is sent (:mod:`hiclaw_bot.chat.record`): a crash after the mark loses at most a reply,
never runs a command twice. No exception escapes: a :class:`~hiclaw_bot.types.Refused` is answered
with its reason, an unexpected one becomes an apology with a reference id, the traceback goes to
the log and nowhere else.

The handler never calls back in here: once it has returned (or raised), the dispatcher follows the
operations it started or resumed, stores the confirmation it asked for with the event's mark
(:mod:`hiclaw_bot.chat.confirmations`), and runs the command a ``!confirm`` took out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hiclaw_bot.chat.arguments import Args, UsageError, bind
from hiclaw_bot.chat.confirmations import CONFIRM_TTL
from hiclaw_bot.chat.context import CommandContext, Incoming
from hiclaw_bot.chat.grammar import (
    MAX_MESSAGE_CHARS,
    BotIdentity,
    GrammarError,
    Invocation,
    command_text,
    parse,
)
from hiclaw_bot.chat.permissions import Actor, ActorKind, Permission, RoomScope, decide
from hiclaw_bot.chat.progress import ProgressHub
from hiclaw_bot.chat.record import AlreadyHandled, EventRecord
from hiclaw_bot.chat.registry import Command, Found, Registry, unknown_reply
from hiclaw_bot.chat.replies import Outbox, Reply, SendFailed, notice, spoken_duration
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, EngineError, SubjectBusy, describe
from hiclaw_bot.types import Refused
from storage import Confirmation, Operation, Store

log = logging.getLogger("hiclaw_bot.chat")


@dataclass(frozen=True)
class Answer:
    """What the dispatcher decided for one event, before it is recorded and sent."""

    reply: Reply | None
    decision: str
    command: str
    subject: str | None = None
    detail: str | None = None
    confirmation: Confirmation | None = None


@dataclass(eq=False)
class EventState:
    """The dispatcher's own state of one event, across the commands it runs (a ``!confirm`` runs a
    second one); the handlers never see it."""

    reporting: bool = False
    """An operation's progress reporter answers this event: direct replies to it are not final."""
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the dispatcher's own answer is out: progress reports wait for it, to come after it."""


def is_edit(content: Mapping[str, Any]) -> bool:
    relates = content.get("m.relates_to")
    return isinstance(relates, Mapping) and relates.get("rel_type") == "m.replace"


class Dispatcher:
    """Handles the command messages of every room, one at a time; see the module docstring."""

    def __init__(self, *, config: Config, store: Store, engine: Engine, registry: Registry, hub: ProgressHub,
                 outbox: Outbox, identity: BotIdentity, resolver: Resolver) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        self.registry = registry
        self.hub = hub
        self.outbox = outbox
        self.identity = identity
        self.resolver = resolver

    async def handle(self, message: Incoming, *, sync_token: str | None = None) -> bool:
        """Answer one message if it is a command for the bot not yet processed.

        ``sync_token`` is stored with the event's mark, in the same transaction. Returns True when
        the event was handled now (and so the token saved); False for messages that are not
        commands, edits, and events processed before.
        """
        text = command_text(message.body, self.identity, message.formatted_body)
        if text is None or is_edit(message.content) or await self.store.events.seen(message.event_id):
            return False
        record = EventRecord(self.store, event_id=message.event_id, room_id=message.room_id, sender=message.sender,
                             sync_token=sync_token)
        state = EventState()
        try:
            answer = await self._answer(message, text, record, state)
            if not record.marked:
                await record.settle(command=answer.command, decision=answer.decision, subject=answer.subject,
                                    detail=answer.detail, confirmation=answer.confirmation)
            if answer.reply is not None:
                await self.send_reply(message, answer.reply, final=not state.reporting)
        except AlreadyHandled:
            return False
        finally:
            state.answered.set()
        return True

    async def send_reply(self, message: Incoming, reply: Reply, *, final: bool = True) -> None:
        content = notice(reply, command_event_id=message.event_id, final=final,
                         relates_to=message.answer_relation)
        try:
            await self.outbox.send(message.room_id, content, txn_id=f"hiclaw.reply.{message.event_id}")
        except SendFailed as exc:
            log.warning("the answer to %s in %s could not be sent: %s", message.event_id, message.room_id, exc)

    # -- deciding -------------------------------------------------------------------------------

    async def _answer(self, message: Incoming, text: str, record: EventRecord, state: EventState) -> Answer:
        try:
            limit = self.config.matrix.command_max_age
            if message.age > limit:
                return Answer(Reply.of(f"ignored: sent while the bot was down for {spoken_duration(message.age)} "
                                       f"(commands older than {spoken_duration(limit)} are not run). "
                                       f"Send it again if it is still wanted."),
                              "ignored", _summary(text), detail=f"age {message.age:.0f}s")
            if len(message.body) > MAX_MESSAGE_CHARS:
                return Answer(Reply.of(f"That message is too long to be a command ({len(message.body)} characters; "
                                       f"at most {MAX_MESSAGE_CHARS})."), "usage", _summary(text[:200]))
            actor = await self.resolver.actor(message.sender)
            invocation = parse(text)
            if isinstance(invocation, GrammarError):
                return Answer(Reply.of(f"I could not read that command: {invocation.message}."), "usage",
                              _summary(text))
            return await self._execute(message, actor, invocation, record, state, confirmed=False)
        except AlreadyHandled:
            raise
        except Exception:
            reference = secrets.token_hex(4)
            log.exception("command %s in %s failed (reference %s)", message.event_id, message.room_id, reference)
            return Answer(Reply.of(f"Sorry, something went wrong with that command (reference {reference}). "
                                   f"An admin can find the details in the bot's log."),
                          "error", _summary(text), detail=reference)

    async def _execute(self, message: Incoming, actor: Actor, invocation: Invocation, record: EventRecord,
                       state: EventState, *, confirmed: bool) -> Answer:
        found = self.registry.resolve(invocation.words)
        if not isinstance(found, Found):
            return Answer(unknown_reply(found), "unknown", _summary(found.typed))
        command = found.command
        try:
            if invocation.raw is not None and command.raw is None:
                raise UsageError(f"!{command.name} takes nothing after --")
            args = bind(command.args, found.words)
        except UsageError as exc:
            return Answer(Reply.of(f"{exc}. Usage: `{command.usage()}` (`!help {command.name}` explains)."),
                          "usage", command.name)
        target = None
        if command.target is not None:
            args = default_team(actor, command, args)
            target = await self.resolver.target(command.target, args,
                                                provisioning=command.permission is Permission.PROVISION)
        permission = command.permission
        if command.target is not None and command.target.kind == "op" and target is not None and target.exists:
            permission = await self._op_permission(command, int(args.values[command.target.arg]))
        room = await self.resolver.room(message.room_id) if actor.kind.scoped else RoomScope(message.room_id)
        decision = decide(actor, room, permission, target)
        subject = None if target is None else f"{target.kind}:{target.name}"
        if not decision.allowed:
            return Answer(Reply.of(f"Sorry, you may not run `!{command.name}`: {decision.reason}. "
                                   f"(rule {decision.rule})"), "refused", command.name, subject, decision.rule)
        if command.target is not None and command.target.must_exist and target is not None and not target.exists \
                and await self.store.ops.holder(f"{target.kind}:{target.name}") is None:
            return Answer(Reply.of(f"There is no {target.kind} named `{target.name}`. "
                                   f"`!{target.kind} list` shows them."), "not-found", command.name, subject)
        ctx = CommandContext(command=command, args=args, argv=invocation.raw or (), actor=actor, message=message,
                             config=self.config, store=self.store, engine=self.engine, resolver=self.resolver,
                             record=record, confirmed=confirmed)
        if command.confirm is not None and not confirmed:
            return await self._ask_confirmation(ctx, invocation, subject)
        try:
            reply = await command.handler(ctx)
        except Refused as exc:
            reply = Reply.of(exc.reason)
        except SubjectBusy as exc:
            holder = exc.holder
            return Answer(Reply.of(f"{holder.subject} is busy with operation {holder.op_id} ({holder.kind}, "
                                   f"{holder.state}). Wait for it, or see `!op show {holder.op_id}`."),
                          "busy", command.name, subject, f"held by {holder.op_id}")
        except EngineError as exc:
            return Answer(Reply.of(f"Cannot do that: {describe(exc)}."), "rejected", command.name, subject)
        finally:
            self._follow(ctx, state)
        confirmation = ctx.confirmation
        if ctx.stored_command is not None:
            stored = await self._run_stored(ctx, ctx.stored_command, state)
            reply, confirmation = stored.reply, stored.confirmation
        if reply is None and not record.marked:
            reply = Reply.of("Done.")
        return Answer(reply, "confirmed" if confirmed else "done", command.name, subject, confirmation=confirmation)

    async def _op_permission(self, command: Command, op_id: int) -> Permission:
        """``!op retry/abort`` need what the operation's own command needs, as if this sender sent it
        again (a leader may not abort an admin's ``team.*`` operation on its team); ``!op show``
        needs READ, or MANAGE for an operation only admins could have started."""
        op = await self.store.ops.get(op_id)
        original = self._starter(op) if op is not None else None
        needed = original.permission if original is not None else Permission.MANAGE
        if command.name == "op show":
            return Permission.MANAGE if needed is Permission.MANAGE else Permission.READ
        return needed

    def _starter(self, op: Operation) -> Command | None:
        """The command an operation's retry or abort answers to (``!worker create --team`` runs as a
        ``team.add`` that creates: still a worker create)."""
        if op.kind == "team.add" and op.params.get("create"):
            return self.registry.get("worker create")
        return self.registry.starter(op.kind)

    async def _ask_confirmation(self, ctx: CommandContext, invocation: Invocation, subject: str | None) -> Answer:
        """A destructive command: refuse at once what would be refused anyway, else leave a code."""
        command = ctx.command
        try:
            refusal = await command.precheck(ctx) if command.precheck is not None else None
        except Refused as exc:
            refusal = Reply.of(exc.reason)
        if refusal is not None:
            return Answer(refusal, "done", command.name, subject)
        what = command.confirm or ""
        with contextlib.suppress(KeyError, ValueError, IndexError):
            what = what.format_map({k: v for k, v in ctx.args.values.items() if isinstance(v, str | int)})
        code = ctx.ask_confirmation(invocation.text)
        reply = Reply.of(f"⚠ `!{invocation.text}` {what}. To go ahead, send `!confirm {code}` within "
                         f"{spoken_duration(CONFIRM_TTL)}.")
        return Answer(reply, "confirm-pending", command.name, subject, confirmation=ctx.confirmation)

    def _follow(self, ctx: CommandContext, state: EventState) -> None:
        """Report the progress of the operations the handler started or resumed, after its answer."""
        for op in ctx.followed:
            if self.hub.track(op, ctx.message.answer_relation, command_event_id=ctx.message.event_id,
                              after=state.answered):
                state.reporting = True

    async def _run_stored(self, ctx: CommandContext, text: str, state: EventState) -> Answer:
        """Run the command a ``!confirm`` took out, as the same sender, permissions checked again."""
        invocation = parse(text)
        if isinstance(invocation, GrammarError):
            return Answer(Reply.of(f"The stored command could not be read: {invocation.message}."), "usage",
                          ctx.command.name)
        answer = await self._execute(ctx.message, ctx.actor, invocation, ctx.record, state, confirmed=True)
        if not ctx.record.marked:
            await ctx.record.audit(command=answer.command, decision=answer.decision, subject=answer.subject,
                                   detail=answer.detail)
        return answer


def default_team(actor: Actor, command: Command, args: Args) -> Args:
    """A team leader's new worker goes to the leader's own team unless another one is named."""
    team_arg = command.target.team_arg if command.target is not None else None
    if team_arg is None or actor.kind is not ActorKind.TEAM_LEADER or len(actor.teams) != 1 \
            or args.values.get(team_arg) is not None:
        return args
    return Args({**args.values, team_arg: next(iter(actor.teams))})


def _summary(text: str) -> str:
    """The first two words of what was typed, for the audit log (arguments may hold anything)."""
    return " ".join(text.split()[:2])[:80] or "(empty)"
