"""README's "Who may do what" table and the registry say the same thing, for every registered command.

Each row of the table names commands (``!worker wake/sleep``, ``!human …`` for all of a noun) and
what each kind of sender may do; the row's pattern of cells is one :class:`Permission`. Every
command the bot registers must sit in exactly one row, and that row must be its permission.
"""

from __future__ import annotations

from pathlib import Path

from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.registry import Registry
from tests.unit.chat.test_permission_walk import the_bots_registry

README = Path(__file__).resolve().parents[3] / "README.md"
ROWS = {
    ("✓", "✓", "✓", "✓", "✓", "–"): Permission.MEMBER,
    ("✓", "own team's", "✓", "own teams'", "own teams'", "–"): Permission.READ,
    ("✓", "own team", "✓", "own teams", "own teams", "–"): Permission.READ,
    ("✓", "own team", "✓", "own teams", "–", "–"): Permission.OPERATE,
    ("✓", "own team, within its quota", "✓", "–", "–", "–"): Permission.PROVISION,
    ("✓", "–", "–", "–", "–", "–"): Permission.MANAGE,
}


def readme_table() -> list[tuple[str, tuple[str, ...]]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Who may do what", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `!")]
    table = []
    for line in rows:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        table.append((cells[0], tuple(cells[1:])))
    return table


def named(cell: str, registry: Registry) -> set[str]:
    """The commands a cell names: ``!worker wake/sleep`` → worker wake, worker sleep; ``!human …`` → all."""
    found: set[str] = set()
    for item in cell.split(","):
        words = item.strip().strip("`").lstrip("!").split()
        noun = words[0]
        if len(words) == 1:
            found.add(noun)
        elif words[1] == "…":
            found |= {c.name for c in registry.of_noun(noun)}
        else:
            found |= {f"{noun} {verb}" for verb in words[1].split("/")}
    return found


def test_every_registered_command_is_in_readme_with_its_permission() -> None:
    registry = the_bots_registry()
    seen: dict[str, Permission] = {}
    for cell, pattern in readme_table():
        assert pattern in ROWS, f"README row {cell}: unknown pattern {pattern}"
        for name in named(cell, registry):
            assert name not in seen, f"!{name} is in two rows of README's table"
            seen[name] = ROWS[pattern]
    registered = {c.name: c.permission for c in registry}
    assert set(seen) == set(registered), "README's table and the registry list different commands"
    for name, permission in registered.items():
        assert seen[name] is permission, f"!{name}: README says {seen[name].value}, the registry {permission.value}"
