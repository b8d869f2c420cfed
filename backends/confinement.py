"""Which user a process-backend worker runs as, when the bot can choose (it runs as root).

A worker started as the bot's own user could read everything the bot can: its database (with the
homeserver admin token), every other worker's files. So a bot running as root starts each worker
under a uid and gid of its own, taken from a range that no login user has (``uid_base`` up to
``uid_base + span``), derived from the worker's name: the same worker always gets the same ids,
after a restart too, with no table to keep. One shared "worker" user would not do: worker A could
then read worker B's directory, which is owned by the same user.

Two names can land on the same id; the backend checks that no other worker of its own owns the
id before it starts one, and refuses with a clear message if one does (one name in ~10⁵ pairs).

A bot that does not run as root cannot change users: :func:`unconfined_reasons` says so plainly
(``hiclaw-bot check-config`` prints it) rather than pretending.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

__all__ = ["Confinement", "can_confine", "unconfined_reasons"]

DEFAULT_UID_BASE = 2_000_000
DEFAULT_SPAN = 1_000_000


@dataclass(frozen=True)
class Confinement:
    """Per-worker uids and gids in ``[uid_base, uid_base + span)``."""

    uid_base: int = DEFAULT_UID_BASE
    span: int = DEFAULT_SPAN

    def __post_init__(self) -> None:
        if self.uid_base < 1000 or self.span < 1 or self.uid_base + self.span > 2**31 - 2:
            raise ValueError("the worker uid range must lie above the system users (1000) and below 2^31")

    def ids(self, worker: str) -> tuple[int, int]:
        """The uid and gid ``worker`` runs as (the same number: a group of its own)."""
        digest = int.from_bytes(hashlib.sha256(worker.encode()).digest()[:8], "big")
        number = self.uid_base + digest % self.span
        return number, number

    def owns(self, uid: int) -> bool:
        return self.uid_base <= uid < self.uid_base + self.span


def can_confine() -> bool:
    """Whether this process may start others under another uid."""
    return os.geteuid() == 0


def unconfined_reasons(backend: str) -> list[str]:
    """What is *not* confined with the configured backend, in words for the operator; empty if all is."""
    if backend != "process" or can_confine():
        return []
    return [
        "the process backend runs workers as the bot's own user, because the bot does not run as root: "
        "a worker can read the bot's database (with the homeserver admin token) and other workers' "
        "directories. Run the bot as root (workers then get a uid of their own), or use the docker or "
        "kubernetes backend."
    ]
