"""The skills a worker can be given: the catalogue shipped with the bot, its rule, and the step
that pushes a worker's skills to its files.

A skill is a folder under ``hiclaw_bot/flows/skills/<name>/`` with a ``SKILL.md`` (and maybe
``scripts/``…); every file of it is copied to ``skills/<name>/`` in the worker's prefix. Team
leaders also get ``team-operations``, rendered with their team and quota.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from hiclaw_bot.engine import Done, Outcome, PermanentError, Skipped, StepContext
from hiclaw_bot.flows import names
from hiclaw_bot.flows.quota import team_worker_limit
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_steps import WorkerStep
from hiclaw_bot.types import Refused

SKILLS = resources.files("hiclaw_bot.flows").joinpath("skills")
LEADER_SKILL = "team-operations"
"""Rendered by the chat layer (``Services.leader_skill``) and pushed to team leaders only."""


def builtin_skills() -> list[str]:
    """The skills shipped with the bot (``hiclaw_bot/flows/skills/<name>/SKILL.md``)."""
    return sorted(entry.name for entry in SKILLS.iterdir() if entry.joinpath("SKILL.md").is_file())


def check_skills(skills: Sequence[str]) -> None:
    """Refuse skills the bot does not ship: the one rule, for chat before anything starts and for
    the ``skills`` step (an operation submitted some other way)."""
    unknown = sorted(set(skills) - set(builtin_skills()))
    if unknown:
        raise Refused(f"Unknown skill(s): {', '.join(unknown)}. Known: {', '.join(builtin_skills())}.")


class Skills(WorkerStep):
    """Push the worker's skills, every file of each (``SKILL.md``, ``scripts/``…); unchanged files
    are skipped by the object store."""

    name = "skills"

    def __init__(self, services: Services, worker: str, skills: list[str], *, team: str | None = None,
                 leader: bool = False, **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.skills = skills
        self.team = team
        self.leader = leader

    async def do(self, ctx: StepContext) -> Outcome:
        leader_skill = await self._leader_skill(ctx)
        if not self.skills and leader_skill is None:
            return Skipped("no skills asked for")
        try:
            check_skills(self.skills)
        except Refused as exc:
            raise PermanentError(exc.reason) from None
        prefix = names.worker_prefix(self.worker)
        written = 0
        async with ctx.external("storage"):
            for skill in sorted(set(self.skills)):
                for path, data in skill_files(skill):
                    written += await self.services.objects.put(f"{prefix}skills/{skill}/{path}", data)
            if leader_skill is not None:
                written += await self.services.objects.put(f"{prefix}skills/{LEADER_SKILL}/SKILL.md", leader_skill)
        pushed = sorted({*self.skills, *([LEADER_SKILL] if leader_skill is not None else [])})
        return Done({"skills": pushed, "written": written})

    async def _leader_skill(self, ctx: StepContext) -> bytes | None:
        """A leader's ``team-operations`` skill, with its team and quota filled in."""
        template = self.services.leader_skill
        if not self.leader or self.team is None or template is None:
            return None
        limit = team_worker_limit(self.services.config, self.team, await ctx.store.teams.get(self.team))
        quota = f"{limit} workers" if limit is not None else "none set (ask an admin to set one)"
        return template.replace("{team}", self.team).replace("{quota}", quota).encode()


def skill_files(skill: str) -> list[tuple[str, bytes]]:
    """Every file of a shipped skill, by path inside the skill, sorted (caches excluded)."""
    found: list[tuple[str, bytes]] = []

    def walk(node: Traversable, path: str) -> None:
        for entry in sorted(node.iterdir(), key=lambda e: e.name):
            if entry.name.startswith((".", "__")):
                continue
            if entry.is_dir():
                walk(entry, f"{path}{entry.name}/")
            else:
                found.append((f"{path}{entry.name}", entry.read_bytes()))

    walk(SKILLS.joinpath(skill), "")
    return found


