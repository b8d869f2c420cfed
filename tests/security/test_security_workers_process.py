"""A process-backend worker cannot read the bot's database, nor another worker's directory.

The bot runs these tests as root (as it must to confine anything); each worker then runs under a
uid of its own (``backends/confinement.py``). Both the worker's own process and ``!worker exec``
commands run as that uid, so both are tried.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from backends.base import WorkerSpec, WorkerState
from backends.confinement import Confinement, can_confine
from backends.process import ProcessBackend
from hiclaw_bot.app import make_backend
from hiclaw_bot.cli import config_warnings
from hiclaw_bot.config import Config
from storage import Store
from tests.fixtures.backends import owned

pytestmark = pytest.mark.skipif(not can_confine(), reason="confinement needs the bot to run as root")

LOOP = ["sh", "-c", "while true; do sleep 1; done"]


def bot_config(tmp_path: Path) -> Config:
    return Config.model_validate({
        "data_dir": str(tmp_path / "data"),
        "matrix": {"homeserver": "http://127.0.0.1:9", "server_name": "test", "admins": ["@admin:test"],
                   "bot": {"password": "not-used"}, "registration": {"mode": "token", "token": "not-used"}},
        "storage": {"kind": "local", "directory": str(tmp_path / "objects")},
        "backend": {"kind": "process", "instance": "sec"},
    })


@pytest.fixture
async def confined(tmp_path: Path) -> AsyncIterator[tuple[Config, ProcessBackend]]:
    config = bot_config(tmp_path)
    backend = make_backend(config)
    assert isinstance(backend, ProcessBackend)
    async with owned(backend):
        yield config, backend


async def running(backend: ProcessBackend, name: str) -> None:
    await backend.create(WorkerSpec(name, "n/a", LOOP))
    await backend.start(name)
    assert (await backend.status(name)).state is WorkerState.RUNNING


async def test_a_worker_reads_neither_the_database_nor_another_worker(
        confined: tuple[Config, ProcessBackend]) -> None:
    config, backend = confined
    store = await Store.open(config.database_path)
    await store.secrets.put("bot", "admin_token", "the-admin-token")
    await store.close()
    await running(backend, "alice")
    await running(backend, "bob")
    workers = config.data_dir / "workers" / "sec"
    bob = workers / "bob"
    (bob / "work" / "notes.txt").write_text("bob's")

    attempts = {
        "the database": f"cat {config.database_path}",
        "the database's WAL": f"cat {config.database_path}-wal",
        "the data directory's listing": f"ls {config.data_dir}",
        "the workers' listing": f"ls {workers}",
        "bob's work directory": f"ls {bob / 'work'}",
        "bob's file": f"cat {bob / 'work' / 'notes.txt'}",
        "bob's state (his environment)": f"cat {bob / 'state.json'}",
        "bob's log": f"cat {bob / 'worker.log'}",
        "its own state": f"cat {workers / 'alice' / 'state.json'}",
    }
    for what, command in attempts.items():
        result = await backend.exec("alice", ["sh", "-c", command], 10)
        assert result.exit_code != 0, f"alice could read {what}"
        assert "Permission denied" in result.stderr or "No such file" in result.stderr, what
    own = await backend.exec("alice", ["sh", "-c", "echo mine > own.txt && cat own.txt && id -u"], 10)
    assert own.exit_code == 0, own.stderr
    uid, _ = Confinement().ids("alice")
    assert own.stdout.split() == ["mine", str(uid)]


async def test_the_worker_process_runs_under_its_own_ids(confined: tuple[Config, ProcessBackend]) -> None:
    config, backend = confined
    await running(backend, "carol")
    state = (config.data_dir / "workers" / "sec" / "carol" / "state.json")
    process = psutil.Process(json.loads(state.read_text())["pid"])
    uids, gids = process.uids(), process.gids()
    assert uids.real == uids.effective == Confinement().ids("carol")[0] != 0
    assert gids.real == gids.effective == Confinement().ids("carol")[1] != 0
    for path, mode in ((config.data_dir, 0o711), (config.data_dir / "workers" / "sec" / "carol", 0o711),
                       (config.data_dir / "workers" / "sec" / "carol" / "work", 0o700)):
        assert path.stat().st_mode & 0o777 == mode, path


def test_check_config_says_plainly_when_workers_are_not_confined(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = bot_config(tmp_path)
    assert config_warnings(config) == []
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    [warning] = config_warnings(config)
    assert "runs workers as the bot's own user" in warning
    assert "can read the bot's database" in warning
