"""Rooms: create-or-adopt by alias, then reconcile name, meta, power levels and membership.

The alias is the room's idempotency key. ``createRoom`` with ``room_alias_name`` either makes the
room, with all its desired state in that one call (name, topic, meta, power levels, invites), or
fails with ``M_ROOM_IN_USE``, and then the alias is resolved and its room adopted: the case where a
room was created but the reply was lost (upstream's duplicate rooms, #444/#818) becomes a no-op.
An adopted room is then brought to the desired state, each part written only when it differs:

* power levels are **merged**: the current ``m.room.power_levels`` is read and only the ``users``
  entries we want are changed; a wholesale PUT would drop entries someone else set (an upstream trap);
* membership is diffed: missing users are invited, extras kicked, except us and the room's creators;
* in room versions 12 and later the creators hold unlimited power and must not be listed in
  ``users`` at all (MSC4289), so they are left out of the merge.

The other calls are idempotent one by one: inviting a member, kicking a non-member, leaving a room
one is not in and deleting an alias that is gone all succeed without doing anything.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from hiclaw_bot.clients._matrix_base import EnsuredRoom, MatrixBase
from hiclaw_bot.clients._matrix_http import CLIENT_V3, SYSTEM, ForbiddenError, JsonDict, q
from hiclaw_bot.clients.errors import ConflictError, NotFoundError, TransientClientError
from hiclaw_bot.types import RoomAlias, RoomId, UserId

ROOM_META = "io.hiclaw.room.meta"
"""The state event (empty state key) that says what a room is for; read by reconcilers and sweeps."""

_PRESENT = frozenset({"join", "invite"})
_PRIVILEGED_CREATOR_VERSIONS = frozenset({"org.matrix.hydra.11"})


def _creators_privileged(room_version: str) -> bool:
    """Whether creators have unlimited power in this room version (MSC4289: v12 and later)."""
    return room_version in _PRIVILEGED_CREATOR_VERSIONS or (room_version.isdigit() and int(room_version) >= 12)


@dataclass
class _RoomState:
    """The parts of a room's full state that reconciliation compares against."""

    creators: set[UserId] = field(default_factory=set)
    creators_privileged: bool = False
    power_levels: JsonDict = field(default_factory=dict)
    contents: dict[str, JsonDict] = field(default_factory=dict)
    membership: dict[UserId, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, events: list[Any]) -> _RoomState:
        state = cls()
        for event in events:
            kind, key, content = event.get("type"), event.get("state_key"), event.get("content") or {}
            if kind == "m.room.create":
                state.creators = {UserId(event["sender"]), *map(UserId, content.get("additional_creators", []))}
                state.creators_privileged = _creators_privileged(str(content.get("room_version", "1")))
            elif kind == "m.room.member":
                state.membership[UserId(key)] = str(content.get("membership"))
            elif key == "":
                state.contents[kind] = content
        state.power_levels = state.contents.get("m.room.power_levels", {})
        return state

    def present(self) -> set[UserId]:
        return {user for user, membership in self.membership.items() if membership in _PRESENT}


class RoomsAPI(MatrixBase):
    """Room creation by alias, membership, state; all with the acting token unless one is given."""

    async def ensure_room(self, alias_localpart: str, *, name: str, topic: str | None = None,
                          invite: Collection[UserId] = (), power_users: Mapping[UserId, int] | None = None,
                          meta: Mapping[str, Any] | None = None, preset: str = "private_chat",
                          keep_others: bool = False) -> EnsuredRoom:
        """The room behind ``#alias_localpart``: created, or adopted, then reconciled.

        ``invite`` is the desired membership besides us: others are kicked (never us or the creators),
        unless ``keep_others`` is set, for rooms where people we do not manage may also be members.
        ``power_users`` is merged into the room's power levels. ``meta`` is the content of the
        :data:`ROOM_META` state event.
        """
        alias = self.room_alias(alias_localpart)
        me = await self.me()
        request: JsonDict = {"room_alias_name": alias_localpart, "name": name, "preset": preset,
                             "invite": sorted(set(invite) - {me})}
        if topic is not None:
            request["topic"] = topic
        if meta is not None:
            request["initial_state"] = [{"type": ROOM_META, "state_key": "", "content": dict(meta)}]
        if power_users:
            # Power levels go in the createRoom call itself: a follow-up PUT is one more event for
            # the server to author and one more round trip on a team's critical path.
            users = dict(power_users)
            if _creators_privileged(await self.default_room_version()):
                users.pop(me, None)
            else:  # the override replaces the default ``users``, which held us at 100
                users = {me: 100, **users}
            request["power_level_content_override"] = {"users": users}
        try:
            body = await self._http.request("POST", f"{CLIENT_V3}/createRoom", token=self._auth(None), body=request)
        except ConflictError as exc:
            if exc.code != "M_ROOM_IN_USE":
                raise
            room_id = await self._adopt(alias)
            await self._reconcile(room_id, me, name=name, topic=topic, invite=set(invite),
                                  power_users=dict(power_users or {}), meta=meta, keep_others=keep_others)
            return EnsuredRoom(room_id, alias, created=False)
        # Made just now from the request above: its state is the desired state, nothing to reconcile.
        return EnsuredRoom(RoomId(str(body["room_id"])), alias, created=True)

    async def resolve_alias(self, alias: RoomAlias) -> RoomId:
        """The room an alias points to; ``NotFoundError`` when there is none."""
        body = await self._http.request("GET", f"{CLIENT_V3}/directory/room/{q(alias)}", token=self._auth(None))
        return RoomId(str(body["room_id"]))

    async def delete_alias(self, alias: RoomAlias) -> None:
        """Remove an alias (the room and its history stay); an alias that is gone is success."""
        try:
            await self._http.request("DELETE", f"{CLIENT_V3}/directory/room/{q(alias)}", token=self._auth(None))
        except NotFoundError:
            return

    async def invite(self, room_id: RoomId, user_id: UserId) -> None:
        """Invite a user unless already invited or joined (a second invite would be a new event)."""
        if await self.membership(room_id, user_id) in _PRESENT:
            return
        await self._http.request("POST", f"{CLIENT_V3}/rooms/{q(room_id)}/invite", token=self._auth(None),
                                 body={"user_id": user_id})

    async def kick(self, room_id: RoomId, user_id: UserId, *, reason: str | None = None) -> None:
        """Remove a member or withdraw an invite; a user who is not there is left alone."""
        if await self.membership(room_id, user_id) not in {*_PRESENT, "knock"}:
            return
        body: JsonDict = {"user_id": user_id}
        if reason:
            body["reason"] = reason
        await self._http.request("POST", f"{CLIENT_V3}/rooms/{q(room_id)}/kick", token=self._auth(None), body=body)

    async def join(self, room: RoomId | RoomAlias, *, token: str | None = None) -> RoomId:
        """Join as the owner of ``token`` (the acting user by default); joining twice is a no-op."""
        body = await self._http.request("POST", f"{CLIENT_V3}/join/{q(room)}", token=self._auth(token), body={})
        return RoomId(str(body["room_id"]))

    async def leave(self, room_id: RoomId, *, token: str | None = None) -> None:
        """Leave (or decline an invite) as the owner of ``token``; not being in the room is success."""
        auth = self._auth(token)
        try:
            await self._http.request("POST", f"{CLIENT_V3}/rooms/{q(room_id)}/leave", token=auth, body={})
        except (ForbiddenError, NotFoundError):
            if room_id in await self.joined_rooms(token=auth):
                raise

    async def joined_rooms(self, *, token: str | None = None) -> set[RoomId]:
        body = await self._http.request("GET", f"{CLIENT_V3}/joined_rooms", token=self._auth(token))
        return {RoomId(str(room)) for room in body.get("joined_rooms", [])}

    async def room_aliases(self, room_id: RoomId) -> list[RoomAlias]:
        """The local aliases of a room (ours and others' on this server), for the orphan sweep."""
        body = await self._http.request("GET", f"{CLIENT_V3}/rooms/{q(room_id)}/aliases", token=self._auth(None))
        return [RoomAlias(str(alias)) for alias in body.get("aliases", [])]

    async def joined_members(self, room_id: RoomId, *, token: str | None = None) -> dict[UserId, str | None]:
        """The joined members of a room and their display names."""
        body = await self._http.request("GET", f"{CLIENT_V3}/rooms/{q(room_id)}/joined_members",
                                        token=self._auth(token))
        return {UserId(user): (info or {}).get("display_name") for user, info in body.get("joined", {}).items()}

    async def members(self, room_id: RoomId) -> dict[UserId, str]:
        """Everyone who is in a room or on the way in (``join``, ``invite``, ``knock``), with their membership."""
        body = await self._http.request("GET", f"{CLIENT_V3}/rooms/{q(room_id)}/members", token=self._auth(None),
                                        params={"not_membership": "leave"})
        found = {UserId(str(e["state_key"])): str((e.get("content") or {}).get("membership"))
                 for e in body.get("chunk", [])}
        return {user: membership for user, membership in found.items() if membership != "ban"}

    async def membership(self, room_id: RoomId, user_id: UserId) -> str | None:
        """``join``, ``invite``, ``leave``, ``ban`` or ``knock``; None if the user never was in the room."""
        content = await self.state(room_id, "m.room.member", user_id)
        return None if content is None else str(content.get("membership"))

    async def set_user_power(self, room_id: RoomId, user_id: UserId, level: int | None) -> None:
        """Merge one user's entry into the room's power levels (None removes it); written only if it differs."""
        current = await self.state(room_id, "m.room.power_levels") or {}
        users = dict(current.get("users", {}))
        if users.get(user_id) == level:
            return
        if level is None:
            users.pop(user_id, None)
        else:
            users[user_id] = level
        await self._put_state_if_changed(room_id, "m.room.power_levels", {**current, "users": users}, current)

    async def rename_room(self, room_id: RoomId, name: str) -> None:
        await self._put_state_if_changed(room_id, "m.room.name", {"name": name},
                                         await self.state(room_id, "m.room.name"))

    async def merge_power_levels(self, room_id: RoomId, users: Mapping[UserId, int | None]) -> bool:
        """Set (or, for None, drop) the ``users`` entries given; every other entry stays as it is.

        Returns whether anything was written. Creators with unlimited power (MSC4289) are left out.
        """
        room = _RoomState.parse(await self._http.request_list("GET", f"{CLIENT_V3}/rooms/{q(room_id)}/state",
                                                              token=self._auth(None)))
        current = room.power_levels
        if room.creators_privileged:
            users = {user: level for user, level in users.items() if user not in room.creators}
        merged = dict(current.get("users", {}))
        for user, level in users.items():
            if level is None:
                merged.pop(user, None)
            else:
                merged[user] = level
        if merged == dict(current.get("users", {})):
            return False
        await self._put_state_if_changed(room_id, "m.room.power_levels", {**current, "users": merged}, current)
        return True

    async def state(self, room_id: RoomId, event_type: str, state_key: str = "") -> JsonDict | None:
        """The content of one state event, or None if the room has none."""
        path = f"{CLIENT_V3}/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}"
        try:
            return await self._http.request("GET", path, token=self._auth(None))
        except NotFoundError:
            return None

    async def _put_state_if_changed(self, room_id: RoomId, event_type: str, content: Mapping[str, Any],
                                    current: Mapping[str, Any] | None) -> None:
        """PUT a state event unless ``current`` (its content as read) already is ``content``."""
        if current is None or dict(current) != dict(content):
            await self._http.request("PUT", f"{CLIENT_V3}/rooms/{q(room_id)}/state/{q(event_type)}/",
                                     token=self._auth(None), body=dict(content))

    async def _adopt(self, alias: RoomAlias) -> RoomId:
        """The room an alias we could not create points to, joined by us (a no-op if we are in it)."""
        try:
            room_id = await self.resolve_alias(alias)
        except NotFoundError as exc:
            # Taken a moment ago, gone now: someone is deleting it; the next attempt will see which won.
            raise TransientClientError(SYSTEM, f"alias {alias} is in use but does not resolve") from exc
        await self.join(room_id)
        return room_id

    async def _reconcile(self, room_id: RoomId, me: UserId, *, name: str, topic: str | None, invite: set[UserId],
                         power_users: dict[UserId, int], meta: Mapping[str, Any] | None,
                         keep_others: bool = False) -> None:
        events = await self._http.request_list("GET", f"{CLIENT_V3}/rooms/{q(room_id)}/state",
                                               token=self._auth(None))
        room = _RoomState.parse(events)
        await self._put_state_if_changed(room_id, "m.room.name", {"name": name}, room.contents.get("m.room.name"))
        current_topic = room.contents.get("m.room.topic")
        # Servers add the rich form (``m.topic``, MSC3765) to the topic createRoom set: compare the text.
        if topic is not None and (current_topic or {}).get("topic") != topic:
            await self._put_state_if_changed(room_id, "m.room.topic", {"topic": topic}, current_topic)
        if meta is not None:
            await self._put_state_if_changed(room_id, ROOM_META, meta, room.contents.get(ROOM_META))
        if room.creators_privileged:
            power_users = {user: level for user, level in power_users.items() if user not in room.creators}
        users = dict(room.power_levels.get("users", {}))
        if any(users.get(user) != level for user, level in power_users.items()):
            await self._put_state_if_changed(room_id, "m.room.power_levels",
                                             {**room.power_levels, "users": {**users, **power_users}},
                                             room.power_levels)
        present = room.present()
        for user in sorted(invite - present - {me}):
            await self._http.request("POST", f"{CLIENT_V3}/rooms/{q(room_id)}/invite", token=self._auth(None),
                                     body={"user_id": user})
        for user in sorted(() if keep_others else present - invite - {me} - room.creators):
            await self._http.request("POST", f"{CLIENT_V3}/rooms/{q(room_id)}/kick", token=self._auth(None),
                                     body={"user_id": user})
