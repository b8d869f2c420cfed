"""Accounts: register-or-login, tokens that are reused, profile and the Synapse admin user API.

``ensure_user`` is the idempotent form of registration the durable engine needs: a retry after a
lost reply meets ``M_USER_IN_USE`` and logs in with the password the first attempt stored, so the
password is only ever *set* on creation (re-setting it would undo a password the person changed).
Three ways to register, one per deployment, chosen when the client is built:

* a registration token (the homeserver's ``registration_requires_token``): a user-interactive
  auth dance of three POSTs — the token stage, then an ``m.login.dummy`` stage;
* the registration shared secret (Synapse's ``/_synapse/admin/v1/register``, HMAC-SHA1 signed);
* an application service (``m.login.application_service`` with its ``as_token``; such accounts
  have no password and log in with the ``as_token`` too).

Tokens are reused rather than minted: a token handed in (stored by the caller) or cached from an
earlier call is checked with ``whoami`` first, and a login always names the account's stable device.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from hiclaw_bot.clients._matrix_base import DEVICE_DISPLAY_NAME, MatrixBase, MatrixUser, device_id_for
from hiclaw_bot.clients._matrix_http import (
    ADMIN_V1,
    CLIENT_V3,
    SYSTEM,
    ForbiddenError,
    HttpReply,
    JsonDict,
    MatrixHttp,
    error_for,
    q,
)
from hiclaw_bot.clients.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermanentClientError,
    UnauthorizedError,
)
from hiclaw_bot.types import RoomId, UserId

_TOKEN_STAGE = "m.login.registration_token"  # noqa: S105 (a UIA stage name, not a secret)
_DUMMY_STAGE = "m.login.dummy"
_SUPPORTED_STAGES = frozenset({_TOKEN_STAGE, _DUMMY_STAGE})
_MAX_UIA_ROUNDS = 4


@dataclass(frozen=True)
class TokenRegistration:
    """Register through user-interactive auth with a registration token."""

    token: str = field(repr=False)


@dataclass(frozen=True)
class SharedSecretRegistration:
    """Register through Synapse's shared-secret admin endpoint; ``admin`` makes server admins."""

    shared_secret: str = field(repr=False)
    admin: bool = False


@dataclass(frozen=True)
class AppServiceRegistration:
    """Register and log in as an application service (users inside its exclusive namespace)."""

    as_token: str = field(repr=False)


Registration = TokenRegistration | SharedSecretRegistration | AppServiceRegistration


class AccountsAPI(MatrixBase):
    """Registration, login with token reuse, profile, and the admin user calls."""

    def __init__(self, http: MatrixHttp, *, server_name: str, access_token: str | None,
                 registration: Registration | None) -> None:
        super().__init__(http, server_name=server_name, access_token=access_token)
        self._registration = registration
        self._sessions: dict[UserId, MatrixUser] = {}

    async def ensure_user(self, localpart: str, password: str | None = None, *,
                          access_token: str | None = None) -> MatrixUser:
        """The account ``@localpart``, registered if missing, with a working token.

        ``password`` is required except in appservice mode (where it must be None). A valid
        ``access_token`` (stored by the caller) or a cached one is reused without any login.
        ``created`` is True only when this call registered the account.
        """
        mode = self._registration
        if mode is None:
            raise InvalidRequestError(SYSTEM, "no registration mode configured")
        _check_password(mode, password)
        user_id = self.user_id(localpart)
        reused = await self._reuse(user_id, access_token)
        if reused is not None:
            return reused
        try:
            if isinstance(mode, TokenRegistration):
                body = await self._register_with_token(localpart, str(password), mode.token)
            elif isinstance(mode, SharedSecretRegistration):
                body = await self._register_with_shared_secret(localpart, str(password), mode)
            else:
                body = await self._http.request("POST", f"{CLIENT_V3}/register", token=mode.as_token,
                                                body={"type": "m.login.application_service", "username": localpart,
                                                      **_register_fields(localpart)})
        except ConflictError as exc:
            if exc.code != "M_USER_IN_USE":
                raise
            return await self.login(localpart, password)
        return self._remember(MatrixUser(UserId(str(body["user_id"])), str(body["access_token"]),
                                         _opt_str(body.get("device_id")), created=True))

    async def login(self, localpart: str, password: str | None = None, *,
                    access_token: str | None = None) -> MatrixUser:
        """A working token for ``@localpart``: a reused one if valid, else a login on its stable device."""
        user_id = self.user_id(localpart)
        reused = await self._reuse(user_id, access_token)
        if reused is not None:
            return reused
        body: JsonDict = {"identifier": {"type": "m.id.user", "user": localpart}, **_register_fields(localpart)}
        token: str | None = None
        if isinstance(self._registration, AppServiceRegistration):
            body["type"] = "m.login.application_service"
            token = self._registration.as_token
        else:
            if password is None:
                raise InvalidRequestError(SYSTEM, f"login of {user_id} needs a password")
            body["type"] = "m.login.password"
            body["password"] = password
        path = f"{CLIENT_V3}/login"
        reply = await self._http.call("POST", path, token=token, body=body)
        if not reply.ok:
            error = error_for("POST", path, reply.status, reply.body)
            if isinstance(error, ForbiddenError):
                # A refused password is a credentials problem, not missing power.
                raise UnauthorizedError(SYSTEM, f"login of {user_id} refused: {error.message}",
                                        status=error.status, code=error.code)
            raise error
        return self._remember(MatrixUser(UserId(str(reply.body["user_id"])), str(reply.body["access_token"]),
                                         _opt_str(reply.body.get("device_id"))))

    async def list_devices(self, token: str) -> list[str]:
        """The device ids of the account that owns ``token``."""
        body = await self._http.request("GET", f"{CLIENT_V3}/devices", token=token)
        return sorted(str(device["device_id"]) for device in body.get("devices", []))

    async def displayname(self, user_id: UserId, *, token: str | None = None) -> str | None:
        """A user's display name, or None when it has none."""
        try:
            body = await self._http.request("GET", f"{CLIENT_V3}/profile/{q(user_id)}/displayname",
                                            token=self._auth(token))
        except NotFoundError:
            return None
        return _opt_str(body.get("displayname"))

    async def set_displayname(self, user_id: UserId, displayname: str, *, token: str | None = None) -> None:
        """Set a display name unless it is already that (a change is sent to every room the user is in).

        With the acting token this works for any local user when the bot is a server admin (Synapse).
        """
        if await self.displayname(user_id, token=token) != displayname:
            await self._http.request("PUT", f"{CLIENT_V3}/profile/{q(user_id)}/displayname",
                                     token=self._auth(token), body={"displayname": displayname})

    async def reset_password(self, user_id: UserId, new_password: str, *, logout_devices: bool = False) -> None:
        """Set a user's password through the Synapse admin API (an explicit reset, never part of ensure_user)."""
        await self._http.request("POST", f"{ADMIN_V1}/reset_password/{q(user_id)}", token=self._auth(None),
                                 body={"new_password": new_password, "logout_devices": logout_devices})
        if logout_devices:
            self._sessions.pop(user_id, None)

    async def deactivate_user(self, user_id: UserId) -> bool:
        """Deactivate an account; "already deactivated" and "no such user" count as done.

        Returns False when the server has no Synapse admin API (Tuwunel, Conduit): the caller then
        falls back to leaving rooms, as upstream had to.
        """
        try:
            await self._http.request("POST", f"{ADMIN_V1}/deactivate/{q(user_id)}", token=self._auth(None),
                                     body={"erase": False})
        except NotFoundError as exc:
            if exc.code == "M_UNRECOGNIZED":
                return False
        self._sessions.pop(user_id, None)
        return True

    async def logout(self, token: str) -> None:
        """End the session of ``token`` (its device goes with it); a token already revoked is success."""
        with contextlib.suppress(UnauthorizedError):
            await self._http.request("POST", f"{CLIENT_V3}/logout", token=token, body={})
        self._sessions = {user: s for user, s in self._sessions.items() if s.access_token != token}

    async def is_deactivated(self, user_id: UserId) -> bool | None:
        """Whether an account is deactivated (Synapse admin API); None when it does not exist or the
        server will not tell (no such API, or we are not a server admin)."""
        try:
            body = await self._http.request("GET", f"/_synapse/admin/v2/users/{q(user_id)}", token=self._auth(None))
        except (NotFoundError, ForbiddenError):
            return None
        return bool(body.get("deactivated"))

    async def user_exists(self, user_id: UserId) -> bool | None:
        """Whether the homeserver has an account ``user_id`` (deactivated ones included), through the
        Synapse admin API; None when the server will not tell (no such API, or we are not an admin)."""
        try:
            await self._http.request("GET", f"/_synapse/admin/v2/users/{q(user_id)}", token=self._auth(None))
        except NotFoundError as exc:
            return None if exc.code == "M_UNRECOGNIZED" else False
        except ForbiddenError:
            return None
        return True

    async def rooms_of(self, user_id: UserId) -> set[RoomId]:
        """Every room a user has joined, through the Synapse admin API (no token of theirs needed)."""
        body = await self._http.request("GET", f"{ADMIN_V1}/users/{q(user_id)}/joined_rooms", token=self._auth(None))
        return {RoomId(str(room)) for room in body.get("joined_rooms", [])}

    async def create_registration_token(self, *, uses_allowed: int | None = None) -> str:
        """Mint a registration token (Synapse admin API). Each call makes a new one: keep what it returns."""
        body = await self._http.request("POST", f"{ADMIN_V1}/registration_tokens/new", token=self._auth(None),
                                        body={"uses_allowed": uses_allowed})
        return str(body["token"])

    async def _reuse(self, user_id: UserId, access_token: str | None) -> MatrixUser | None:
        """A session from a token handed in or cached, if the server still accepts it for this user."""
        cached = self._sessions.get(user_id)
        candidates = [t for t in (access_token, cached.access_token if cached else None) if t]
        for token in dict.fromkeys(candidates):
            try:
                who = await self.whoami(token)
            except UnauthorizedError:
                continue
            if who.user_id == user_id:
                return self._remember(MatrixUser(user_id, token, who.device_id))
        self._sessions.pop(user_id, None)
        return None

    def _remember(self, user: MatrixUser) -> MatrixUser:
        self._sessions[user.user_id] = user
        return user

    async def _register_with_token(self, localpart: str, password: str, registration_token: str) -> JsonDict:
        """Registration-token UIA: the first POST opens a session, then one POST per stage."""
        path = f"{CLIENT_V3}/register"
        base = {"username": localpart, "password": password, **_register_fields(localpart)}
        reply = await self._http.call("POST", path, body=base)
        for _ in range(_MAX_UIA_ROUNDS):
            if reply.ok:
                return reply.body
            stage = _next_stage(reply)
            if stage is None:
                raise error_for("POST", path, reply.status, reply.body)
            auth: dict[str, Any] = {"type": stage, "session": reply.body["session"]}
            if stage == _TOKEN_STAGE:
                auth["token"] = registration_token
            reply = await self._http.call("POST", path, body={**base, "auth": auth})
        raise PermanentClientError(SYSTEM, f"POST {path}: registration did not finish in {_MAX_UIA_ROUNDS} stages")

    async def _register_with_shared_secret(self, localpart: str, password: str,
                                           mode: SharedSecretRegistration) -> JsonDict:
        path = f"{ADMIN_V1}/register"
        nonce = str((await self._http.request("GET", path))["nonce"])
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": mode.admin,
                "mac": _shared_secret_mac(mode, nonce, localpart, password), **_register_fields(localpart)}
        # A nonce is single-use, so a retried POST could only fail: the engine retries the whole step.
        return await self._http.request("POST", path, body=body, retry=False)


def _shared_secret_mac(mode: SharedSecretRegistration, nonce: str, localpart: str, password: str) -> str:
    """HMAC-SHA1 over ``nonce NUL user NUL password NUL admin|notadmin``, as Synapse checks it."""
    parts = (nonce, localpart, password, "admin" if mode.admin else "notadmin")
    return hmac.new(mode.shared_secret.encode(), b"\x00".join(p.encode() for p in parts), hashlib.sha1).hexdigest()


def _next_stage(reply: HttpReply) -> str | None:
    """The next UIA stage to complete, or None when the reply is a real error (or no flow fits)."""
    if reply.status != 401 or reply.errcode is not None or "session" not in reply.body:
        return None
    completed = set(reply.body.get("completed", []))
    for flow in reply.body.get("flows", []):
        stages = [str(stage) for stage in flow.get("stages", [])]
        if set(stages) <= _SUPPORTED_STAGES:
            pending = [s for s in stages if s not in completed]
            if pending:
                return pending[0]
    return None


def _register_fields(localpart: str) -> JsonDict:
    return {"device_id": device_id_for(localpart), "initial_device_display_name": DEVICE_DISPLAY_NAME}


def _check_password(mode: Registration, password: str | None) -> None:
    if isinstance(mode, AppServiceRegistration):
        if password is not None:
            raise InvalidRequestError(SYSTEM, "appservice accounts have no password")
    elif not password:
        raise InvalidRequestError(SYSTEM, "registration needs a password")


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
