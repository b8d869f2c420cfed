"""A confined worker's directory on a local store: handed over whole, and only it.

``LocalIdentities.ensure`` runs as root and chowns a worker's ``agents/<w>/`` to the worker's uid.
The worker can write there, so the walk must not follow a link it planted onto a file outside;
and the skills step writes into the same tree at the same time, so every file must end up the
worker's, whichever of the two finishes first.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from hiclaw_bot.clients.objectstore import LocalObjectStore
from hiclaw_bot.clients.storage_identity import LocalIdentities

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="handing a directory to another uid needs root")

WORKER_IDS = (54321, 54321)


def owner(path: Path) -> int:
    return path.lstat().st_uid


def identities(root: Path) -> LocalIdentities:
    return LocalIdentities(root, owner=lambda name: WORKER_IDS)


async def test_a_link_the_worker_planted_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    outside = tmp_path / "bot-secret"
    outside.write_text("server-admin token")
    own = root / "agents" / "w"
    (own / "sub").mkdir(parents=True)
    (own / "link-to-file").symlink_to(outside)
    (own / "link-to-dir").symlink_to(tmp_path)

    await identities(root).ensure("w", ["agents/w/"], known_key=None)

    assert (owner(outside), owner(tmp_path)) == (0, 0)
    assert (owner(own / "sub"), owner(own / "link-to-file")) == (WORKER_IDS[0], WORKER_IDS[0])


async def test_files_written_while_the_directory_is_handed_over_are_the_workers(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    stop = threading.Event()

    def write_skills() -> None:
        loop = asyncio.new_event_loop()
        try:
            turn = 0
            while not stop.is_set():
                turn += 1
                for index in range(8):
                    key = f"agents/w/skills/s{index}/scripts/run-{turn % 3}.sh"
                    loop.run_until_complete(store.put(key, f"{turn}".encode()))
        finally:
            loop.close()

    writer = threading.Thread(target=write_skills)
    writer.start()
    try:
        for _ in range(300):
            await identities(root).ensure("w", ["agents/w/"], known_key=None)
    finally:
        stop.set()
        writer.join()

    strangers = [str(path.relative_to(root)) for path in (root / "agents" / "w").rglob("*")
                 if owner(path) != WORKER_IDS[0]]
    assert strangers == []
