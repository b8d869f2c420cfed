"""A configuration that no longer offers a worker's backend: the bot does not start, and says which
workers hold it back, rather than let the reconciler recreate them on the backend it has now."""

from __future__ import annotations

import pytest

from hiclaw_bot.app import open_services
from hiclaw_bot.config import Config
from hiclaw_bot.flows.services import StrandedWorkers
from tests.integration.lifecycle.conftest import World


async def test_a_worker_on_a_backend_no_longer_offered_stops_the_start(world: World) -> None:
    await world.store.workers.insert("kept-there", backend="process", backend_instance=world.config.backend.instance,
                                     state="Running", desired_state="Running", image="img", model="m")
    moved = Config.model_validate({**world.config_data, "backend": {"kind": "process", "instance": "elsewhere"}})
    with pytest.raises(StrandedWorkers, match="kept-there on process") as refused:
        async with open_services(moved, world.store, bot_token=world.bot_user.access_token):
            pytest.fail("the bot started with a worker it cannot reach")
    assert refused.value.workers == ["kept-there"]
    assert await world.store.ops.find() == []
    async with open_services(world.config, world.store, bot_token=world.bot_user.access_token) as services:
        assert services.backend_for(await world.store.workers.get("kept-there")) is services.backend
