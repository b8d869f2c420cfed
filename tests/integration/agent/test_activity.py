"""The activity record against a real (local) object store: first write at once, then throttled, flushed at exit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hiclaw_bot.agent.activity import ActivityRecorder
from hiclaw_bot.clients.objectstore import LocalObjectStore

KEY = "agents/alice/state/activity.json"


async def _read(store: LocalObjectStore) -> dict[str, Any] | None:
    if not await store.exists(KEY):
        return None
    record: dict[str, Any] = json.loads(await store.get(KEY))
    return record


async def test_writes_at_once_then_at_most_once_per_interval_and_flushes_on_exit(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    async with ActivityRecorder(store, KEY, "alice", interval=0.5) as recorder:
        recorder.saw_message()
        recorder.replied()
        await asyncio.sleep(0.1)
        first = await _read(store)
        assert first is not None
        assert (first["messages"], first["replies"]) == (1, 1)
        assert first["last_seen"] is not None
        assert first["last_reply"] is not None

        recorder.saw_message()
        await asyncio.sleep(0.1)
        held_back = await _read(store)
        assert held_back is not None
        assert held_back["messages"] == 1  # within the interval: not yet written
        await asyncio.sleep(0.6)
        trailing = await _read(store)
        assert trailing is not None
        assert trailing["messages"] == 2  # the trailing write landed

        recorder.saw_message()  # pending when the recorder closes
    flushed = await _read(store)
    assert flushed is not None
    assert flushed["messages"] == 3
    assert flushed["worker"] == "alice"


async def test_nothing_is_written_without_activity(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    async with ActivityRecorder(store, KEY, "alice", interval=0.1):
        await asyncio.sleep(0.2)
    assert await _read(store) is None
