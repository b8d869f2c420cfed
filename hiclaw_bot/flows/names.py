"""Deterministic external names: the idempotency keys of every step (ARCHITECTURE §3).

A step finds what a lost reply or a crash left behind by these names alone, so they must depend on
nothing but the worker, team or human name and the homeserver's domain.
"""

from __future__ import annotations

import re

from hiclaw_bot.types import RoomAlias, UserId

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class InvalidName(ValueError):
    """A name that cannot become a Matrix localpart, alias, consumer, prefix and container name."""

    def __init__(self, what: str, name: str) -> None:
        super().__init__(
            f"{what} name {name!r} is invalid: use 1 to 63 lower-case letters, digits or '-', "
            "starting with a letter or digit"
        )
        self.name = name


def check_name(what: str, name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidName(what, name)
    return name


def user_id(localpart: str, domain: str) -> UserId:
    return UserId(f"@{localpart}:{domain}")


def worker_room_alias(worker: str) -> str:
    """The alias localpart of a worker's room."""
    return f"hiclaw-worker-{worker}"


def full_alias(localpart: str, domain: str) -> RoomAlias:
    return RoomAlias(f"#{localpart}:{domain}")


def consumer(worker: str) -> str:
    """The worker's gateway consumer."""
    return f"worker-{worker}"


def worker_prefix(worker: str) -> str:
    return f"agents/{worker}/"


def container(worker: str) -> str:
    return f"hiclaw-worker-{worker}"


def team_room_alias(team: str) -> str:
    """The alias localpart of a team's room."""
    return f"hiclaw-team-{team}"


def team_leader_dm_alias(team: str) -> str:
    """The alias localpart of the room where the admins talk to a team's leader."""
    return f"hiclaw-team-{team}-leader"


def team_prefix(team: str) -> str:
    return f"teams/{team}/"


def team_shared_prefix(team: str) -> str:
    """The part of a team's folder its members may read and write."""
    return f"teams/{team}/shared/"


def storage_identity(worker: str) -> str:
    """The worker's own identity in the object store (its user in IAM terms)."""
    return f"hiclaw-worker-{worker}"
