"""The Matrix admin client: accounts, rooms and notices against a homeserver, every call idempotent.

The bot's own sync loop and replies go through matrix-nio; this client covers what nio lacks and
what provisioning needs: registration (token UIA, shared secret, appservice), logins that reuse
tokens and devices, rooms created by deterministic alias and adopted when they already exist,
power levels merged rather than replaced, membership reconciled, and the Synapse admin API.

It holds no business logic: it does not know what a worker or a team is, it only makes the
homeserver look the way it is asked to, and it can be asked twice. Failures raise the client error
tree of :mod:`hiclaw_bot.clients.errors`, with the Matrix ``errcode`` in ``.code``; transient ones
are retried a few times here and then left to the engine.

The pieces live in private modules, one per concern (as mautrix composes its client API):
``_matrix_http`` (transport, errors, retries), ``_matrix_base`` (names, results), ``_matrix_accounts``,
``_matrix_rooms`` and ``_matrix_messages``.
"""

from __future__ import annotations

from types import TracebackType

import aiohttp

from hiclaw_bot.clients._matrix_accounts import (
    AccountsAPI,
    AppServiceRegistration,
    Registration,
    SharedSecretRegistration,
    TokenRegistration,
)
from hiclaw_bot.clients._matrix_base import EnsuredRoom, MatrixUser, Whoami, device_id_for
from hiclaw_bot.clients._matrix_http import ForbiddenError, MatrixHttp
from hiclaw_bot.clients._matrix_messages import MessagesAPI, RoomEvent
from hiclaw_bot.clients._matrix_rooms import ROOM_META, RoomsAPI

__all__ = [
    "ROOM_META",
    "AppServiceRegistration",
    "EnsuredRoom",
    "ForbiddenError",
    "MatrixAdmin",
    "MatrixUser",
    "Registration",
    "RoomEvent",
    "SharedSecretRegistration",
    "TokenRegistration",
    "Whoami",
    "device_id_for",
]


class MatrixAdmin(AccountsAPI, RoomsAPI, MessagesAPI):
    """A client acting as one account (``access_token``: the bot, a server admin) on one homeserver.

    ``registration`` picks how :meth:`ensure_user` creates accounts. ``access_token`` may be None for
    a client that only registers and logs in (the dev stack making its first admin). ``session`` may
    be shared; otherwise one is made and closed by :meth:`close`. ``attempts`` and ``max_retry_wait``
    bound the retries of transient failures.
    """

    def __init__(self, homeserver: str, *, server_name: str, access_token: str | None = None,
                 registration: Registration | None = None, session: aiohttp.ClientSession | None = None,
                 timeout: float = 10.0, attempts: int = 3, max_retry_wait: float = 5.0) -> None:
        http = MatrixHttp(homeserver, session=session, timeout=timeout, attempts=attempts, max_wait=max_retry_wait)
        super().__init__(http, server_name=server_name, access_token=access_token, registration=registration)

    def __repr__(self) -> str:
        return f"MatrixAdmin({self._http.base_url!r}, server_name={self.server_name!r})"

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> MatrixAdmin:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
