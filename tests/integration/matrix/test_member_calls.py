"""The calls the human flows add to the Matrix client, against the session's real Synapse:
logout, one user's power level merged in and out, the members on their way in, deactivation."""

from __future__ import annotations

import pytest

from hiclaw_bot.clients.errors import UnauthorizedError
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from tests.fixtures.synapse import SynapseEnv, unique


async def test_logout_ends_the_session_and_twice_is_fine(admin: MatrixAdmin) -> None:
    user = await admin.ensure_user(unique("leaver"), "a-long-password-1")

    await admin.logout(user.access_token)
    await admin.logout(user.access_token)

    with pytest.raises(UnauthorizedError):
        await admin.whoami(user.access_token)


async def test_one_users_power_is_merged_in_and_out(admin: MatrixAdmin) -> None:
    user = await admin.ensure_user(unique("viewer"), "a-long-password-2")
    room = (await admin.ensure_room(unique("powers"), name="powers")).room_id
    before = await admin.state(room, "m.room.power_levels")
    assert before is not None

    await admin.set_user_power(room, user.user_id, -1)
    await admin.set_user_power(room, user.user_id, -1)
    during = await admin.state(room, "m.room.power_levels")
    assert during is not None
    assert during["users"] == {**before["users"], user.user_id: -1}
    assert {k: v for k, v in during.items() if k != "users"} == {k: v for k, v in before.items() if k != "users"}

    await admin.set_user_power(room, user.user_id, None)
    await admin.set_user_power(room, user.user_id, None)
    assert await admin.state(room, "m.room.power_levels") == before


async def test_members_counts_the_invited_and_not_those_who_left(admin: MatrixAdmin) -> None:
    me = await admin.me()
    guest = await admin.ensure_user(unique("guest"), "a-long-password-3")
    gone = await admin.ensure_user(unique("gone"), "a-long-password-4")
    room = (await admin.ensure_room(unique("members"), name="members", invite=[guest.user_id, gone.user_id])).room_id
    await admin.join(room, token=gone.access_token)
    await admin.leave(room, token=gone.access_token)

    assert await admin.members(room) == {me: "join", guest.user_id: "invite"}


async def test_is_deactivated_tells_apart_active_deactivated_and_unknown(synapse: SynapseEnv,
                                                                         admin: MatrixAdmin) -> None:
    user = await admin.ensure_user(unique("short-lived"), "a-long-password-5")
    plain = await admin.ensure_user(unique("plain"), "a-long-password-6")
    assert await admin.is_deactivated(user.user_id) is False
    await admin.deactivate_user(user.user_id)
    assert await admin.is_deactivated(user.user_id) is True
    assert await admin.is_deactivated(admin.user_id(unique("nobody"))) is None
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name,
                           access_token=plain.access_token) as not_an_admin:
        assert await not_an_admin.is_deactivated(user.user_id) is None, "a 403 means: cannot tell"
