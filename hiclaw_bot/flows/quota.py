"""How many workers there may be: the installation's quota and each team's.

The one home of the quota: chat checks it before a create, the permission resolver reports it
for a team-scoped actor, and a team leader's ``team-operations`` skill states it.
"""

from __future__ import annotations

from hiclaw_bot.config import Config
from hiclaw_bot.types import Refused
from storage import Store, Team


def team_worker_limit(config: Config, team: str, row: Team | None) -> int | None:
    """A team's worker quota: its own ``max_workers`` when it was given one, else the config's."""
    if row is not None and row.max_workers is not None:
        return row.max_workers
    return config.team_limit(team)


async def team_usage(config: Config, store: Store, team: str) -> tuple[int, int] | None:
    """A team's limit and how many workers it has, or None when it has no limit."""
    limit = team_worker_limit(config, team, await store.teams.get(team))
    if limit is None:
        return None
    return limit, await store.workers.count(team=team)


async def check_quota(config: Config, store: Store, team: str | None) -> None:
    """Refuse one more worker when the installation, or ``team``, is at its limit."""
    total = config.quotas.max_workers
    if total is not None and await store.workers.count() >= total:
        raise Refused(f"The installation is at its limit of {total} workers (quotas.max_workers).")
    if team is not None:
        limit = team_worker_limit(config, team, await store.teams.get(team))
        if limit is not None and await store.workers.count(team=team) >= limit:
            raise Refused(f"Team `{team}` is at its limit of {limit} workers.")


async def check_team_size(config: Config, store: Store, team: str, *, size: int, new: int,
                          team_limit: int | None) -> None:
    """Refuse a team of ``size`` workers, ``new`` of them to be made, over either limit."""
    total = config.quotas.max_workers
    if total is not None and new and await store.workers.count() + new > total:
        raise Refused(f"That needs {new} new worker(s), and the installation is limited to {total} "
                      f"(quotas.max_workers, {await store.workers.count()} in use).")
    if team_limit is not None and size > team_limit:
        raise Refused(f"Team `{team}` would have {size} workers, over its limit of {team_limit} "
                      f"(team max_workers).")


async def check_room_in_team(config: Config, store: Store, team: Team) -> None:
    """Refuse one more member in ``team`` when it is full (an existing worker joining it)."""
    limit = team_worker_limit(config, team.name, team)
    if limit is not None and await store.workers.count(team=team.name) + 1 > limit:
        raise Refused(f"Team `{team.name}` is at its limit of {limit} workers (team max_workers).")
