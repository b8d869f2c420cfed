"""Whether a recorded pid is still the process we started: same pid, same boot, same start tick.

A bare pid is reused by unrelated processes, so the backend records when its process started.
It used to record ``psutil``'s ``create_time``, a wall-clock time computed as the boot time *as
read now* plus the ticks since boot; the kernel's boot time moves by whole seconds whenever the
clock is stepped (a time daemon, a resumed VM), and then a worker alive and well looked exited:
its status said FAILED, a stop left it running, a repair started a second one. What never moves
is the kernel's own record, the start time in clock ticks since boot (``/proc/<pid>/stat``,
field 22), taken with the id of the boot it counts from.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

IDENTITY = ("pid", "start_ticks", "boot_id", "create_time")
"""The fields of a record that say which process it is: replaced together, never mixed."""
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_WALL_CLOCK_SLACK = 2.0
"""For a record made before start ticks were kept: how far its wall-clock start may seem to move."""


@functools.cache
def boot_id() -> str:
    """This boot's id: it cannot change while we run, so it is read once."""
    return _BOOT_ID.read_text().strip()


def _stat(pid: int) -> tuple[str, int]:
    """``pid``'s state letter and its start in clock ticks since boot, from one read of
    ``/proc/<pid>/stat`` (NoSuchProcess if there is no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        raise psutil.NoSuchProcess(pid) from None
    # Field 2, the command, is in parentheses and may hold anything: count from the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def identify(pid: int) -> dict[str, Any]:
    """The fields that identify ``pid``'s process in a record; None for a process gone already."""
    try:
        return {"pid": pid, "start_ticks": _stat(pid)[1], "boot_id": boot_id(),
                "create_time": psutil.Process(pid).create_time()}
    except psutil.NoSuchProcess:
        return {**dict.fromkeys(IDENTITY), "pid": pid}


def still_running(record: Mapping[str, Any]) -> bool:
    """Whether the process ``record`` identifies runs: the same process, and not a zombie."""
    pid = record.get("pid")
    if pid is None:
        return False
    try:
        state, ticks = _stat(pid)
        if record.get("start_ticks") is not None:
            same = record.get("boot_id") == boot_id() and ticks == record["start_ticks"]
        elif record.get("create_time") is not None:  # recorded before start ticks were kept
            same = abs(psutil.Process(pid).create_time() - record["create_time"]) < _WALL_CLOCK_SLACK
        else:
            return False
    except psutil.NoSuchProcess:
        return False
    return same and state != "Z"
