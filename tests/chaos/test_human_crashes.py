"""SIGKILL the bot between intent and call, and between call and commit, at every step of
``human.create`` and ``human.delete``; after a restart each human exists exactly once, everywhere.

Cheap by construction: one killed child process per boundary, each with its own human, then a
single child that resumes every one of them at once. Counted at the servers: the account (its
mailed password logs in, and no session of ours is left on it), the invite events in each room
(one per room), and the mails in the SMTP server's inbox (the same password every time; sent
twice only when the kill fell between the SMTP server's "accepted" and the checkpoint).
"""

from __future__ import annotations

import itertools
import json
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp

from hiclaw_bot.clients.errors import UnauthorizedError
from hiclaw_bot.clients.matrix_admin import MatrixAdmin, RoomEvent
from hiclaw_bot.flows import human as flows
from hiclaw_bot.flows.human_steps import MEMBERSHIP
from hiclaw_bot.types import RoomId, UserId
from storage import Store
from tests.chaos.harness import POINTS, child_config, fault, run_app
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.synapse import SynapseEnv, unique

CREATE_STEPS = ["register", "account", "profile", "invites", "workers", "deliver", "record"]
DELETE_STEPS = ["mark", "remove_invites", "remove_account", "workers", "forget"]
PASSWORD_LINE = re.compile(r"^Password: (\S+)\r?$", re.MULTILINE)


async def child(tmp: Path, token: str, mode: str, names: list[str], env: dict[str, str] | None = None) -> int:
    return await run_app("human_app", str(tmp / "config.json"), mode, *names, token=token, env=env)


async def kill_each(tmp: Path, token: str, kind: str, cases: dict[str, tuple[str, str]],
                    extra: dict[str, str] | None = None) -> None:
    """One child per boundary, killed there while running its own human's operation."""
    for name, (step, point) in cases.items():
        kill = {**fault(f"human.{kind}", step, point, tmp / f"k-{name}"), **(extra or {})}
        assert await child(tmp, token, kind, [name], kill) == -signal.SIGKILL, (step, point)


async def prepare(synapse: SynapseEnv, smtp: SmtpServer, tmp: Path) -> list[RoomId]:
    """The config, and team red's room and its worker's room (rows written as the team flows would)."""
    (tmp / "config.json").write_text(json.dumps(child_config(
        synapse, tmp, backend={"kind": "process", "instance": "crash"},
        mail={"enabled": True, "host": smtp.host, "port": smtp.port, "security": "none"})))
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name, access_token=synapse.admin_token) as bot:
        rooms = [(await bot.ensure_room(unique(kind), name=kind)).room_id for kind in ("team", "worker")]
    (tmp / "data").mkdir()
    store = await Store.open(tmp / "data" / "hiclaw.db")
    await store.teams.upsert("red", leader="red-lead", state="Active", room_id=rooms[0])
    await store.workers.insert("red-worker", backend="process", state="Running", desired_state="Running",
                               team="red", room_id=rooms[1])
    await store.close()
    return rooms


async def admin_get(synapse: SynapseEnv, path: str, **params: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(
            f"{synapse.url}{path}", params=params, headers={"Authorization": f"Bearer {synapse.admin_token}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def invites_of(synapse: SynapseEnv, room: RoomId, user: UserId) -> int:
    """How many invite events for ``user`` the room's timeline holds."""
    page = await admin_get(synapse, f"/_matrix/client/v3/rooms/{room}/messages", dir="b", limit="1000",
                           filter=json.dumps({"types": ["m.room.member"]}))
    return sum(1 for e in page["chunk"] if e.get("state_key") == user and e["content"].get("membership") == "invite")


async def bot_messages(synapse: SynapseEnv, room: RoomId) -> list[RoomEvent]:
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name, access_token=synapse.admin_token) as bot:
        return await bot.recent_messages(room, limit=50)


async def logs_in(synapse: SynapseEnv, name: str, password: str) -> bool:
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name) as client:
        try:
            await client.login(name, password)
        except UnauthorizedError:
            return False
    return True


def mailed_passwords(smtp: SmtpServer, name: str) -> list[str]:
    found = []
    for mail in smtp.to(f"{name}@example.org"):
        payload = mail.get_payload(decode=True)
        assert isinstance(payload, bytes)
        match = PASSWORD_LINE.search(payload.decode())
        assert match is not None
        found.append(match.group(1))
    return found


def boundaries(prefix: str, steps: list[str]) -> dict[str, tuple[str, str]]:
    return {unique(prefix): case for case in itertools.product(steps, POINTS)}


async def test_kill_human_create_at_every_boundary(synapse: SynapseEnv, smtp_server: SmtpServer,
                                                   tmp_path: Path) -> None:
    rooms = await prepare(synapse, smtp_server, tmp_path)
    cases = boundaries("hc", CREATE_STEPS)
    await kill_each(tmp_path, synapse.admin_token, "create", cases)
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name, access_token=synapse.admin_token) as bot:
        dm = (await bot.ensure_room(unique("dm"), name="DM")).room_id
    by_dm = unique("hdm")
    await kill_each(tmp_path, synapse.admin_token, "create", {by_dm: ("deliver", "after_call")},
                    {"HICLAW_TEST_DM": dm})
    assert await child(tmp_path, synapse.admin_token, "resume", []) == 0

    notes = [e.body or "" for e in await bot_messages(synapse, dm) if by_dm in (e.body or "")]
    assert len(notes) == 1, "the DM is sent exactly once: its transaction id is the operation's"
    dm_password = PASSWORD_LINE.search(notes[0])
    assert dm_password is not None
    signed_in = await logs_in(synapse, by_dm, dm_password.group(1))
    assert signed_in, "the password in the DM opens the account"

    store = await Store.open(tmp_path / "data" / "hiclaw.db")
    try:
        for name, (step, point) in cases.items():
            where = f"killed at {step}/{point}"
            user = UserId(f"@{name}:{synapse.server_name}")
            passwords = mailed_passwords(smtp_server, name)
            resent = (step, point) == ("deliver", "after_call")
            mails, distinct = len(passwords), len(set(passwords))  # counts only: passwords stay out of reports
            assert mails == (2 if resent else 1), where
            assert distinct == 1, f"{where}: one password, however often it was mailed"
            devices = await admin_get(synapse, f"/_synapse/admin/v2/users/{user}/devices")
            assert devices["total"] == 0, f"{where}: no session of ours left on the human's account"
            signed_in = await logs_in(synapse, name, passwords[0])
            assert signed_in, where
            for room in rooms:
                assert await invites_of(synapse, room, user) == 1, f"{where}: one invite in {room}"
            row = await store.humans.get(name)
            assert row is not None, where
            assert row.state == "Active", where
            assert await store.secrets.get(flows.subject(name), "password") is None, where
    finally:
        await store.close()


async def test_kill_human_delete_at_every_boundary(synapse: SynapseEnv, smtp_server: SmtpServer,
                                                   tmp_path: Path) -> None:
    rooms = await prepare(synapse, smtp_server, tmp_path)
    cases = boundaries("hd", DELETE_STEPS)
    assert await child(tmp_path, synapse.admin_token, "create", list(cases)) == 0
    passwords = {name: mailed_passwords(smtp_server, name)[0] for name in cases}
    await kill_each(tmp_path, synapse.admin_token, "delete", cases)
    assert await child(tmp_path, synapse.admin_token, "resume", []) == 0

    store = await Store.open(tmp_path / "data" / "hiclaw.db")
    try:
        async with MatrixAdmin(synapse.url, server_name=synapse.server_name,
                               access_token=synapse.admin_token) as bot:
            for name, (step, point) in cases.items():
                where = f"killed at {step}/{point}"
                user = UserId(f"@{name}:{synapse.server_name}")
                for room in rooms:
                    assert await bot.membership(room, user) == "leave", where
                signed_in = await logs_in(synapse, name, passwords[name])
                assert not signed_in, f"{where}: deactivated"
                assert await store.humans.get(name) is None, where
                assert await store.secrets.get(flows.subject(name), "password") is None, where
                live = [r for r in await store.ledger.live(MEMBERSHIP) if r.owner == flows.subject(name)]
                assert live == [], where
    finally:
        await store.close()
