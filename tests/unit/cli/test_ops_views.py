"""``hiclaw-bot workers``, ``ops`` and ``watch`` read the bot's database and write nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hiclaw_bot import cli
from hiclaw_bot.cli import main
from hiclaw_bot.config import load_config
from storage import Store


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as wide as they need: the output is read by the assertions, not by a person."""
    monkeypatch.setattr(cli.console, "width", 200)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "matrix": {"homeserver": "http://127.0.0.1:9", "server_name": "example.org",
                   "bot": {"password": "not-used"}, "admins": ["@root:example.org"],
                   "registration": {"mode": "token", "token": "not-used"}},
        "storage": {"kind": "local", "directory": str(tmp_path / "objects")},
    }))
    return path


def database(config_file: Path) -> Path:
    return load_config(config_file).database_path


async def seed(path: Path) -> int:
    store = await Store.open(path)
    try:
        await store.workers.insert("ann", backend="process", state="Running", desired_state="Running", image="i:1")
        await store.workers.insert("bob", backend="process", state="Sleeping", desired_state="Sleeping")
        op_id = await store.ops.insert(kind="worker.wake", subject="worker:bob", params={"name": "bob"},
                                       actor="@root:example.org", room_id=None, source_event_id=None, state="running")
        await store.steps.ensure(op_id, ["start", "ready", "record"])
        return op_id
    finally:
        await store.close()


async def finish(path: Path, op_id: int) -> None:
    store = await Store.open(path)
    try:
        for name in ("start", "ready", "record"):
            await asyncio.sleep(0.2)
            await store.steps.update(op_id, name, status="done", attempts=1, duration_ms=12.0)
        await store.ops.update(op_id, state="succeeded")
    finally:
        await store.close()


def test_workers_and_ops_are_listed(config_file: Path) -> None:
    op_id = asyncio.run(seed(database(config_file)))
    runner = CliRunner()
    shown = runner.invoke(main, ["workers", "--config", str(config_file)])
    assert shown.exit_code == 0, shown.output
    assert "2 worker(s)" in shown.output
    assert "ann" in shown.output
    assert f"{op_id} worker.wake (running)" in shown.output
    asleep = runner.invoke(main, ["workers", "--config", str(config_file), "--state", "Sleeping"])
    assert "bob" in asleep.output
    assert "ann" not in asleep.output
    ops = runner.invoke(main, ["ops", "--config", str(config_file), "--state", "running"])
    assert ops.exit_code == 0, ops.output
    assert "worker:bob" in ops.output


def test_watch_follows_an_operation_to_its_end(config_file: Path) -> None:
    path = database(config_file)
    op_id = asyncio.run(seed(path))
    worker = threading.Thread(target=lambda: asyncio.run(finish(path, op_id)))
    started = time.monotonic()
    worker.start()
    result = CliRunner().invoke(main, ["watch", "--config", str(config_file), str(op_id)])
    worker.join()
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 0.6, "it waited for the steps"
    assert "3/3" in result.output
    assert "succeeded" in result.output


def test_missing_database_or_operation_is_reported(config_file: Path) -> None:
    runner = CliRunner()
    absent = runner.invoke(main, ["workers", "--config", str(config_file)])
    assert absent.exit_code == 2
    assert "no database" in absent.output
    assert not database(config_file).exists(), "nothing was created"
    asyncio.run(seed(database(config_file)))
    unknown = runner.invoke(main, ["watch", "--config", str(config_file), "999"])
    assert unknown.exit_code == 2
    assert "no operation 999" in unknown.output
