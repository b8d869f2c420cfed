"""The local Synapse itself: the session server's setup, restarts that keep the database, loud failures."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import aiohttp
import pytest

from hiclaw_bot.devstack.synapse import LocalSynapse, SynapseStartError
from tests.fixtures.synapse import SynapseEnv, unique


async def test_session_server_is_healthy_loopback_and_token_gated(synapse: SynapseEnv) -> None:
    assert synapse.url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{synapse.url}/health") as health:
            assert health.status == 200
            assert await health.text() == "OK"
        async with session.post(f"{synapse.url}/_matrix/client/v3/register",
                                json={"username": unique("nobody"), "password": "pw"}) as register:
            assert register.status == 401
            flows = (await register.json())["flows"]
    assert {"stages": ["m.login.registration_token", "m.login.dummy"]} in flows


async def test_secrets_are_private_and_not_in_reprs(synapse: SynapseEnv) -> None:
    data_dir = synapse.server.data_dir
    for name in ("secrets.json", "homeserver.yaml"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600
    for text in (repr(synapse.server), repr(synapse)):
        assert synapse.shared_secret not in text
        assert synapse.admin_token not in text
        assert synapse.registration_token not in text


async def test_restart_keeps_the_database_and_the_secrets(tmp_path: Path) -> None:
    server = LocalSynapse(tmp_path / "synapse", bcrypt_rounds=4)
    async with server:
        secret = server.shared_secret
        admin_id, token = await server.register_admin("admin", "admin-password")
    assert not server.running
    async with server:
        assert server.shared_secret == secret
        again_id, again_token = await server.register_admin("admin", "admin-password")
        # The account survived the restart: this was a login, so the token is a new one.
        assert again_id == admin_id
        assert again_token != token
    with pytest.raises(ConnectionRefusedError):  # stopped means exited, not merely signalled
        socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=1).close()


async def test_a_server_that_dies_at_start_fails_with_its_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "synapse"
    data_dir.mkdir()
    (data_dir / "homeserver.db").write_bytes(b"this is not a SQLite database" * 100)
    server = LocalSynapse(data_dir, bcrypt_rounds=4, start_timeout=60)

    with pytest.raises(SynapseStartError, match=r"exited with code .*homeserver|stdout\.log") as caught:
        await server.start()

    assert not server.running
    assert server.shared_secret not in str(caught.value)


async def test_a_busy_port_is_refused_before_starting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LocalSynapse(tmp_path / "synapse", port=taken.getsockname()[1])
        with pytest.raises(SynapseStartError, match="already in use"):
            await server.start()
    assert not server.running
