"""The bot's Matrix connection through matrix-nio: login, sends that retry safely, event conversion.

Only this module and :mod:`hiclaw_bot.chat.bot` know nio's types; the command layer sees
:class:`~hiclaw_bot.chat.context.Incoming` and an :class:`~hiclaw_bot.chat.replies.Outbox`.

* **Login** reuses an access token rather than minting one per start: the configured token, else
  the one cached in ``store.secrets`` (owner ``matrix:<bot user id>``), checked with ``whoami``;
  only when neither works does it log in with the password, always on the configured device id, so
  the account does not collect a device per restart.
* **Sends** are ``PUT``s with a transaction id chosen by the caller; a send that fails with a
  timeout, a reset connection, a 5xx or a 429 is retried with the *same* id, which the homeserver
  deduplicates, so a retry never posts twice. nio's own retry loops are switched off
  (``max_timeouts=0``, ``max_limit_exceeded=0``): left on, they retry a 429 forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import nio

from hiclaw_bot.chat.context import Incoming
from hiclaw_bot.chat.replies import JsonDict, SendFailed
from hiclaw_bot.config import BotAccount
from hiclaw_bot.engine import describe
from hiclaw_bot.timing import SYSTEM_CLOCK, Backoff, Clock
from hiclaw_bot.types import EventId, RoomId, UserId
from storage import Store

log = logging.getLogger("hiclaw_bot.chat.matrix")

TOKEN_SECRET = "access_token"  # noqa: S105 (the name of the stored secret, not a secret)
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
_UNKNOWN_TOKEN = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"})


class LoginFailed(Exception):
    """The bot cannot log in; the message says why (never with a secret in it)."""


def new_client(homeserver: str, user_id: str, device_id: str) -> nio.AsyncClient:
    config = nio.AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0, encryption_enabled=False,
                                   store_sync_tokens=False, request_timeout=30)
    return nio.AsyncClient(homeserver, user=user_id, device_id=device_id, store_path="", config=config)


def secret_owner(user_id: str) -> str:
    return f"matrix:{user_id}"


def http_status(response: Any) -> int | None:
    transport = getattr(response, "transport_response", None)
    status = getattr(transport, "status", None)
    return status if isinstance(status, int) else None


def unknown_token(response: Any) -> bool:
    return isinstance(response, nio.ErrorResponse) and (response.status_code in _UNKNOWN_TOKEN
                                                        or http_status(response) == 401)


async def login(client: nio.AsyncClient, account: BotAccount, store: Store) -> None:
    """Give ``client`` a working access token; see the module docstring for the order of attempts."""
    user_id = client.user
    if account.access_token is not None:
        if await _token_works(client, user_id, account.device_id, account.access_token.get_secret_value()):
            return
        raise LoginFailed(f"the configured access token of {user_id} is not accepted")
    cached = await store.secrets.get(secret_owner(user_id), TOKEN_SECRET)
    if cached is not None and await _token_works(client, user_id, account.device_id, cached.reveal()):
        return
    if account.password is None:
        raise LoginFailed(f"no working token for {user_id}, and no password to log in with")
    client.device_id = account.device_id
    response = await client.login(password=account.password.get_secret_value(), device_name="hiclaw-bot")
    if not isinstance(response, nio.LoginResponse):
        raise LoginFailed(f"login of {user_id} failed: {getattr(response, 'message', 'no reason given')}")
    await store.secrets.put(secret_owner(user_id), TOKEN_SECRET, response.access_token)
    log.info("logged in as %s on device %s", user_id, response.device_id)


async def _token_works(client: nio.AsyncClient, user_id: str, device_id: str, token: str) -> bool:
    client.restore_login(user_id, device_id, token)
    response = await client.whoami()
    if isinstance(response, nio.WhoamiResponse):
        return bool(response.user_id == user_id)
    if unknown_token(response):
        client.access_token = ""
        return False
    raise LoginFailed(f"cannot check the token of {user_id}: {getattr(response, 'message', response)}")


SEND_BACKOFF = Backoff(first=0.2, cap=5.0, jitter=0.0, hint_cap=5.0)
"""Waits between attempts to send one message: 0.2 s doubling to 5 s; a rate limit's hint, up to 5 s."""


class NioOutbox:
    """Sends with retries of transient failures under the same transaction id."""

    def __init__(self, client: nio.AsyncClient, *, attempts: int = 5, backoff: Backoff = SEND_BACKOFF,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.client = client
        self.attempts = attempts
        self.backoff = backoff
        self.clock = clock

    async def send(self, room_id: str, content: JsonDict, *, txn_id: str) -> str:
        problem = "not attempted"
        for attempt in range(1, self.attempts + 1):
            hint: float | None = None
            try:
                response = await self.client.room_send(room_id, "m.room.message", content, tx_id=txn_id)
            except NETWORK_ERRORS as exc:
                problem = describe(exc) or type(exc).__name__
            else:
                if isinstance(response, nio.RoomSendResponse):
                    return str(response.event_id)
                problem = str(getattr(response, "message", response))
                status = http_status(response)
                if status is not None and status < 500 and status != 429:
                    raise SendFailed(f"the homeserver refused the message ({status}): {problem}")
                retry_after = getattr(response, "retry_after_ms", None)
                if isinstance(retry_after, int):
                    hint = retry_after / 1000
            if attempt < self.attempts:
                await self.clock.sleep(self.backoff.delay(attempt, hint))
        raise SendFailed(f"gave up after {self.attempts} attempts: {problem}")


def incoming(room_id: str, event: Any, me: str, *, now: float | None = None) -> Incoming | None:
    """A text message from someone else as :class:`Incoming`; None for anything else.

    Notices are dropped here, whoever sent them: bots must never answer a notice. So are messages
    the server marks as sent while the bot was not joined (``unsigned.membership``, MSC4115).
    """
    source = getattr(event, "source", None)
    if not isinstance(source, Mapping) or source.get("type") != "m.room.message":
        return None
    content = source.get("content")
    sender = source.get("sender")
    event_id = source.get("event_id")
    if not isinstance(content, Mapping) or content.get("msgtype") != "m.text" or sender == me:
        return None
    unsigned = source.get("unsigned")
    if isinstance(unsigned, Mapping) and unsigned.get("membership", "join") != "join":
        return None  # sent before the bot joined (MSC4115): room history, not a command to it
    body = content.get("body")
    if not isinstance(body, str) or not isinstance(sender, str) or not isinstance(event_id, str):
        return None
    formatted = content.get("formatted_body") if content.get("format") == "org.matrix.custom.html" else None
    stamp = source.get("origin_server_ts")
    return Incoming(RoomId(room_id), EventId(event_id), UserId(sender), body,
                    formatted if isinstance(formatted, str) else None, dict(content), _age(source, now),
                    stamp if isinstance(stamp, int) else None)


def _age(source: Mapping[str, Any], now: float | None) -> float:
    unsigned = source.get("unsigned")
    if isinstance(unsigned, Mapping) and isinstance(unsigned.get("age"), int):
        return max(float(unsigned["age"]) / 1000, 0.0)
    sent = source.get("origin_server_ts")
    if isinstance(sent, int):
        return max((now if now is not None else time.time()) - sent / 1000, 0.0)
    return 0.0


def inviter(invite_state: list[Any], me: str) -> str | None:
    """Who invited the bot, from the stripped state of an invite (None if it is not an invite of us)."""
    for event in invite_state:
        if isinstance(event, nio.InviteMemberEvent) and event.state_key == me and event.membership == "invite":
            return str(event.sender)
    return None
