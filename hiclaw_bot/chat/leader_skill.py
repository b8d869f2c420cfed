"""The ``team-operations`` skill: what a Team Leader agent may ask of the bot, from the registry itself.

A Team Leader is an agent; the bot's commands reach it only through its skills. This skill is
rendered from the command registry and the permission table when the bot starts, and pushed to
leaders only, so it lists exactly the commands the bot would accept from a leader, with their
syntax, and can never drift from them. ``{team}`` and ``{quota}`` are left for the skills step,
which knows the leader's team.
"""

from __future__ import annotations

from hiclaw_bot.chat.permissions import TABLE, ActorKind, Rule
from hiclaw_bot.chat.registry import Command, Registry

__all__ = ["SKILL_NAME", "render_team_operations"]

SKILL_NAME = "team-operations"

_SCOPE = {
    Rule.ALLOW: "anywhere",
    Rule.OWN_TEAM_OR_LIST: "shows only your team",
    Rule.OWN_TEAM: "workers of team {team} only",
    Rule.OWN_TEAM_WITHIN_QUOTA: "team {team} only, within its quota",
}


def _example(command: Command) -> str:
    """A filled-in example: placeholder names a leader would replace."""
    words = [f"!{command.name}"]
    for arg in command.args:
        if not arg.option and arg.required:
            words.append({"name": "<worker>", "topic": "worker", "op_id": "<op id>", "code": "<code>",
                          "worker": "<worker>"}.get(arg.name, f"<{arg.name}>"))
    if command.raw is not None:
        words += ["--", "ls"]
    return " ".join(words)


def render_team_operations(registry: Registry) -> str:
    """The skill's ``SKILL.md``, with ``{team}`` and ``{quota}`` still to fill."""
    rows = []
    for command in registry:
        rule = TABLE[command.permission][ActorKind.TEAM_LEADER]
        if rule is Rule.DENY:
            continue
        usage = command.usage().replace("|", "\\|")
        rows.append(f"| `{usage}` | {command.summary} | {_SCOPE[rule]} | `{_example(command)}` |")
    denied = sorted(f"`!{c.name}`" for c in registry if TABLE[c.permission][ActorKind.TEAM_LEADER] is Rule.DENY)
    lines = [
        "---",
        f"name: {SKILL_NAME}",
        "description: Drive the hiclaw bot from your team room: the commands a team leader may send.",
        "---",
        "",
        f"# {SKILL_NAME}",
        "",
        "You lead team **{team}**. The hiclaw bot manages your team's workers; you ask it by posting a",
        "command as a plain message in your team room (or your DM with the bot), starting with `!`.",
        "The bot answers in a thread-like reply and shows its progress; wait for its final answer",
        "before you send the next command about the same worker.",
        "",
        "Rules the bot applies to you:",
        "",
        "- You act only on workers of team {team}, and only from your team's rooms.",
        "- Your team's worker quota: {quota}. `!worker create` needs a free slot in it, and both",
        "  `!worker create` and `!worker delete` need the team to have a quota at all.",
        "- A command that deletes asks for `!confirm CODE`: send that exact line to go ahead.",
        "- Send one command per message, nothing else in it.",
        "",
        "| command | what it does | scope | example |",
        "|---|---|---|---|",
        *rows,
        "",
        "Not for you (admins only): " + ", ".join(denied) + ".",
        "",
        "`!help COMMAND` gives the details of any command.",
    ]
    return "\n".join(lines) + "\n"
