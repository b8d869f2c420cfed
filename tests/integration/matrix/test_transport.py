"""Transient failures and error mapping, against a scripted HTTP server on 127.0.0.1.

Synapse cannot be made to answer 503 or a short 429 on demand, so these cases use a tiny aiohttp
server that plays back a script of replies; the client under test is the real one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from hiclaw_bot.clients.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermanentClientError,
    TransientClientError,
    UnauthorizedError,
)
from hiclaw_bot.clients.matrix_admin import ForbiddenError, MatrixAdmin
from hiclaw_bot.devstack.service import free_port
from hiclaw_bot.types import UserId

TOKEN = "syt_secret_acting_token"


@dataclass(frozen=True)
class Canned:
    status: int
    body: object
    headers: dict[str, str] | None = None
    raw: str | None = None

    def response(self) -> web.Response:
        if self.raw is not None:
            return web.Response(status=self.status, text=self.raw)
        return web.Response(status=self.status, text=json.dumps(self.body), content_type="application/json",
                            headers=self.headers)


@dataclass
class Script:
    """Replies to play back, one per request (the last one repeats), and when each request came.

    A float is a delay longer than the client will wait.
    """

    replies: list[Canned | float] = field(default_factory=list)
    seen: list[float] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(time.monotonic())
        reply = self.replies[min(len(self.seen), len(self.replies)) - 1]
        if isinstance(reply, float):
            await asyncio.sleep(reply)
            return web.json_response({})
        return reply.response()


def reply(status: int, body: object, headers: dict[str, str] | None = None) -> Canned:
    return Canned(status, body, headers)


@pytest.fixture
async def script() -> AsyncIterator[tuple[Script, str]]:
    played = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", played.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield played, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def client(url: str, **kwargs: float) -> MatrixAdmin:
    return MatrixAdmin(url, server_name="example.org", access_token=TOKEN, attempts=3, max_retry_wait=1.0,
                       **kwargs)  # type: ignore[arg-type]


async def test_429_is_retried_after_the_retry_after_header(script: tuple[Script, str]) -> None:
    played, url = script
    played.replies = [reply(429, {"errcode": "M_LIMIT_EXCEEDED"}, {"Retry-After": "0.3"}),
                      reply(200, {"room_id": "!r:example.org"})]
    async with client(url) as matrix:
        assert await matrix.resolve_alias(matrix.room_alias("x")) == "!r:example.org"
    assert len(played.seen) == 2
    assert played.seen[1] - played.seen[0] >= 0.3


async def test_429_honours_retry_after_ms_in_the_body(script: tuple[Script, str]) -> None:
    played, url = script
    played.replies = [reply(429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 250}),
                      reply(200, {"room_id": "!r:example.org"})]
    async with client(url) as matrix:
        await matrix.resolve_alias(matrix.room_alias("x"))
    assert played.seen[1] - played.seen[0] >= 0.25


async def test_a_long_retry_after_is_left_to_the_engine(script: tuple[Script, str]) -> None:
    played, url = script
    played.replies = [reply(429, {"errcode": "M_LIMIT_EXCEEDED"}, {"Retry-After": "60"})]
    async with client(url) as matrix:
        with pytest.raises(TransientClientError) as caught:
            await matrix.resolve_alias(matrix.room_alias("x"))
    assert len(played.seen) == 1
    assert caught.value.retry_after == 60
    assert caught.value.code == "M_LIMIT_EXCEEDED"


async def test_5xx_is_retried_a_bounded_number_of_times(script: tuple[Script, str]) -> None:
    played, url = script
    played.replies = [reply(502, {})]
    async with client(url) as matrix:
        with pytest.raises(TransientClientError) as caught:
            await matrix.whoami()
    assert len(played.seen) == 3
    assert caught.value.status == 502
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)


async def test_a_timeout_is_transient(script: tuple[Script, str]) -> None:
    played, url = script
    played.replies = [1.0]
    async with MatrixAdmin(url, server_name="example.org", access_token=TOKEN, timeout=0.2, attempts=2,
                           max_retry_wait=0.1) as matrix:
        with pytest.raises(TransientClientError, match="timed out"):
            await matrix.whoami()
    assert len(played.seen) == 2


async def test_a_refused_connection_is_transient() -> None:
    async with client(f"http://127.0.0.1:{free_port()}") as matrix:
        with pytest.raises(TransientClientError):
            await matrix.whoami()


@pytest.mark.parametrize(("status", "body", "error"), [
    (400, {"errcode": "M_ROOM_IN_USE", "error": "Room alias already taken"}, ConflictError),
    (404, {"errcode": "M_NOT_FOUND", "error": "Room alias not found"}, NotFoundError),
    (401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token"}, UnauthorizedError),
    (403, {"errcode": "M_FORBIDDEN", "error": "You don't have permission"}, ForbiddenError),
    (400, {"errcode": "M_BAD_JSON", "error": "Content not JSON"}, InvalidRequestError),
])
async def test_errors_keep_the_errcode_and_never_the_token(script: tuple[Script, str], status: int,
                                                           body: dict[str, str],
                                                           error: type[PermanentClientError]) -> None:
    played, url = script
    played.replies = [reply(status, body)]
    async with client(url) as matrix:
        with pytest.raises(error) as caught:
            await matrix.resolve_alias(matrix.room_alias("x"))
    assert type(caught.value) is error
    assert caught.value.code == body["errcode"]
    assert caught.value.system == "matrix"
    assert len(played.seen) == 1  # permanent errors are not retried
    assert TOKEN not in str(caught.value)


async def test_a_reply_that_is_not_json_is_permanent(script: tuple[Script, str]) -> None:
    played, url = script
    played.replies = [Canned(200, None, raw="<html>proxy</html>")]
    async with client(url) as matrix:
        with pytest.raises(PermanentClientError, match="not JSON"):
            await matrix.whoami()


async def test_deactivate_reports_a_server_without_the_synapse_admin_api(script: tuple[Script, str]) -> None:
    played, url = script
    played.replies = [reply(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})]
    async with client(url) as matrix:
        assert await matrix.deactivate_user(UserId("@w:example.org")) is False
