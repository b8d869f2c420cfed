"""Bearer-token authentication for the API, as an aiohttp middleware.

The token is compared with :func:`hmac.compare_digest` so its length and content do not leak
through timing; it never appears in a response, an exception or a log line. With no token
configured, the protected routes refuse everything: an API that would run operations must not be
open by accident.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REALM = 'Bearer realm="hiclaw-bot"'


def unauthorized(message: str) -> web.Response:
    return web.json_response({"error": message}, status=401, headers={"WWW-Authenticate": REALM})


def token_matches(header: str | None, token: SecretStr | None) -> bool:
    if token is None or header is None:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())


def bearer_auth(token: SecretStr | None, *, open_paths: Collection[str]) -> Middleware:
    """A middleware that lets ``open_paths`` through and asks every other request for the token."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        if token is None:
            return unauthorized("the API has no token configured (api.token); it accepts no requests")
        if not token_matches(request.headers.get("Authorization"), token):
            return unauthorized("a valid bearer token is required: Authorization: Bearer <api.token>")
        return await handler(request)

    return middleware
