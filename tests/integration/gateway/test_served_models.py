"""Which models a worker may use, when ``quotas.allowed_models`` is empty: what the console's AI
route serves, read from the simulator over HTTP as from a real console."""

from __future__ import annotations

from typing import Any

from hiclaw_bot.clients.higress import HigressClient
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.flows.models import check_model
from hiclaw_bot.types import Refused
from tests.integration.gateway.conftest import ADMIN_PASSWORD


def config(sim: HigressConsoleSimulator, *, allowed: list[str] | None = None, routes: Any = "all") -> Config:
    return Config.model_validate({
        "matrix": {"homeserver": "http://127.0.0.1:9", "server_name": "example.org", "bot": {"password": "x"},
                   "admins": ["@admin:example.org"], "registration": {"mode": "token", "token": "x"}},
        "gateway": {"kind": "higress", "console_url": sim.url, "password": ADMIN_PASSWORD, "routes": routes,
                    "gateway_url": "http://127.0.0.1:9"},
        "storage": {"kind": "local", "directory": "objects"},
        "quotas": {"allowed_models": allowed or [], "default_model": (allowed or ["qwen-max"])[0]},
    })


async def model_refusal(settings: Config, gateway: HigressClient, model: str) -> str | None:
    """Why ``model`` is refused, or None."""
    try:
        await check_model(settings, gateway, model)
    except Refused as exc:
        return exc.reason
    return None


def narrow(sim: HigressConsoleSimulator, route: str, **fields: Any) -> None:
    sim.ai_routes[route] = {**sim.ai_routes[route], **fields}


async def test_a_route_that_narrows_nothing_serves_any_model(sim: HigressConsoleSimulator,
                                                               gateway: HigressClient) -> None:
    assert await gateway.served_models() is None
    assert await model_refusal(config(sim), gateway, "no-such-model") is None


async def test_model_predicates_decide_and_the_refusal_lists_them(sim: HigressConsoleSimulator,
                                                                  gateway: HigressClient) -> None:
    narrow(sim, "default", modelPredicates=[{"matchType": "EXACT", "matchValue": "qwen-max", "caseSensitive": True},
                                            {"matchType": "PRE", "matchValue": "deepseek-", "caseSensitive": True}])
    settings = config(sim, routes=["default"])
    assert await gateway.served_models(["default"]) == ["deepseek-*", "qwen-max"]
    assert await model_refusal(settings, gateway, "qwen-max") is None
    assert await model_refusal(settings, gateway, "deepseek-r1") is None
    refusal = await model_refusal(settings, gateway, "no-such-model")
    assert refusal is not None
    assert refusal == ("Model `no-such-model` is not served by the gateway's AI route; "
                            "it serves: deepseek-*, qwen-max.")


async def test_a_model_mapping_names_what_the_route_serves(sim: HigressConsoleSimulator,
                                                           gateway: HigressClient) -> None:
    narrow(sim, "default", upstreams=[{"provider": "default", "weight": 100,
                                       "modelMapping": {"gpt-4o": "qwen-max", "qwen-plus": "qwen-plus"}}])
    settings = config(sim, routes=["default"])
    assert await model_refusal(settings, gateway, "gpt-4o") is None
    refusal = await model_refusal(settings, gateway, "qwen-max")
    assert refusal is not None
    assert "it serves: gpt-4o, qwen-plus." in refusal


async def test_allowed_models_in_the_config_come_first(sim: HigressConsoleSimulator, gateway: HigressClient) -> None:
    narrow(sim, "default", modelPredicates=[{"matchType": "EXACT", "matchValue": "qwen-max", "caseSensitive": True}])
    settings = config(sim, allowed=["qwen-plus"], routes=["default"])
    assert await model_refusal(settings, gateway, "qwen-plus") is None
    refusal = await model_refusal(settings, gateway, "qwen-max")
    assert refusal is not None
    assert refusal == "Model `qwen-max` is not allowed here; allowed: qwen-plus."
