"""Fault injection at step boundaries, so crash tests can kill the real process where it hurts.

The engine calls its boundary hook at four points of every step attempt:

* ``before_intent`` – after observe found nothing, before the intent is committed;
* ``after_intent``  – the intent is committed, the external call has not been made;
* ``after_call``    – the external call returned, its result is not yet committed;
* ``after_commit``  – the result is committed.

``HICLAW_FAULT=kill:<step>:<point>`` (optionally ``:<op kind>``) makes a process SIGKILL itself
at that boundary, once: the marker file named by ``HICLAW_FAULT_MARKER`` records that the kill
happened, so the restarted process runs through.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from storage import Operation

BOUNDARIES = ("before_intent", "after_intent", "after_call", "after_commit")

BoundaryHook = Callable[[Operation, str, str], None]


def kill_at(step: str, point: str, *, kind: str | None = None, marker: Path | None = None) -> BoundaryHook:
    """A hook that SIGKILLs this process when ``step`` reaches ``point`` (once, if ``marker`` is given)."""
    if point not in BOUNDARIES:
        raise ValueError(f"unknown boundary {point!r}; expected one of {BOUNDARIES}")

    def hook(op: Operation, step_name: str, at: str) -> None:
        if step_name != step or at != point or (kind is not None and op.kind != kind):
            return
        if marker is not None:
            if marker.exists():
                return
            marker.write_text(f"{op.op_id}:{step_name}:{at}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    return hook


def hook_from_env(environ: dict[str, str] | None = None) -> BoundaryHook | None:
    """The hook described by ``HICLAW_FAULT``, or None when it is unset."""
    env = os.environ if environ is None else environ
    spec = env.get("HICLAW_FAULT", "").strip()
    if not spec:
        return None
    parts = spec.split(":")
    if len(parts) not in (3, 4) or parts[0] != "kill":
        raise ValueError("HICLAW_FAULT must look like kill:<step>:<point>[:<op kind>]")
    marker = env.get("HICLAW_FAULT_MARKER")
    return kill_at(parts[1], parts[2], kind=parts[3] if len(parts) == 4 else None,
                   marker=Path(marker) if marker else None)
