"""The part of ``openclaw.json`` the reference agent acts on: its Matrix login and who may address it.

The bot renders the whole file for a full OpenClaw worker (model provider, gateway, plugins); the
reference agent needs only ``channels.matrix``. Parsing is strict about what it uses and silent
about the rest, so the bot can add sections without breaking older agents. Errors name the field
and never carry its value: the access token is one of them.

Allow lists: ``dm.allowFrom`` and ``groupAllowFrom`` together are who may invite the agent and
talk to it. A policy other than ``allowlist`` is not understood by this agent, which then closes
the door rather than guess: an ``open`` policy would let anyone on the homeserver use the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hiclaw_bot.types import UserId

__all__ = ["MatrixSettings", "SettingsError", "parse_openclaw"]


class SettingsError(ValueError):
    """``openclaw.json`` is not usable; the message names the field."""


@dataclass(frozen=True)
class MatrixSettings:
    """The agent's Matrix login and allow list, as ``openclaw.json`` states them."""

    homeserver: str
    user_id: UserId
    access_token: str = field(repr=False)
    allowed: frozenset[UserId]
    """Who may invite the agent and address it (both allow lists; empty when a policy is not ``allowlist``)."""

    def same_login(self, other: MatrixSettings) -> bool:
        """Whether ``other`` logs in exactly as this one does (else the agent must log in again)."""
        return (self.homeserver, self.user_id, self.access_token) == (other.homeserver, other.user_id,
                                                                      other.access_token)


def _string(section: dict[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"openclaw.json: {where}.{key} is missing or not a string")
    return value.strip()


def _allow_list(section: Any, policy: Any, key: str, where: str) -> set[UserId]:
    if policy != "allowlist":
        return set()
    values = section.get(key, []) if isinstance(section, dict) else []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SettingsError(f"openclaw.json: {where}.{key} must be a list of user ids")
    return {UserId(v) for v in values}


def parse_openclaw(raw: bytes) -> MatrixSettings:
    """The Matrix settings in an ``openclaw.json`` document."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SettingsError("openclaw.json is not valid JSON") from None
    channels = document.get("channels") if isinstance(document, dict) else None
    matrix = channels.get("matrix") if isinstance(channels, dict) else None
    if not isinstance(matrix, dict):
        raise SettingsError("openclaw.json: channels.matrix is missing")
    where = "channels.matrix"
    homeserver = _string(matrix, "homeserver", where)
    if not homeserver.startswith(("http://", "https://")):
        raise SettingsError(f"openclaw.json: {where}.homeserver must be an http(s) URL")
    dm = matrix.get("dm")
    allowed = _allow_list(dm, dm.get("policy") if isinstance(dm, dict) else None, "allowFrom", f"{where}.dm")
    allowed |= _allow_list(matrix, matrix.get("groupPolicy"), "groupAllowFrom", where)
    return MatrixSettings(homeserver=homeserver.rstrip("/"), user_id=UserId(_string(matrix, "userId", where)),
                          access_token=_string(matrix, "accessToken", where), allowed=frozenset(allowed))
