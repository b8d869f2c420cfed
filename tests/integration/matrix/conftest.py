"""Clients for the Matrix tests, built on the session's Synapse (see ``tests/fixtures/synapse.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from tests.fixtures.synapse import SynapseEnv


@pytest.fixture
async def admin(synapse: SynapseEnv) -> AsyncIterator[MatrixAdmin]:
    """A client acting as the server admin, registering accounts with the registration token."""
    async with synapse.admin_client() as client:
        yield client


@pytest.fixture
async def fresh_admin(synapse: SynapseEnv) -> AsyncIterator[MatrixAdmin]:
    """A second admin client with an empty token cache, as after a restart of the bot."""
    async with synapse.admin_client() as client:
        yield client
