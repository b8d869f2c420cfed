"""The Higress console session under :class:`~hiclaw_bot.clients.higress.HigressClient`: a call, its errors, the login.

The session cookie never expires by time; a 401 means the password or the console's secret
changed. So a call that answers 401/403 logs in again once (initialising a fresh console first)
and is repeated: the console applied nothing. Every console answer is mapped to the client error
tree here, with the password and the caller's secrets masked out of the console's message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self

import aiohttp

from hiclaw_bot.clients.errors import (
    ClientError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    TransientClientError,
    UnauthorizedError,
)

SYSTEM = "higress"
COOKIE = "_hi_sess"


@dataclass
class HigressStats:
    """Counters for benchmarks and tests: how much work the authorizations took."""

    puts: int = 0
    conflicts: int = 0
    retries: int = 0
    logins: int = 0


class ConsoleSession:
    """An aiohttp session logged in to one Higress console. Use as ``async with``."""

    def __init__(self, url: str, username: str, password: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None
        self._cookie: str | None = None
        self._login_lock = asyncio.Lock()
        self.stats = HigressStats()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, username={self.username!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _get_data(self, path: str, params: dict[str, str] | None = None) -> Any:
        envelope = await self._call("GET", path, params=params)
        return envelope.get("data") if isinstance(envelope, dict) else None

    async def _call(self, method: str, path: str, *, payload: Any = None, params: dict[str, str] | None = None,
                    secrets: Sequence[str] = ()) -> Any:
        """One console call; on 401/403 log in again once and repeat it (the console applied nothing)."""
        used = self._cookie
        for relogin in (False, True):
            if used is None or relogin:
                await self._login(stale=used)
            used = self._cookie
            reply = await self._send(method, path, payload=payload, params=params, cookie=used)
            if reply.status not in (401, 403):
                break
        if reply.status >= 400:
            raise _error(method, path, reply, (*secrets, self._password))
        return reply.body

    async def _send(self, method: str, path: str, *, payload: Any = None, params: dict[str, str] | None = None,
                    cookie: str | None = None) -> _Reply:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar())
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
        try:
            async with self._http.request(method, self.url + path, json=payload, params=params,
                                          headers=headers) as response:
                raw = await response.read()
                morsel = response.cookies.get(COOKIE)
                retry_after = response.headers.get("Retry-After", "")
                return _Reply(response.status, _parse(raw), float(retry_after) if retry_after.isdigit() else None,
                              morsel.value if morsel is not None else None)
        except TimeoutError:
            raise TransientClientError(SYSTEM, f"{method} {path}: timed out") from None
        except aiohttp.ClientError as exc:
            raise TransientClientError(SYSTEM, f"{method} {path}: {type(exc).__name__}") from None

    async def _login(self, *, stale: str | None) -> None:
        """Log in unless another task already replaced the ``stale`` cookie; initialise a fresh console."""
        async with self._login_lock:
            if self._cookie is not None and self._cookie != stale:
                return
            self._cookie = None
            credentials = {"username": self.username, "password": self._password}
            user = {"name": self.username, "password": self._password, "displayName": self.username}
            for step in ("login", "init", "login"):
                if step == "init":
                    reply = await self._send("POST", "/system/init", payload={"adminUser": user})
                    if reply.status == 400:  # 500 "already initialized" is expected on a console set up before
                        raise _error("POST", "/system/init", reply, (self._password,))
                    continue
                self.stats.logins += 1
                reply = await self._send("POST", "/session/login", payload=credentials)
                if reply.status < 400 and reply.cookie:
                    self._cookie = reply.cookie
                    return
                if reply.status != 401:
                    raise _error("POST", "/session/login", reply, (self._password,))
            raise UnauthorizedError(SYSTEM, f"login as {self.username} was rejected", status=401)


class _Reply(NamedTuple):
    status: int
    body: Any
    retry_after: float | None
    cookie: str | None


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _error(method: str, path: str, reply: _Reply, secrets: Sequence[str]) -> ClientError:
    """Map a console answer to the client error tree. The console's message names a Java exception."""
    status = reply.status
    message = reply.body.get("message") if isinstance(reply.body, dict) else None
    detail = ""
    if isinstance(message, str) and message:
        exception, _, text = message.partition(": ")
        detail = f"{exception.rsplit('.', 1)[-1]}: {text}" if text else message
        for secret in secrets:
            detail = detail.replace(secret, "***")
    text = f"{method} {path} answered {status}" + (f" ({detail})" if detail else "")
    kind: type[ClientError]
    if status == 400:
        kind = InvalidRequestError
    elif status in (401, 403):
        kind = UnauthorizedError
    elif status == 404 or "NotFoundException" in detail:
        kind = NotFoundError
    elif status == 409:
        kind = ConflictError
    elif status >= 500 and ("IllegalArgumentException" in detail or "ValidationException" in detail):
        kind = InvalidRequestError  # the console throws some validation failures as 500
    elif status >= 500 or status == 429:
        kind = TransientClientError
    else:
        kind = InvalidRequestError
    return kind(SYSTEM, text, status=status, retry_after=reply.retry_after)
