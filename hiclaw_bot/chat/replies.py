"""What the bot's messages look like on the wire: notices, threads, replies, edits, tables.

Every message is an ``m.notice`` (bots must never answer notices, so two bots cannot loop) with a
plain ``body`` and, where it helps, an HTML ``formatted_body``: tables for lists, ``<code>`` for
commands. Replies go where the command was: into its thread when it was sent in one (always to the
thread's *root*), else as a rich reply to it. An event that itself has a ``rel_type`` (an edit, a
reaction target, a thread message) cannot become a thread root, so replies never start threads.

Each message also carries :data:`REPLY_KEY`, ``{"command": <event id>, "final": bool}``: clients
ignore it, and ``hiclaw-bot say`` uses it to know which of the bot's messages answer its command
and when the answer is complete (progress messages are not final; the result that follows is).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

REPLY_KEY = "io.hiclaw.reply"
HTML_FORMAT = "org.matrix.custom.html"

JsonDict = dict[str, Any]


class SendFailed(Exception):
    """A message could not be delivered, even after retries."""


class Outbox(Protocol):
    """Where messages go: the bot's Matrix client in production, a list in unit tests.

    ``txn_id`` is the idempotency key: sending the same one again must not post a second message.
    Returns the event id; raises :class:`SendFailed`.
    """

    async def send(self, room_id: str, content: JsonDict, *, txn_id: str) -> str: ...


@dataclass(frozen=True)
class Reply:
    """A message in two renderings: plain text (required) and HTML (optional)."""

    text: str
    html: str | None = None

    @classmethod
    def of(cls, text: str) -> Reply:
        """Plain text, with an HTML rendering where `backticks` become code."""
        return cls(text, code_spans(text))


def escape(text: str) -> str:
    return html.escape(text, quote=False)


def code_spans(text: str) -> str:
    """Escape ``text`` for HTML, turning `backtick` spans into ``<code>`` and newlines into breaks."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an odd number of backticks: leave them as typed
        return escape(text).replace("\n", "<br/>")
    out = [escape(p) if i % 2 == 0 else f"<code>{escape(p)}</code>" for i, p in enumerate(parts)]
    return "".join(out).replace("\n", "<br/>")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> Reply:
    """A table: aligned columns in the plain body, ``<table>`` in the HTML one."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    caption = f"<p>{escape(title)}</p>" if title else ""
    return Reply("\n".join(lines), f"{caption}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def duration(seconds: float) -> str:
    """``850 ms``, ``3.2 s``, ``4 min 5 s``, ``2 h 10 min``."""
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def spoken_duration(seconds: float) -> str:
    """``12 seconds``, ``1 minute``, ``25 minutes``, ``3 hours``: for sentences."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    count = int(seconds)
    return f"{count} second{'s' if count != 1 else ''}"


def relation_to(command_event_id: str, command_content: Mapping[str, Any]) -> JsonDict:
    """The ``m.relates_to`` of an answer to a command: in its thread if it has one, else a reply."""
    relates = command_content.get("m.relates_to")
    if isinstance(relates, Mapping) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                    "m.in_reply_to": {"event_id": command_event_id}}
    return {"m.in_reply_to": {"event_id": command_event_id}}


def notice(reply: Reply, *, command_event_id: str | None, final: bool,
           relates_to: Mapping[str, Any] | None = None) -> JsonDict:
    """The content of a new notice answering the command ``command_event_id``."""
    content = _body(reply)
    if relates_to is not None:
        content["m.relates_to"] = dict(relates_to)
    if command_event_id is not None:
        content[REPLY_KEY] = {"command": command_event_id, "final": final}
    return content


def edit(original_event_id: str, reply: Reply, *, command_event_id: str | None) -> JsonDict:
    """An ``m.replace`` of ``original_event_id`` (always the original, never an earlier edit).

    The new content carries no relation (an edit cannot change them); the fallback body gets the
    ``* `` prefix clients without edits show.
    """
    new_content = _body(reply)
    if command_event_id is not None:
        new_content[REPLY_KEY] = {"command": command_event_id, "final": False}
    content = _body(Reply(f"* {reply.text}", None if reply.html is None else f"* {reply.html}"))
    content["m.new_content"] = new_content
    content["m.relates_to"] = {"rel_type": "m.replace", "event_id": original_event_id}
    return content


def _body(reply: Reply) -> JsonDict:
    content: JsonDict = {"msgtype": "m.notice", "body": reply.text}
    if reply.html is not None:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = reply.html
    return content
