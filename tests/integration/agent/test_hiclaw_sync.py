"""The file-sync skill's script, run by ``sh`` as a worker runs it, against a local object store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hiclaw_bot.flows.skills import SKILLS

SCRIPT = Path(str(SKILLS.joinpath("file-sync", "scripts", "hiclaw-sync.sh")))


def sync(home: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.defpath, "HOME": str(home), "HICLAW_WORKER_NAME": "ann", "HICLAW_FS_KIND": "local",
           "HICLAW_FS_DIR": str(store)}
    return subprocess.run(["sh", str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False,
                          timeout=30)


def test_pull_brings_the_files_but_not_the_workers_own_state(tmp_path: Path) -> None:
    store, home = tmp_path / "store", tmp_path / "home"
    (store / "agents/ann/skills/file-sync").mkdir(parents=True)
    (store / "agents/ann/state").mkdir()
    (store / "agents/ann/openclaw.json").write_text('{"new": true}')
    (store / "agents/ann/skills/file-sync/SKILL.md").write_text("skill")
    (store / "agents/ann/state/activity.json").write_text("{}")
    home.mkdir()
    (home / "openclaw.json").write_text('{"old": true}')
    result = sync(home, store)
    assert result.returncode == 0, result.stderr
    assert (home / "openclaw.json").read_text() == '{"new": true}'
    assert (home / "skills/file-sync/SKILL.md").read_text() == "skill"
    assert not (home / "state").exists()


def test_push_copies_the_output_but_never_soul_md(tmp_path: Path) -> None:
    store, home = tmp_path / "store", tmp_path / "home"
    (home / "output/report").mkdir(parents=True)
    (home / "output/report/result.txt").write_text("42")
    (home / "output/SOUL.md").write_text("mine")
    (store / "agents/ann").mkdir(parents=True)
    result = sync(home, store, "push")
    assert result.returncode == 0, result.stderr
    assert (store / "agents/ann/output/report/result.txt").read_text() == "42"
    assert not (store / "agents/ann/output/SOUL.md").exists()


def test_bad_use_is_refused(tmp_path: Path) -> None:
    assert sync(tmp_path, tmp_path, "frob").returncode == 2
    assert sync(tmp_path, tmp_path / "nowhere").returncode == 1
