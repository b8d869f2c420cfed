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
the reply is sent: a crash after the mark loses at most a reply, never runs a command twice. No
exception escapes: an unexpected one becomes an apology with a reference id, the traceback goes
to the log and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hiclaw_bot.chat.arguments import Args, UsageError, bind
from hiclaw_bot.chat.context import AlreadyHandled, CommandContext, EventState, Incoming
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
from hiclaw_bot.chat.registry import Command, Found, Registry, unknown_reply
from hiclaw_bot.chat.replies import Outbox, Reply, SendFailed, notice, spoken_duration
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, EngineError, SubjectBusy, describe
from storage import Confirmation, Operation, Store, Tx

log = logging.getLogger("hiclaw_bot.chat")

SYNC_KEY = "next_batch"
"""Where the sync token lives in ``store.sync``."""
CONFIRM_TTL = 300.0
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud, typed on phones


@dataclass(frozen=True)
class Answer:
    """What the dispatcher decided for one event, before it is recorded and sent."""

    reply: Reply | None
    decision: str
    command: str
    subject: str | None = None
    detail: str | None = None
    confirmation: Confirmation | None = None


def new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))


def is_edit(content: Mapping[str, Any]) -> bool:
    relates = content.get("m.relates_to")
    return isinstance(relates, Mapping) and relates.get("rel_type") == "m.replace"


class Dispatcher:
    """Handles the command messages of every room, one at a time; see the module docstring."""

    def __init__(self, *, config: Config, store: Store, engine: Engine, registry: Registry, hub: ProgressHub,
                 outbox: Outbox, identity: BotIdentity) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        self.registry = registry
        self.hub = hub
        self.outbox = outbox
        self.identity = identity
        self.resolver = Resolver(config, store)

    async def handle(self, message: Incoming, *, sync_token: str | None = None) -> bool:
        """Answer one message if it is a command for the bot not yet processed.

        ``sync_token`` is stored with the event's mark, in the same transaction. Returns True when
        the event was handled now (and so the token saved); False for messages that are not
        commands, edits, and events processed before.
        """
        text = command_text(message.body, self.identity, message.formatted_body)
        if text is None or is_edit(message.content) or await self.store.events.seen(message.event_id):
            return False
        state = EventState(sync_token)
        try:
            answer = await self._answer(message, text, state)
            if not state.marked:
                await self._settle(message, answer, state)
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

    async def _answer(self, message: Incoming, text: str, state: EventState) -> Answer:
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
            return await self._execute(message, actor, invocation, state, confirmed=False)
        except AlreadyHandled:
            raise
        except Exception:
            reference = secrets.token_hex(4)
            log.exception("command %s in %s failed (reference %s)", message.event_id, message.room_id, reference)
            return Answer(Reply.of(f"Sorry, something went wrong with that command (reference {reference}). "
                                   f"An admin can find the details in the bot's log."),
                          "error", _summary(text), detail=reference)

    async def _execute(self, message: Incoming, actor: Actor, invocation: Invocation, state: EventState, *,
                       confirmed: bool) -> Answer:
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
                             host=self, state=state, confirmed=confirmed)
        if command.confirm is not None and not confirmed:
            refusal = await command.precheck(ctx) if command.precheck is not None else None
            if refusal is not None:
                return Answer(refusal, "done", command.name, subject)
            return self._ask_confirmation(message, command, invocation, args.values, subject)
        try:
            reply = await command.handler(ctx)
        except SubjectBusy as exc:
            holder = exc.holder
            return Answer(Reply.of(f"{holder.subject} is busy with operation {holder.op_id} ({holder.kind}, "
                                   f"{holder.state}). Wait for it, or see `!op show {holder.op_id}`."),
                          "busy", command.name, subject, f"held by {holder.op_id}")
        except EngineError as exc:
            return Answer(Reply.of(f"Cannot do that: {describe(exc)}."), "rejected", command.name, subject)
        if reply is None and not state.marked:
            reply = Reply.of("Done.")
        return Answer(reply, "confirmed" if confirmed else "done", command.name, subject)

    async def _op_permission(self, command: Command, op_id: int) -> Permission:
        """``!op retry/abort`` need what the operation's own command needs, as if this sender sent it
        again (a leader may not abort an admin's ``team.*`` operation on its team); ``!op show``
        needs READ, or MANAGE for an operation only admins could have started."""
        op = await self.store.ops.get(op_id)
        original = self.registry.get(original_command(op)) if op is not None else None
        needed = original.permission if original is not None else Permission.MANAGE
        if command.name == "op show":
            return Permission.MANAGE if needed is Permission.MANAGE else Permission.READ
        return needed

    def _ask_confirmation(self, message: Incoming, command: Command, invocation: Invocation,
                          values: Mapping[str, Any], subject: str | None) -> Answer:
        what = command.confirm or ""
        with contextlib.suppress(KeyError, ValueError, IndexError):
            what = what.format_map({k: v for k, v in values.items() if isinstance(v, str | int)})
        code = new_code()
        pending = Confirmation(code=code, sender=message.sender, room_id=message.room_id, command=invocation.text,
                               expires_at=self.store.db.now() + CONFIRM_TTL)
        reply = Reply.of(f"⚠ `!{invocation.text}` {what}. To go ahead, send `!confirm {code}` within "
                         f"{spoken_duration(CONFIRM_TTL)}.")
        return Answer(reply, "confirm-pending", command.name, subject, confirmation=pending)

    # -- recording ------------------------------------------------------------------------------

    async def _settle(self, message: Incoming, answer: Answer, state: EventState) -> None:
        """Mark the event processed, store a pending confirmation, write the audit row: one transaction."""
        async with self.store.transaction() as tx:
            await self._mark(message, state, tx, answer.decision, None)
            if answer.confirmation is not None:
                await self.store.confirmations.add(answer.confirmation, tx=tx)
            await self.store.audit.add(actor=message.sender, command=answer.command, decision=answer.decision,
                                       room_id=message.room_id, subject=answer.subject, detail=answer.detail,
                                       tx=tx)

    async def _mark(self, message: Incoming, state: EventState, tx: Tx, outcome: str, op_id: int | None) -> None:
        if not await self.store.events.mark(message.event_id, message.room_id, outcome, op_id=op_id, tx=tx):
            raise AlreadyHandled
        if state.sync_token is not None:
            await self.store.sync.set(SYNC_KEY, state.sync_token, tx=tx)

    # -- the context's host ---------------------------------------------------------------------

    async def mark_with_op(self, ctx: CommandContext, tx: Tx, op_id: int, subject: str) -> None:
        message = ctx.message
        await self._mark(message, ctx.state, tx, "started", op_id)
        await self.store.audit.add(actor=message.sender, command=ctx.command.name,
                                   decision="confirmed" if ctx.confirmed else "started", room_id=message.room_id,
                                   subject=subject, op_id=op_id, tx=tx)

    def follow(self, ctx: CommandContext, op: Operation) -> None:
        if self.hub.track(op, ctx.message.answer_relation, command_event_id=ctx.message.event_id,
                          after=ctx.state.answered):
            ctx.state.reporting = True

    async def rerun(self, ctx: CommandContext, text: str) -> Reply | None:
        invocation = parse(text)
        if isinstance(invocation, GrammarError):
            return Reply.of(f"The stored command could not be read: {invocation.message}.")
        answer = await self._execute(ctx.message, ctx.actor, invocation, ctx.state, confirmed=True)
        if not ctx.state.marked:
            await self.store.audit.add(actor=ctx.sender, command=answer.command, decision=answer.decision,
                                       room_id=ctx.room_id, subject=answer.subject, detail=answer.detail)
        return answer.reply


OP_COMMANDS = {
    "worker.create": "worker create", "worker.delete": "worker delete", "worker.sleep": "worker sleep",
    "worker.wake": "worker wake", "worker.update": "worker update",
    "team.create": "team create", "team.add": "team add", "team.remove": "team remove", "team.delete": "team delete",
    "human.create": "human create", "human.invite": "human invite", "human.delete": "human delete",
    "gc.sweep": "gc",
}
"""The command that starts each kind of operation; a kind not here (``worker.repair``, started by
the bot itself) is treated as an admin's."""


def original_command(op: Operation) -> str:
    """The command whose permission an operation's retry or abort needs (``!worker create --team``
    runs as a ``team.add`` that creates: still a worker create)."""
    if op.kind == "team.add" and op.params.get("create"):
        return "worker create"
    return OP_COMMANDS.get(op.kind, "")


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
