"""The local stack of ``hiclaw-bot dev``, started for real in a temporary directory, and started again.

What a newcomer relies on is checked from the outside, through ``config.yaml`` as the bot reads
it: the admin can log in, the bot is a server admin, the registration token registers, the
gateway console answers with the seeded route, the object store stores. A second start over the
same directory must find the same passwords, database, homeserver URL, gateway state and objects.
"""

from __future__ import annotations

import secrets
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hiclaw_bot.clients.higress import HigressClient
from hiclaw_bot.clients.matrix_admin import MatrixAdmin, TokenRegistration
from hiclaw_bot.clients.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore
from hiclaw_bot.config import Config, LocalStorageConfig, S3StorageConfig, load_config
from hiclaw_bot.devstack.stack import AI_ROUTE, AI_ROUTE_MODELS, LocalStack, docker_host, read_admin_login
from tests.fixtures.synapse import unique


async def _login(homeserver: str, user: str, password: str) -> dict[str, Any]:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}
    async with aiohttp.ClientSession() as http, http.post(f"{homeserver}/_matrix/client/v3/login",
                                                          json=body) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def _is_server_admin(homeserver: str, user_id: str, token: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(
        f"{homeserver}/_synapse/admin/v1/users/{user_id}/admin", headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200, await response.text()
        return bool((await response.json())["admin"])


async def _open_store(config: Config) -> ObjectStore:
    storage = config.storage
    if isinstance(storage, LocalStorageConfig):
        return LocalObjectStore(storage.directory)
    return await S3ObjectStore.open(bucket=storage.bucket, access_key=storage.access_key.get_secret_value(),
                                    secret_key=storage.secret_key.get_secret_value(), endpoint_url=storage.endpoint,
                                    region=storage.region)


def _console(config: Config) -> HigressClient:
    gateway = config.gateway
    assert gateway.kind == "higress"
    return HigressClient(gateway.console_url, gateway.username, gateway.password.get_secret_value())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_fresh_stack_works_and_a_restart_finds_the_same_world(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    member = unique("member")
    member_password = secrets.token_urlsafe(12)
    worker_key = secrets.token_urlsafe(16)

    async with LocalStack(data_dir, bcrypt_rounds=4) as stack:
        config = stack.config
        assert load_config(stack.config_path) == config
        assert _mode(stack.config_path) == 0o600
        assert _mode(stack.credentials_path) == 0o600
        homeserver = config.matrix.homeserver
        assert homeserver.startswith("http://127.0.0.1:")
        assert config.matrix.admins == [stack.admin_user_id] == ["@admin:localhost"]
        assert config.backend.kind == ("docker" if stack.docker else "process")
        # SeaweedFS when installed (the test extra installs it), else a directory.
        assert isinstance(config.storage, S3StorageConfig) == (stack.seaweed is not None)
        password = stack.admin_password()

        # The admin logs in with the generated password; `say` finds the same login from the directory.
        assert (await _login(homeserver, "admin", password))["user_id"] == "@admin:localhost"
        assert read_admin_login(data_dir).password == password
        # The bot, with the password from config.yaml, is a server admin.
        bot_password = config.matrix.bot.password
        assert bot_password is not None
        bot = await _login(homeserver, config.matrix.bot.localpart, bot_password.get_secret_value())
        assert await _is_server_admin(homeserver, bot["user_id"], bot["access_token"])
        # The registration token registers accounts.
        token = config.matrix.registration.token
        assert token is not None
        async with MatrixAdmin(homeserver, server_name="localhost",
                               registration=TokenRegistration(token.get_secret_value())) as registrar:
            assert (await registrar.ensure_user(member, member_password)).created

        # The gateway console answers with the seeded route and MCP servers, and keeps a consumer.
        async with _console(config) as console:
            assert [route.name for route in await console.list_ai_routes()] == [AI_ROUTE]
            assert await console.served_models() == sorted(AI_ROUTE_MODELS), "the dev route says which models it serves"
            assert {"github", "web-search"} <= set(await console.list_mcp_servers())
            await console.ensure_consumer("alice", worker_key)
            await console.authorize("alice", [AI_ROUTE])
        assert stack.gateway.violations == []

        store = await _open_store(config)
        try:
            await store.put("agents/alice/openclaw.json", b"{}\n")
            assert await store.get("agents/alice/openclaw.json") == b"{}\n"
        finally:
            await store.close()

        text = stack.describe()
        for expected in (homeserver, "@admin:localhost", stack.gateway.url, str(stack.config_path),
                         "try: hiclaw-bot say '!worker create alice'"):
            assert expected in text
        for secret in (password, bot_password.get_secret_value(), token.get_secret_value()):
            assert secret not in text
            assert secret not in repr(stack)
        assert password in stack.describe(reveal_password=True)

    with pytest.raises(RuntimeError, match="not started"):
        stack.admin_password()

    async with LocalStack(data_dir, bcrypt_rounds=4) as again:
        assert again.admin_password() == password
        assert again.config.matrix.homeserver == homeserver  # worker configs name it: the port is kept
        again_token = again.config.matrix.registration.token
        assert again_token is not None
        assert again_token.get_secret_value() == token.get_secret_value()  # still valid, so reused
        # The database survived: both accounts made in the first run log in.
        assert (await _login(homeserver, "admin", password))["user_id"] == "@admin:localhost"
        assert (await _login(homeserver, member, member_password))["user_id"] == f"@{member}:localhost"
        async with _console(again.config) as console:
            assert "alice" in await console.list_consumers()
            assert (await console.route_allow_lists())[AI_ROUTE] == ("alice",)
        assert again.gateway.is_authorized(worker_key, ai_route=AI_ROUTE)
        store = await _open_store(again.config)
        try:
            assert await store.get("agents/alice/openclaw.json") == b"{}\n"
        finally:
            await store.close()


async def test_without_seaweed_the_object_store_is_a_directory(tmp_path: Path) -> None:
    async with LocalStack(tmp_path / "dev", bcrypt_rounds=4, use_seaweed=False) as stack:
        assert stack.seaweed is None
        storage = stack.config.storage
        assert isinstance(storage, LocalStorageConfig)
        assert storage.directory == tmp_path / "dev" / "objects"
        store = await _open_store(stack.config)
        assert await store.put("agents/bob/SOUL.md", b"# bob\n")
        assert (storage.directory / "agents" / "bob" / "SOUL.md").read_bytes() == b"# bob\n"
        assert "directory" in stack.describe()


async def test_docker_is_picked_when_a_daemon_answers(tmp_path: Path) -> None:
    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/_ping", ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    socket_path = tmp_path / "docker.sock"
    await web.UnixSite(runner, str(socket_path)).start()
    try:
        assert await docker_host({"DOCKER_HOST": f"unix://{socket_path}"}) == f"unix://{socket_path}"
    finally:
        await runner.cleanup()
    missing = f"unix://{tmp_path / 'missing.sock'}"
    assert await docker_host({"DOCKER_HOST": missing}) != missing
