"""What every endpoint group of the Matrix admin client shares: the transport, names, tokens, results.

The client is composed of one mixin per concern (accounts, rooms, messages) over this base, as
mautrix-python composes its ``ClientAPI``, so each file stays small and reads as one part of the spec.

Deterministic names are built here and nowhere else: ``@<localpart>:<server>`` for users,
``#<localpart>:<server>`` for room aliases, and a device id derived from the localpart, so a second
login of the same account reuses its device instead of adding one (upstream piled up ~288 devices a day).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hiclaw_bot.clients._matrix_http import CLIENT_V3, SYSTEM, MatrixHttp
from hiclaw_bot.clients.errors import UnauthorizedError
from hiclaw_bot.types import RoomAlias, RoomId, UserId

DEVICE_DISPLAY_NAME = "hiclaw-bot"


def device_id_for(localpart: str) -> str:
    """The one device id an account uses for every login: stable, so devices never pile up."""
    return f"HICLAW_{localpart.upper()}"


@dataclass(frozen=True)
class MatrixUser:
    """An account and a working access token for it (the token never appears in a repr)."""

    user_id: UserId
    access_token: str = field(repr=False)
    device_id: str | None
    created: bool = False
    """True only for the call that registered the account."""


@dataclass(frozen=True)
class Whoami:
    user_id: UserId
    device_id: str | None


@dataclass(frozen=True)
class EnsuredRoom:
    room_id: RoomId
    alias: RoomAlias
    created: bool
    """False when the alias already existed and its room was adopted."""


class MatrixBase:
    """The transport plus the acting identity: the bot's own (server admin) access token."""

    def __init__(self, http: MatrixHttp, *, server_name: str, access_token: str | None) -> None:
        self._http = http
        self.server_name = server_name
        self._access_token = access_token
        self._me: UserId | None = None
        self._default_room_version: str | None = None

    def user_id(self, localpart: str) -> UserId:
        return UserId(f"@{localpart}:{self.server_name}")

    def room_alias(self, localpart: str) -> RoomAlias:
        return RoomAlias(f"#{localpart}:{self.server_name}")

    def _auth(self, token: str | None) -> str:
        """The token for a call: the one given, else the acting token."""
        chosen = token or self._access_token
        if not chosen:
            raise UnauthorizedError(SYSTEM, "this call needs an access token and none was configured")
        return chosen

    async def whoami(self, token: str | None = None) -> Whoami:
        """Who a token belongs to (the acting token by default); ``UnauthorizedError`` if it is not valid."""
        body = await self._http.request("GET", f"{CLIENT_V3}/account/whoami", token=self._auth(token))
        device = body.get("device_id")
        return Whoami(UserId(str(body["user_id"])), device if isinstance(device, str) else None)

    async def me(self) -> UserId:
        """The acting user's id, asked once."""
        if self._me is None:
            self._me = (await self.whoami()).user_id
        return self._me

    async def default_room_version(self) -> str:
        """The version of the rooms this server creates, asked once (``/capabilities``)."""
        if self._default_room_version is None:
            body = await self._http.request("GET", f"{CLIENT_V3}/capabilities", token=self._auth(None))
            versions = (body.get("capabilities") or {}).get("m.room_versions") or {}
            self._default_room_version = str(versions.get("default", "1"))
        return self._default_room_version
