"""When a message addresses the agent, and what the agent answers: pure functions over event content.

Workers share rooms with people, the bot and other workers, and must answer only when addressed:
by a pill (a ``matrix.to`` link in ``formatted_body``), by an intentional mention
(``m.mentions.user_ids``), or by name in the plain body (user id, localpart or display name, as
whole words). The quoted fallback of a reply is not the sender's text and does not count.

Two agents in one room could otherwise talk forever: each reply quotes a message that may name
the other. So every reply carries :data:`REPLY_MARKER`, and a message with that marker is never
answered; a reply also mentions only the person it answers (``m.mentions``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from hiclaw_bot.types import EventId, UserId

__all__ = ["REPLY_MARKER", "Identity", "is_edit", "mentions", "reply_content"]

REPLY_MARKER = "org.hiclaw.agent.reply"
"""A content key present on every automatic reply of a reference agent."""
_QUOTE_CHARS = 80


@dataclass(frozen=True)
class Identity:
    """How the agent can be named in a room."""

    user_id: UserId
    display_name: str | None = None

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]

    def names(self) -> list[str]:
        names = [self.user_id, self.localpart]
        if self.display_name and self.display_name.strip():
            names.append(self.display_name.strip())
        return names


def _strip_reply_fallback(body: str) -> str:
    """The sender's own text: the ``> `` quoted lines a reply starts with are removed."""
    lines = body.splitlines()
    if not lines or not lines[0].startswith(">"):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    return "\n".join(lines).lstrip("\n")


def _named(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w.\-]){re.escape(name)}(?![\w\-])", text, re.IGNORECASE) is not None


def is_edit(content: Mapping[str, Any]) -> bool:
    """Whether the content replaces an earlier message (answered once already, as the original)."""
    relation = content.get("m.relates_to")
    return isinstance(relation, dict) and relation.get("rel_type") == "m.replace"


def mentions(identity: Identity, content: Mapping[str, Any]) -> bool:
    """Whether a message with this content addresses the agent."""
    if REPLY_MARKER in content:
        return False
    intentional = content.get("m.mentions")
    if isinstance(intentional, dict) and identity.user_id in (intentional.get("user_ids") or []):
        return True
    formatted = content.get("formatted_body")
    if isinstance(formatted, str) and f"matrix.to/#/{identity.user_id}" in unquote(formatted):
        return True
    body = content.get("body")
    if not isinstance(body, str):
        return False
    text = _strip_reply_fallback(body)
    return any(_named(name, text) for name in identity.names())


def reply_content(worker: str, event_id: EventId, sender: UserId, body: str) -> dict[str, Any]:
    """A short ``m.text`` reply to ``event_id``: ``alice here: I got "<the first 80 characters>"``."""
    quote = " ".join(_strip_reply_fallback(body).split())[:_QUOTE_CHARS]
    return {
        "msgtype": "m.text",
        "body": f'{worker} here: I got "{quote}"',
        "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
        "m.mentions": {"user_ids": [sender]},
        REPLY_MARKER: {"worker": worker},
    }
