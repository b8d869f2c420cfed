"""The HTTP transport under the Matrix admin client: one request, its errors, a short bounded retry.

Why a transport of our own rather than nio's: nio covers the bot's own sync and replies, but not
registration-token UIA, the Synapse admin API, alias adoption or power-level merges, and it retries
429s forever. Here every reply is turned into the client error tree
(:mod:`hiclaw_bot.clients.errors`) with the Matrix ``errcode`` kept in ``.code``, so callers branch
on ``M_USER_IN_USE`` or ``M_ROOM_IN_USE`` and the engine classifies the rest by its flags.

Retries stay short and bounded (a few attempts, a few seconds): the engine retries whole steps
with a longer backoff, and a step is only safe to re-run because every call above this layer is
idempotent. A 429 whose ``Retry-After`` asks for longer than ``max_wait`` is not waited for here;
it is raised at once with ``retry_after`` set, and the engine waits instead.

Secrets: access tokens travel in the ``Authorization`` header only, never in a URL; messages and
log lines carry the method, the path and the server's ``errcode``, never a header or a body we sent.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from hiclaw_bot.clients.errors import (
    ClientError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermanentClientError,
    TransientClientError,
    UnauthorizedError,
)
from hiclaw_bot.timing import SYSTEM_CLOCK, Backoff, Clock

logger = logging.getLogger(__name__)

SYSTEM = "matrix"
CLIENT_V3 = "/_matrix/client/v3"
CLIENT_V1 = "/_matrix/client/v1"
ADMIN_V1 = "/_synapse/admin/v1"

JsonDict = dict[str, Any]

_CONFLICT_CODES = frozenset({"M_USER_IN_USE", "M_ROOM_IN_USE", "M_EXCLUSIVE"})
_AUTH_CODES = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"})
_MAX_SERVER_MESSAGE = 200


class ForbiddenError(PermanentClientError):
    """The server understood us but refuses: missing power in a room, a banned user, a wrong password."""


def q(segment: str) -> str:
    """Quote one path segment (``!room:hs``, ``#alias:hs``, ``@user:hs``) for a Matrix URL."""
    return quote(segment, safe="")


@dataclass(frozen=True)
class HttpReply:
    """A reply whose status was not transient: the caller decides what a 4xx means.

    ``data`` is the decoded JSON (an object, or a list for the few endpoints that answer with one).
    """

    status: int
    data: JsonDict | list[Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def body(self) -> JsonDict:
        return self.data if isinstance(self.data, dict) else {}

    @property
    def errcode(self) -> str | None:
        code = self.body.get("errcode")
        return code if isinstance(code, str) else None


def error_for(method: str, path: str, status: int, body: Mapping[str, Any],
              retry_after: float | None = None) -> ClientError:
    """The client error for a failed reply; ``errcode`` goes to ``.code``, the server's text is trimmed."""
    errcode = body.get("errcode") if isinstance(body.get("errcode"), str) else None
    text = str(body.get("error", ""))[:_MAX_SERVER_MESSAGE]
    message = " ".join(part for part in (f"{method} {path} → {status}", errcode, text) if part)
    cls: type[ClientError]
    if status == 429 or errcode == "M_LIMIT_EXCEEDED" or status >= 500:
        cls = TransientClientError
    elif errcode in _CONFLICT_CODES or status == 409:
        cls = ConflictError
    elif status == 404 or errcode == "M_NOT_FOUND":
        cls = NotFoundError
    elif status == 401 or errcode in _AUTH_CODES:
        cls = UnauthorizedError
    elif status == 403:
        cls = ForbiddenError
    else:
        cls = InvalidRequestError
    return cls(SYSTEM, message, status=status, code=errcode, retry_after=retry_after)


def _retry_after(headers: Mapping[str, str], body: Mapping[str, Any]) -> float | None:
    """The server's wait hint: the ``Retry-After`` header (seconds or a date, MSC4041), else ``retry_after_ms``."""
    header = headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    millis = body.get("retry_after_ms")
    if isinstance(millis, int | float) and not isinstance(millis, bool):
        return max(0.0, millis / 1000)
    return None


def _retry_after_of(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, ClientError) else None


class MatrixHttp:
    """JSON over HTTP to one homeserver, with bounded retries of transient failures.

    ``session`` may be shared with other clients; a session created here is closed by :meth:`close`.
    """

    def __init__(self, base_url: str, *, session: aiohttp.ClientSession | None = None,
                 timeout: float = 10.0, attempts: int = 3, max_wait: float = 5.0,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = attempts
        self._max_wait = max_wait
        self._backoff = Backoff(first=0.1, cap=max_wait, jitter=0.25, hint_cap=max_wait)
        self._clock = clock

    def __repr__(self) -> str:
        return f"MatrixHttp({self.base_url!r})"

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, token: str | None = None,
                      body: Mapping[str, Any] | None = None, params: Mapping[str, str] | None = None,
                      retry: bool = True) -> JsonDict:
        """Send and return the JSON reply of a 2xx; raise the matching client error otherwise."""
        reply = await self.call(method, path, token=token, body=body, params=params, retry=retry)
        if not reply.ok:
            raise error_for(method, path, reply.status, reply.body)
        if not isinstance(reply.data, dict):
            raise PermanentClientError(SYSTEM, f"{method} {path} → {reply.status} with a list, not an object")
        return reply.data

    async def request_list(self, method: str, path: str, *, token: str | None = None) -> list[Any]:
        """Like :meth:`request`, for the endpoints whose reply is a JSON list (``GET /rooms/{id}/state``)."""
        reply = await self.call(method, path, token=token)
        if not reply.ok:
            raise error_for(method, path, reply.status, reply.body)
        if not isinstance(reply.data, list):
            raise PermanentClientError(SYSTEM, f"{method} {path} → {reply.status} with an object, not a list")
        return reply.data

    async def call(self, method: str, path: str, *, token: str | None = None,
                   body: Mapping[str, Any] | None = None, params: Mapping[str, str] | None = None,
                   retry: bool = True) -> HttpReply:
        """Send and return any non-transient reply (UIA reads its 401s); transient ones raise or retry."""
        if not retry:
            return await self._once(method, path, token, body, params)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._backoff.tenacity_wait(_retry_after_of),
            retry=retry_if_exception(self._worth_retrying),
            sleep=self._clock.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                reply = await self._once(method, path, token, body, params)
        return reply

    def _worth_retrying(self, exc: BaseException) -> bool:
        if not isinstance(exc, TransientClientError):
            return False
        return exc.retry_after is None or exc.retry_after <= self._max_wait

    async def _once(self, method: str, path: str, token: str | None, body: Mapping[str, Any] | None,
                    params: Mapping[str, str] | None) -> HttpReply:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self._session.request(method, self.base_url + path, json=body, params=params,
                                             headers=headers, timeout=self._timeout) as response:
                status = response.status
                raw = await response.read()
                response_headers = response.headers
        except TimeoutError as exc:
            raise TransientClientError(SYSTEM, f"{method} {path}: timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientClientError(SYSTEM, f"{method} {path}: {type(exc).__name__}") from exc
        parsed = _parse(raw)
        body = parsed if isinstance(parsed, dict) else {}
        logger.debug("%s %s → %s %s", method, path, status, body.get("errcode", ""))
        if status == 429 or status >= 500:
            raise error_for(method, path, status, body, _retry_after(response_headers, body))
        if parsed is None:
            if 200 <= status < 300:
                raise PermanentClientError(SYSTEM, f"{method} {path} → {status} with a reply that is not JSON",
                                           status=status)
            parsed = {}
        return HttpReply(status, parsed)


def _parse(raw: bytes) -> JsonDict | list[Any] | None:
    """The decoded reply; an empty body counts as ``{}``, a body that is not a JSON object or list as None."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict | list) else None
