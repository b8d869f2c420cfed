"""No import cycle among the bot's own modules, ``TYPE_CHECKING`` imports included.

import-linter checks layers between packages; a cycle *inside* a layer (``chat.context`` ↔
``chat.registry`` once) slips through it, and hiding one side under ``if TYPE_CHECKING:`` only
hides it from the interpreter: a reader still has to hold both modules in mind at once. So the
graph here is read from the source with :mod:`ast`, every import statement counted wherever it
sits, and a cycle fails the test with its modules named in order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hiclaw_bot", "backends", "storage")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _own(name: str, known: Mapping[str, Path]) -> str | None:
    """The module of ours that ``name`` (a module or a name in one) refers to, if any."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imported(module: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The modules of ours that ``module`` imports, anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {m for alias in node.names if (m := _own(alias.name, known))}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name``, mod.
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else _own(base, known)
                if target:
                    found.add(target)
    found.discard(module)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {module: imported(module, path, known) for module, path in known.items()}


def cycles(edges: Mapping[str, set[str]]) -> Iterator[list[str]]:
    """Each cycle once, as the path that closes it (``a → b → a``), found by depth-first search."""
    done: set[str] = set()
    for start in sorted(edges):
        if start in done:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        on_path = [start]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.pop()
                done.add(node)
            elif child in on_path:
                yield [*on_path[on_path.index(child):], child]
            elif child not in done:
                stack.append((child, iter(sorted(edges.get(child, ())))))
                on_path.append(child)


def test_the_bots_modules_import_each_other_without_a_cycle() -> None:
    found = [" → ".join(cycle) for cycle in cycles(graph())]
    assert not found, "import cycle(s):\n" + "\n".join(found)


def test_a_cycle_under_type_checking_is_found(tmp_path: Path) -> None:
    package = tmp_path / "hiclaw_bot"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from hiclaw_bot.b import B\nA = 1\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from hiclaw_bot import a\nB = 2\n")
    (package / "c.py").write_text("from . import a\n")
    edges = graph(tmp_path)
    assert edges["hiclaw_bot.c"] == {"hiclaw_bot.a"}
    assert [" → ".join(c) for c in cycles(edges)] == ["hiclaw_bot.a → hiclaw_bot.b → hiclaw_bot.a"]
