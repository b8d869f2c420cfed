"""Accounts against a real Synapse: each call twice, and no device or token piles up."""

from __future__ import annotations

import logging
import secrets

import pytest

from hiclaw_bot.clients.errors import InvalidRequestError, UnauthorizedError
from hiclaw_bot.clients.matrix_admin import (
    AppServiceRegistration,
    MatrixAdmin,
    SharedSecretRegistration,
    TokenRegistration,
    device_id_for,
)
from tests.fixtures.synapse import SynapseEnv, unique


async def test_token_registration_twice_creates_once_on_one_device(admin: MatrixAdmin) -> None:
    localpart, password = unique("worker"), secrets.token_urlsafe(12)

    first = await admin.ensure_user(localpart, password)
    second = await admin.ensure_user(localpart, password)

    assert first.created
    assert not second.created
    assert first.user_id == second.user_id == admin.user_id(localpart)
    assert first.device_id == device_id_for(localpart)
    assert second.access_token == first.access_token  # the cached token was reused, no login
    assert await admin.list_devices(second.access_token) == [device_id_for(localpart)]


async def test_existing_account_logs_in_with_stored_password_on_the_same_device(
        admin: MatrixAdmin, fresh_admin: MatrixAdmin) -> None:
    localpart, password = unique("worker"), secrets.token_urlsafe(12)
    created = await admin.ensure_user(localpart, password)

    # A client with an empty cache (the bot after a restart) meets M_USER_IN_USE and logs in.
    again = await fresh_admin.ensure_user(localpart, password)
    once_more = await fresh_admin.ensure_user(localpart, password)

    assert not again.created
    assert not once_more.created
    assert again.access_token != created.access_token
    assert once_more.access_token == again.access_token
    assert (await fresh_admin.whoami(again.access_token)).device_id == device_id_for(localpart)
    assert await fresh_admin.list_devices(again.access_token) == [device_id_for(localpart)]


async def test_a_stored_token_is_reused_without_login(admin: MatrixAdmin, fresh_admin: MatrixAdmin) -> None:
    localpart, password = unique("worker"), secrets.token_urlsafe(12)
    created = await admin.ensure_user(localpart, password)

    for _ in range(2):
        reused = await fresh_admin.login(localpart, password, access_token=created.access_token)
        assert reused.access_token == created.access_token
    assert await fresh_admin.list_devices(created.access_token) == [device_id_for(localpart)]


async def test_a_revoked_token_is_replaced_by_a_login(admin: MatrixAdmin, fresh_admin: MatrixAdmin) -> None:
    localpart, password = unique("worker"), secrets.token_urlsafe(12)
    created = await admin.ensure_user(localpart, password)
    await admin.reset_password(created.user_id, password, logout_devices=True)

    with pytest.raises(UnauthorizedError):
        await admin.whoami(created.access_token)
    renewed = await fresh_admin.login(localpart, password, access_token=created.access_token)

    assert renewed.access_token != created.access_token
    assert (await fresh_admin.whoami(renewed.access_token)).user_id == created.user_id


async def test_wrong_password_for_an_existing_account_is_unauthorized(
        admin: MatrixAdmin, fresh_admin: MatrixAdmin) -> None:
    localpart = unique("worker")
    await admin.ensure_user(localpart, "the-first-password")

    with pytest.raises(UnauthorizedError) as caught:
        await fresh_admin.ensure_user(localpart, "another-password")

    assert caught.value.code == "M_FORBIDDEN"
    assert "another-password" not in str(caught.value)


async def test_a_wrong_registration_token_is_refused_without_echoing_it(synapse: SynapseEnv) -> None:
    bad_token = "not-a-valid-registration-token"
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name,
                           registration=TokenRegistration(bad_token)) as client:
        with pytest.raises(UnauthorizedError) as caught:
            await client.ensure_user(unique("worker"), "pw-not-logged")

    assert bad_token not in str(caught.value)
    assert "pw-not-logged" not in str(caught.value)


async def test_shared_secret_registration_twice(synapse: SynapseEnv) -> None:
    localpart, password = unique("human"), secrets.token_urlsafe(12)
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name,
                           registration=SharedSecretRegistration(synapse.shared_secret)) as client:
        first = await client.ensure_user(localpart, password)
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name,
                           registration=SharedSecretRegistration(synapse.shared_secret)) as client:
        second = await client.ensure_user(localpart, password)

    assert first.created
    assert not second.created
    assert first.user_id == second.user_id
    assert first.device_id == second.device_id == device_id_for(localpart)


async def test_appservice_registration_twice(synapse: SynapseEnv) -> None:
    localpart = unique(synapse.appservice.user_prefix + "worker")
    registration = AppServiceRegistration(synapse.appservice.as_token)
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name, registration=registration) as client:
        first = await client.ensure_user(localpart)
        with pytest.raises(InvalidRequestError):
            await client.ensure_user(localpart, "appservice users have no password")
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name, registration=registration) as client:
        second = await client.ensure_user(localpart)
        devices = await client.list_devices(second.access_token)

    assert first.created
    assert not second.created
    assert first.user_id == second.user_id
    assert devices == [device_id_for(localpart)]


async def test_secrets_stay_out_of_logs_and_reprs(admin: MatrixAdmin, fresh_admin: MatrixAdmin,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    localpart, password = unique("worker"), secrets.token_urlsafe(12)
    caplog.set_level(logging.DEBUG)

    user = await admin.ensure_user(localpart, password)
    await fresh_admin.ensure_user(localpart, password)

    assert caplog.records, "the transport logs its requests at DEBUG"
    for text in (caplog.text, repr(user), repr(admin), repr(TokenRegistration("sekrit-token"))):
        assert password not in text
        assert user.access_token not in text
        assert "sekrit-token" not in text


async def test_displayname_set_twice(admin: MatrixAdmin) -> None:
    user = await admin.ensure_user(unique("human"), secrets.token_urlsafe(12))

    await admin.set_displayname(user.user_id, "Alice Example")
    await admin.set_displayname(user.user_id, "Alice Example")
    await admin.set_displayname(user.user_id, "Alice Example", token=user.access_token)

    assert await admin.displayname(user.user_id) == "Alice Example"


async def test_password_reset_twice(synapse: SynapseEnv, admin: MatrixAdmin, fresh_admin: MatrixAdmin) -> None:
    localpart = unique("human")
    user = await admin.ensure_user(localpart, "old-password-1")

    await admin.reset_password(user.user_id, "new-password-2")
    await admin.reset_password(user.user_id, "new-password-2")

    assert (await fresh_admin.login(localpart, "new-password-2")).user_id == user.user_id
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name) as stranger:
        with pytest.raises(UnauthorizedError):
            await stranger.login(localpart, "old-password-1")


async def test_deactivate_twice_and_unknown_user(admin: MatrixAdmin, fresh_admin: MatrixAdmin) -> None:
    localpart, password = unique("worker"), secrets.token_urlsafe(12)
    user = await admin.ensure_user(localpart, password)

    assert await admin.deactivate_user(user.user_id) is True
    assert await admin.deactivate_user(user.user_id) is True
    assert await admin.deactivate_user(admin.user_id(unique("nobody"))) is True
    with pytest.raises(UnauthorizedError):
        await fresh_admin.login(localpart, password)


async def test_calls_needing_the_acting_token_fail_clearly_without_one(synapse: SynapseEnv) -> None:
    async with MatrixAdmin(synapse.url, server_name=synapse.server_name) as client:
        with pytest.raises(UnauthorizedError):
            await client.me()
        with pytest.raises(InvalidRequestError):
            await client.ensure_user(unique("worker"), "pw")
