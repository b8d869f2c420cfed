"""Worker runtime profiles, by name: ``reference`` (our agent) and ``openclaw`` (upstream's worker).

A worker's runtime is chosen at create (``--runtime``, else ``runtimes.default``) and kept in its
operation's parameters, so every later step (update, wake, repair, delete) runs the same profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hiclaw_bot.flows.runtimes import openclaw, reference
from hiclaw_bot.flows.runtimes.base import Probe, ReadyContext, RuntimeProfile

__all__ = ["PROFILES", "Probe", "ReadyContext", "RuntimeProfile", "profile", "profile_of"]

PROFILES: Mapping[str, RuntimeProfile] = {p.name: p for p in (reference.PROFILE, openclaw.PROFILE)}


def profile(name: str) -> RuntimeProfile:
    """The profile called ``name``; ``KeyError`` names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown runtime {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def profile_of(params: Mapping[str, Any]) -> RuntimeProfile:
    """The profile of a worker's parameters; workers made before runtimes existed ran ``reference``."""
    return profile(str(params.get("runtime") or "reference"))
