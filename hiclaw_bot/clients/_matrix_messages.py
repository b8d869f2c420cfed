"""Messages: notices sent exactly once, edits of them, and reading a room back.

Replies are ``m.notice`` because bots must not answer notices, so two bots never loop. A send is a
``PUT`` with a transaction id chosen by the caller: the homeserver answers a repeated transaction
(same token, same id) with the event it already made, so a retry after a lost reply does not post
twice. Progress messages are edited in place with ``m.replace`` on the *original* event id; the edit
repeats the content under ``m.new_content`` and a ``* `` fallback body for clients without edits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hiclaw_bot.clients._matrix_base import MatrixBase
from hiclaw_bot.clients._matrix_http import CLIENT_V1, CLIENT_V3, JsonDict, q
from hiclaw_bot.types import EventId, RoomId, UserId

_HTML = "org.matrix.custom.html"


@dataclass(frozen=True)
class RoomEvent:
    """One timeline event, as the client API returns it."""

    event_id: EventId
    sender: UserId
    type: str
    content: Mapping[str, Any] = field(repr=False)
    origin_server_ts: int

    @classmethod
    def from_json(cls, event: Mapping[str, Any]) -> RoomEvent:
        return cls(EventId(str(event["event_id"])), UserId(str(event["sender"])), str(event["type"]),
                   dict(event.get("content") or {}), int(event.get("origin_server_ts", 0)))

    @property
    def body(self) -> str | None:
        body = self.content.get("body")
        return body if isinstance(body, str) else None


def _notice(body: str, html: str | None) -> JsonDict:
    content: JsonDict = {"msgtype": "m.notice", "body": body}
    if html is not None:
        content["format"] = _HTML
        content["formatted_body"] = html
    return content


class MessagesAPI(MatrixBase):
    """Send, edit and read messages; as the acting user unless a token is given."""

    async def send_notice(self, room_id: RoomId, body: str, *, txn_id: str, html: str | None = None,
                          relates_to: Mapping[str, Any] | None = None, token: str | None = None) -> EventId:
        """Send an ``m.notice``; the same ``txn_id`` (with the same token) yields the same event."""
        content = _notice(body, html)
        if relates_to is not None:
            content["m.relates_to"] = dict(relates_to)
        return await self._send(room_id, content, txn_id, token)

    async def send_text(self, room_id: RoomId, body: str, *, txn_id: str, token: str | None = None) -> EventId:
        """Send an ``m.text``: what a person (or an agent giving commands) sends; bots answer these."""
        return await self._send(room_id, {"msgtype": "m.text", "body": body}, txn_id, token)

    async def edit_notice(self, room_id: RoomId, event_id: EventId, body: str, *, txn_id: str,
                          html: str | None = None, token: str | None = None) -> EventId:
        """Replace the text of the notice ``event_id`` (always the original, never an earlier edit)."""
        content = _notice(f"* {body}", None if html is None else f"* {html}")
        content["m.new_content"] = _notice(body, html)
        content["m.relates_to"] = {"rel_type": "m.replace", "event_id": event_id}
        return await self._send(room_id, content, txn_id, token)

    async def edits(self, room_id: RoomId, event_id: EventId, *, limit: int = 50,
                    token: str | None = None) -> list[RoomEvent]:
        """The ``m.replace`` edits of an event, newest first, at most ``limit``."""
        path = f"{CLIENT_V1}/rooms/{q(room_id)}/relations/{q(event_id)}/m.replace"
        body = await self._http.request("GET", path, token=self._auth(token),
                                        params={"limit": str(limit), "dir": "b"})
        return [RoomEvent.from_json(event) for event in body.get("chunk", [])][:limit]

    async def recent_messages(self, room_id: RoomId, *, limit: int = 20, token: str | None = None) -> list[RoomEvent]:
        """The latest ``m.room.message`` events of a room, newest first."""
        params = {"dir": "b", "limit": str(limit), "filter": json.dumps({"types": ["m.room.message"]})}
        body = await self._http.request("GET", f"{CLIENT_V3}/rooms/{q(room_id)}/messages", token=self._auth(token),
                                        params=params)
        return [RoomEvent.from_json(event) for event in body.get("chunk", [])]

    async def _send(self, room_id: RoomId, content: JsonDict, txn_id: str, token: str | None) -> EventId:
        path = f"{CLIENT_V3}/rooms/{q(room_id)}/send/m.room.message/{q(txn_id)}"
        body = await self._http.request("PUT", path, token=self._auth(token), body=content)
        return EventId(str(body["event_id"]))
