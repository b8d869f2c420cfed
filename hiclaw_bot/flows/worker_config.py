"""Renders a worker's files from a spec: ``openclaw.json``, ``config/mcporter.json``, ``AGENTS.md``, ``SOUL.md``.

Workers pull these files every few minutes and reload when one changes, so the rendering must be
**byte-stable**: the same spec gives the same bytes, on every run and every machine. Upstream
HiClaw wrote a random gateway token on each render and restarted every worker about every five
minutes (``shared/reference/upstream.md`` §10). Here:

* JSON is dumped with sorted keys, a fixed indent and a trailing newline;
* lists whose order means nothing (allowed senders, MCP servers, skills, team members) are
  de-duplicated and sorted, so a caller iterating a set cannot change the output;
* nothing depends on time, randomness or the environment; the worker's local gateway token is an
  HMAC of its gateway key, stable for as long as the key is.

The object store then skips unchanged files by their hash, and a re-run of "push config" is a no-op.
``SOUL.md`` is *seed-only*: written once, then the user's to edit (:attr:`RenderedFiles.seed_only`).

This module is pure: it imports only the standard library and :mod:`hiclaw_bot.types`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hiclaw_bot.types import Role, RoomId, TeamName, UserId, WorkerName

__all__ = [
    "AGENTS_MD",
    "MCPORTER_JSON",
    "OPENCLAW_JSON",
    "PROVIDER",
    "SOUL_MD",
    "McpServer",
    "RenderedFiles",
    "TeamMember",
    "WorkerConfigSpec",
    "gateway_auth_token",
    "render_worker_config",
]

OPENCLAW_JSON = "openclaw.json"
MCPORTER_JSON = "config/mcporter.json"
AGENTS_MD = "AGENTS.md"
SOUL_MD = "SOUL.md"
PROVIDER = "hiclaw-gateway"
"""The model provider name in ``openclaw.json``: the AI gateway, reached with the worker's key."""
GATEWAY_PORT = 18800
_TOKEN_CONTEXT = b"hiclaw-bot/openclaw-gateway-token/v1"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class McpServer:
    """An MCP server behind the gateway; ``url`` defaults to ``<gateway>/mcp-servers/<name>/mcp``."""

    name: str
    url: str | None = None


@dataclass(frozen=True)
class TeamMember:
    """A worker of the team a leader coordinates, and the room where the leader talks to it."""

    name: WorkerName
    user_id: UserId
    room_id: RoomId


@dataclass(frozen=True)
class WorkerConfigSpec:
    """Everything a worker's files depend on. Secrets are kept out of the repr."""

    worker: WorkerName
    homeserver_url: str
    user_id: UserId
    access_token: str = field(repr=False)
    room_id: RoomId
    allowed_senders: tuple[UserId, ...]
    """Who may instruct the worker, in DMs and group rooms: the admins, and its team leader if any."""
    model: str
    gateway_url: str
    gateway_key: str = field(repr=False)
    mcp_servers: tuple[McpServer, ...] = ()
    role: Role = Role.WORKER
    team: TeamName | None = None
    team_members: tuple[TeamMember, ...] = ()
    """For a team leader: the members it coordinates."""
    skills: tuple[str, ...] = ()
    gateway_port: int = GATEWAY_PORT
    """The port of the worker's own OpenClaw gateway: upstream's 18800 in a container of its own, one
    per worker where workers share the host's network (the process backend)."""

    def __post_init__(self) -> None:
        for name in (self.worker, *(s.name for s in self.mcp_servers), *(m.name for m in self.team_members),
                     *self.skills, *([self.team] if self.team else [])):
            if not _NAME.match(name):
                raise ValueError(f"invalid name {name!r}: use lower-case letters, digits and '-'")
        if len({s.name for s in self.mcp_servers}) != len(set(self.mcp_servers)):
            raise ValueError("two MCP servers share a name")
        if not self.model or not self.allowed_senders:
            raise ValueError("a worker needs a model and at least one allowed sender")
        if self.role == Role.TEAM_LEADER and self.team is None:
            raise ValueError("a team leader needs a team")
        if self.team_members and self.role != Role.TEAM_LEADER:
            raise ValueError("only a team leader has team members")
        if not 1024 <= self.gateway_port <= 65535:
            raise ValueError("the worker's gateway port must be between 1024 and 65535")


@dataclass(frozen=True)
class RenderedFiles:
    """The files of one worker, by path relative to its ``agents/<worker>/`` prefix."""

    files: Mapping[str, bytes] = field(repr=False)
    seed_only: frozenset[str]
    """Paths to write only when absent (they belong to the user once written)."""

    def __repr__(self) -> str:
        return f"RenderedFiles(paths={sorted(self.files)!r}, seed_only={sorted(self.seed_only)!r})"

    def digest(self) -> str:
        """A hash over every path and content: equal digests mean nothing to push."""
        outer = hashlib.sha256()
        for path in sorted(self.files):
            outer.update(f"{path}\0{hashlib.sha256(self.files[path]).hexdigest()}\n".encode())
        return outer.hexdigest()


def gateway_auth_token(gateway_key: str) -> str:
    """The token of the worker's local openclaw gateway: derived from its gateway key, never random."""
    return hmac.new(gateway_key.encode(), _TOKEN_CONTEXT, hashlib.sha256).hexdigest()


def render_worker_config(spec: WorkerConfigSpec) -> RenderedFiles:
    """Render every file of ``spec``'s worker. Pure: the same spec always gives the same bytes."""
    files = {
        OPENCLAW_JSON: _json(_openclaw(spec)),
        MCPORTER_JSON: _json(_mcporter(spec)),
        AGENTS_MD: _agents_md(spec).encode(),
        SOUL_MD: _soul_md(spec).encode(),
    }
    return RenderedFiles(files=files, seed_only=frozenset({SOUL_MD}))


def _json(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def _sorted_unique(items: Iterable[str]) -> list[str]:
    return sorted(set(items))


def _gateway(spec: WorkerConfigSpec) -> str:
    return spec.gateway_url.rstrip("/")


def _openclaw(spec: WorkerConfigSpec) -> dict[str, Any]:
    token = gateway_auth_token(spec.gateway_key)
    senders = _sorted_unique(spec.allowed_senders)
    # A leader also hears its members in the team room; everyone else only the allowed senders.
    group_senders = _sorted_unique([*senders, *(m.user_id for m in spec.team_members)])
    return {
        "agents": {"defaults": {"model": {"primary": f"{PROVIDER}/{spec.model}"}, "workspace": "~"}},
        "channels": {
            "matrix": {
                "enabled": True,
                "homeserver": spec.homeserver_url.rstrip("/"),
                "userId": spec.user_id,
                "accessToken": spec.access_token,
                "encryption": False,
                "dm": {"policy": "allowlist", "allowFrom": senders},
                "groupPolicy": "allowlist",
                "groupAllowFrom": group_senders,
                # Upstream's template also sets "allow": true here; OpenClaw 2026.9 rejects that key.
                "groups": {"*": {"requireMention": True}},
                "autoJoin": "always",
                # The homeserver is on a private address (127.0.0.1, a Docker network); OpenClaw
                # 2026.4+ refuses one without this (AgentTeams' generator sets it too).
                "network": {"dangerouslyAllowPrivateNetwork": True},
            },
        },
        "gateway": {"mode": "local", "port": spec.gateway_port, "auth": {"token": token}, "remote": {"token": token}},
        "models": {
            "mode": "merge",
            "providers": {
                PROVIDER: {
                    "baseUrl": f"{_gateway(spec)}/v1",
                    "apiKey": spec.gateway_key,
                    "api": "openai-completions",
                    "models": [_model_entry(spec.model)],
                },
            },
        },
        # Matrix is a plugin in OpenClaw 2026.x, installed as a trusted npm install beside the runtime.
        "plugins": {"allow": ["matrix"], "entries": {"matrix": {"enabled": True}}},
    }


MODEL_LIMITS: Mapping[str, tuple[int, int]] = {
    "qwen-max": (32768, 8192),
    "qwen-plus": (131072, 8192),
    "qwen-turbo": (1000000, 8192),
}
"""Context window and output limit of the models we know; others get :data:`DEFAULT_LIMITS`."""
DEFAULT_LIMITS = (32768, 8192)


def _model_entry(model: str) -> dict[str, Any]:
    """A model entry as OpenClaw 2026.x and upstream's CoPaw bridge read it (they need the limits)."""
    context_window, max_tokens = MODEL_LIMITS.get(model, DEFAULT_LIMITS)
    return {"id": model, "name": model, "contextWindow": context_window, "maxTokens": max_tokens,
            "input": ["text"], "reasoning": False}


def _mcporter(spec: WorkerConfigSpec) -> dict[str, Any]:
    servers = {
        server.name: {
            "url": server.url or f"{_gateway(spec)}/mcp-servers/{server.name}/mcp",
            "transport": "http",
            "headers": {"Authorization": f"Bearer {spec.gateway_key}"},
        }
        for server in sorted(set(spec.mcp_servers), key=lambda s: s.name)
    }
    return {"mcpServers": servers}


def _agents_md(spec: WorkerConfigSpec) -> str:
    role = "the team leader of" if spec.role == Role.TEAM_LEADER else "a worker of"
    team = f" team **{spec.team}**" if spec.team else " the HiClaw platform"
    lines = [
        f"# {spec.worker}",
        "",
        "<!-- Written by hiclaw-bot on every config push: edits here are lost. Put your own notes in SOUL.md. -->",
        "",
        f"You are **{spec.worker}**, {role}{team}.",
        "",
        "## Where you work",
        "",
        f"- Matrix user: `{spec.user_id}`",
        f"- Your room: `{spec.room_id}`",
        f"- Model: `{PROVIDER}/{spec.model}`",
        "- Take instructions only from: " + ", ".join(f"`{s}`" for s in _sorted_unique(spec.allowed_senders)) + ".",
        "- In group rooms, answer only when you are mentioned.",
    ]
    if spec.role == Role.TEAM_LEADER:
        lines += ["", "## Your team", "", "| worker | Matrix user | room |", "|---|---|---|"]
        lines += [f"| {m.name} | `{m.user_id}` | `{m.room_id}` |"
                  for m in sorted(set(spec.team_members), key=lambda m: (m.name, m.user_id, m.room_id))]
        if not spec.team_members:
            lines.append("| (none yet) | | |")
        lines += ["", "To create, wake, sleep or update your team's workers, ask the hiclaw bot in your team room:",
                  "the `team-operations` skill (`skills/team-operations/SKILL.md`) lists the commands it takes "
                  "from you."]
    lines += ["", "## Tools", ""]
    servers = _sorted_unique(s.name for s in spec.mcp_servers)
    lines.append("- MCP servers (see `config/mcporter.json`): "
                 + (", ".join(f"`{s}`" for s in servers) if servers else "none") + ".")
    skills = _sorted_unique(spec.skills)
    lines.append("- Skills (under `skills/`): " + (", ".join(f"`{s}`" for s in skills) if skills else "none") + ".")
    return "\n".join(lines) + "\n"


def _soul_md(spec: WorkerConfigSpec) -> str:
    return (
        f"# {spec.worker}\n"
        "\n"
        f"Describe here who {spec.worker} is: its character, what it knows best, and how it likes to work.\n"
        "\n"
        "This file is yours: hiclaw-bot wrote it once and will never overwrite it.\n"
    )
