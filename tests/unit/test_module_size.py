"""No module of the bot is over 450 lines, the simulators and dev stack (``devstack/``) aside.

A module that grows past that size has usually taken on a second job (issue "one home for each
rule" split four of them); the test names the ones that did, so a split is decided when the
module grows, not found later.
"""

from __future__ import annotations

from tests.unit.test_import_graph import modules

LIMIT = 450


def test_every_module_stays_small() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    over = {name: lines for name, lines in sizes.items() if lines > LIMIT and ".devstack" not in name}
    assert over == {}, f"over {LIMIT} lines (split along a seam): {over}"
