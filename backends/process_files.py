"""What a process worker keeps on disk, and what an exec prints: read and written with care.

``state.json`` holds the spec (whose environment may carry secrets) and ``worker.log`` what the
worker printed, so both are opened 0600, the bot's alone. A log is tailed backwards from its end
(a worker runs for months), and an exec's output is cut at :data:`EXEC_OUTPUT_MAX` bytes while it
is read, never held whole.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backends.base import Resources, WorkerSpec

STATE_FILE = "state.json"
LOG_FILE = "worker.log"
EXEC_OUTPUT_MAX = 1 << 20
"""Bytes of an exec's stdout (and of its stderr) kept; the rest is read and dropped, not held."""
_TAIL_MAX_BYTES = 4 << 20
"""How far back from the end of a log a tail reads, however long its lines."""


def open_private(path: str, flags: int) -> int:
    """Open a file the bot alone may read (the log may hold what a worker printed of its secrets)."""
    return os.open(path, flags, 0o600)


def read_state(directory: Path) -> dict[str, Any]:
    with open(directory / STATE_FILE) as file:
        state: dict[str, Any] = json.load(file)
    return state


def spec_to_json(spec: WorkerSpec) -> dict[str, Any]:
    return {"name": spec.name, "image": spec.image,
            "command": list(spec.command) if spec.command is not None else None,
            "env": dict(spec.env), "labels": dict(spec.labels),
            "resources": spec.resources.as_dict() if spec.resources else None}


def spec_from_json(data: Mapping[str, Any]) -> WorkerSpec:
    resources = Resources(**data["resources"]) if data.get("resources") else None
    return WorkerSpec(data["name"], data["image"], data["command"], data["env"], data["labels"], resources)


async def exec_output(process: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    """An exec's stdout and stderr, each cut at :data:`EXEC_OUTPUT_MAX` bytes, once it has exited."""
    assert process.stdout is not None
    assert process.stderr is not None
    stdout, stderr, _ = await asyncio.gather(_bounded(process.stdout), _bounded(process.stderr), process.wait())
    return stdout, stderr


async def _bounded(stream: asyncio.StreamReader) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < EXEC_OUTPUT_MAX:
            kept += chunk[:EXEC_OUTPUT_MAX - len(kept)]
    return bytes(kept)


def last_lines(path: Path, count: int) -> str:
    """The last ``count`` lines of a file, read backwards from its end in blocks (never the whole file)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return ""
    with handle:
        end = handle.seek(0, os.SEEK_END)
        position, data = end, b""
        while position > 0 and data.count(b"\n") <= count and end - position < _TAIL_MAX_BYTES:
            step = min(65536, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode(errors="replace").splitlines(keepends=True)
    if position > 0 and lines:
        lines = lines[1:]  # the first one is cut
    return "".join(lines[-count:])
