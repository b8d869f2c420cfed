"""What a command handler gets: the parsed command, who sent it, and the few ways to act.

A handler reads its arguments (``ctx.args.get("name", str)``), may look at the store, and does one
of three things:

* starts an operation with :meth:`CommandContext.start`, which records it in the *same transaction*
  that marks the Matrix event processed and writes the audit row (:mod:`hiclaw_bot.chat.record`),
  so a crash can neither lose the command nor run it twice; its progress message then answers the
  command, and the handler usually returns None;
* answers directly by returning a :class:`~hiclaw_bot.chat.replies.Reply` (lists, status);
  the dispatcher marks the event in its own transaction before it sends the answer;
* refuses, by raising :class:`~hiclaw_bot.types.Refused` with the reason in people's words: the
  dispatcher answers it, and nothing was changed.

The context only collects what the handler asked for — operations to report on
(:meth:`~CommandContext.follow`), a confirmation to leave (:meth:`~CommandContext.ask_confirmation`),
a stored command to run (:meth:`~CommandContext.run_confirmed`) — and the dispatcher acts on it
once the handler has returned: nothing here calls back into the dispatcher.

Handlers run one at a time, in timeline order, so they must be quick: anything slow belongs in an
operation. They never send messages themselves and never catch errors they cannot explain: the
dispatcher turns ``SubjectBusy`` and other engine refusals into answers, and anything else into a
short apology with a reference id (the details go to the log only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hiclaw_bot.chat import confirmations
from hiclaw_bot.chat.arguments import Args
from hiclaw_bot.chat.command import Command
from hiclaw_bot.chat.permissions import Actor
from hiclaw_bot.chat.record import EventRecord
from hiclaw_bot.chat.replies import JsonDict, relation_to
from hiclaw_bot.chat.resolve import Resolver
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, Submission
from hiclaw_bot.types import EventId, RoomId, UserId
from storage import Confirmation, Operation, Store, Tx


@dataclass(frozen=True)
class Incoming:
    """A text message, reduced to what the command layer needs (no Matrix library types)."""

    room_id: RoomId
    event_id: EventId
    sender: UserId
    body: str
    formatted_body: str | None = None
    content: Mapping[str, Any] = field(default_factory=dict, repr=False)
    age: float = 0.0
    """Seconds since the homeserver received the message."""
    sent_at: int | None = None
    """The homeserver's timestamp of the message (``origin_server_ts``, milliseconds)."""

    @property
    def answer_relation(self) -> JsonDict:
        """Where answers go: this message's thread, or a reply to it."""
        return relation_to(self.event_id, self.content)


class CommandContext:
    """One run of one command; see the module docstring."""

    def __init__(self, *, command: Command[CommandContext], args: Args, argv: tuple[str, ...], actor: Actor,
                 message: Incoming, config: Config, store: Store, engine: Engine, resolver: Resolver,
                 record: EventRecord, confirmed: bool) -> None:
        self.command = command
        self.args = args
        self.argv = argv
        """Raw words after ``--`` (empty when none were given)."""
        self.actor = actor
        self.message = message
        self.config = config
        self.store = store
        self.engine = engine
        self.resolver = resolver
        self.confirmed = confirmed
        """True when the command runs after a ``!confirm``."""
        self.record = record
        self.followed: list[Operation] = []
        """Operations whose progress answers this command (the dispatcher follows them)."""
        self.confirmation: Confirmation | None = None
        """A confirmation the handler asked for (the dispatcher stores it with the event's mark)."""
        self.stored_command: str | None = None
        """A confirmed command line to run next (``!confirm``), permissions checked again."""

    @property
    def sender(self) -> UserId:
        return self.message.sender

    @property
    def room_id(self) -> RoomId:
        return self.message.room_id

    async def start(self, kind: str, subject: str, params: dict[str, Any] | None = None, *,
                    when_busy: Literal["refuse", "queue"] = "refuse") -> Submission:
        """Submit an operation for this command and report its progress in this room.

        Raises ``SubjectBusy`` (the dispatcher answers it) when another operation holds ``subject``.
        """
        record, command, confirmed = self.record, self.command.name, self.confirmed

        async def same_transaction(tx: Tx, op_id: int) -> None:
            await record.started(tx, op_id=op_id, command=command, subject=subject, confirmed=confirmed)

        submission = await self.engine.submit(kind, subject, params, actor=self.sender, room_id=self.room_id,
                                              source_event_id=self.message.event_id, when_busy=when_busy,
                                              same_transaction=same_transaction)
        self.follow(submission.op)
        return submission

    def follow(self, op: Operation) -> None:
        """Report the progress of an existing operation (after a retry or an abort) in this room."""
        self.followed.append(op)

    def ask_confirmation(self, command: str) -> str:
        """Leave ``command`` (a command line without its ``!``) for ``!confirm``; returns the code to show."""
        self.confirmation = confirmations.pending(sender=self.sender, room_id=self.room_id, command=command,
                                                  now=self.store.db.now())
        return self.confirmation.code

    def run_confirmed(self, text: str) -> None:
        """Run a stored command line (after ``!confirm``) once this handler returns; its answer is this one's."""
        self.stored_command = text
