"""Which models a worker may use: ``quotas.allowed_models`` when set, else what the gateway serves.

A model the gateway's AI route does not serve gives a worker that starts, then fails every
request it makes. So when the configuration names no models, the Higress console is asked which
ones the configured routes serve (their ``modelPredicates``, or the names their upstreams map), and
a model outside them is refused before anything is made, the refusal listing them. A route that
narrows nothing serves any model; a console that cannot be asked refuses nothing here (the
operation's ``gateway_auth`` step will say what is wrong with it).
"""

from __future__ import annotations

import fnmatch
import logging

from hiclaw_bot.clients.errors import ClientError
from hiclaw_bot.clients.higress import HigressClient
from hiclaw_bot.config import Config, HigressConfig
from hiclaw_bot.types import Refused

log = logging.getLogger("hiclaw_bot.flows.models")


def _served(model: str, served: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(model, pattern) if pattern.endswith("*") else model == pattern
               for pattern in served)


async def check_model(config: Config, gateway: HigressClient | None, model: str) -> None:
    """Refuse ``model`` unless it may be used: the one check for a create, a team and an update."""
    allowed = config.quotas.allowed_models
    if allowed:
        if model in allowed:
            return
        raise Refused(f"Model `{model}` is not allowed here; allowed: {', '.join(allowed)}.")
    if gateway is None or not isinstance(config.gateway, HigressConfig):
        return
    try:
        served = await gateway.served_models(config.gateway.routes)
    except (ClientError, TimeoutError) as exc:
        log.warning("could not ask the gateway which models it serves: %s", exc)
        return
    if served is None or _served(model, served):
        return
    raise Refused(f"Model `{model}` is not served by the gateway's AI route; it serves: {', '.join(served)}.")
