"""Runtime profiles: the environment contract each runtime gets, its gateway port, and how its
readiness is judged (with a fake backend and a local object store; the e2e tests run the real ones)."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from backends import Conflict, ExecResult
from hiclaw_bot.agent.env import LocalStorage, S3Storage
from hiclaw_bot.clients.objectstore import LocalObjectStore
from hiclaw_bot.config import Config
from hiclaw_bot.flows.runtimes import PROFILES, ReadyContext, profile, profile_of

S3 = S3Storage(endpoint="http://127.0.0.1:8333", bucket="team-bucket", access_key="ak", secret_key="sk")


def config(backend: str = "process", **runtimes: Any) -> Config:
    return Config.model_validate({
        "data_dir": "/srv/hiclaw",
        "matrix": {"homeserver": "http://127.0.0.1:8008", "server_name": "localhost",
                   "bot": {"localpart": "bot", "password": "pw"}, "admins": ["@admin:localhost"],
                   "registration": {"mode": "token", "token": "t"}},
        "storage": {"kind": "local", "directory": "/srv/objects"},
        "backend": {"kind": backend},
        "runtimes": runtimes,
    })


class FakeBackend:
    """Answers ``exec`` with a canned result, or raises; records what was run."""

    def __init__(self, result: ExecResult | Exception) -> None:
        self.result = result
        self.ran: list[list[str]] = []

    async def exec(self, name: str, argv: Sequence[str], timeout: float) -> ExecResult:  # noqa: ASYNC109
        self.ran.append(list(argv))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_profiles_by_name_and_old_workers_ran_the_reference_agent() -> None:
    assert sorted(PROFILES) == ["openclaw", "reference"]
    assert profile_of({}).name == "reference"
    assert profile_of({"runtime": "openclaw"}).name == "openclaw"
    with pytest.raises(KeyError, match="known: openclaw, reference"):
        profile("copaw")


def test_the_bucket_is_given_as_upstream_spells_it() -> None:
    env = profile("reference").env(config(), S3, "ann")
    assert env["HICLAW_OSS_BUCKET"] == env["HICLAW_FS_BUCKET"] == "team-bucket"
    assert env["HICLAW_WORKER_NAME"] == "ann"


def test_openclaw_in_a_container_gets_upstreams_home() -> None:
    env = profile("openclaw").env(config("docker"), S3, "ann")
    assert env["HOME"] == "/root/hiclaw-fs/agents/ann"
    assert env["OPENCLAW_CONFIG_PATH"] == "/root/hiclaw-fs/agents/ann/openclaw.json"
    assert env["HICLAW_OSS_BUCKET"] == "team-bucket"
    assert profile("openclaw").command(config("docker")) is None
    assert profile("openclaw").gateway_port(config("docker"), "ann") == 18800


def test_openclaw_as_a_local_process_runs_the_launcher_from_the_install() -> None:
    settings = config(openclaw={"install_dir": "/opt/openclaw"})
    runtime = profile("openclaw")
    env = runtime.env(settings, LocalStorage(Path("/srv/objects")), "ann")
    assert "HOME" not in env  # the backend's private home, removed with the worker
    assert env["HICLAW_OPENCLAW_HOME"] == "/opt/openclaw"
    assert "PATH" not in env  # no spec may set PATH: the launcher puts the install's bin first itself
    assert runtime.command(settings) in ([str(Path(sys.executable).with_name("hiclaw-openclaw-worker"))],
                                         [sys.executable, "-m", "hiclaw_bot.agent.openclaw"])
    ports = {runtime.gateway_port(settings, name) for name in ("ann", "bob", "cal")}
    assert len(ports) == 3
    assert all(20000 <= port < 32000 for port in ports)  # below the ephemeral ports, see _LOCAL_PORTS
    assert runtime.gateway_port(settings, "ann") == runtime.gateway_port(settings, "ann")


@pytest.mark.parametrize(("result", "ready", "detail"), [
    (ExecResult(0, json.dumps({"ok": True, "durationMs": 3}), ""), True, ""),
    (ExecResult(1, json.dumps({"ok": False, "error": {"message": "gateway timeout after 10000ms"}}), ""), False,
     "gateway not healthy: gateway timeout after 10000ms"),
    (ExecResult(127, "", "openclaw: not found"), False, "health check exited 127 without a JSON report"),
    (Conflict("process", "worker ann is not running"), False, "health check could not run"),
])
async def test_openclaw_is_ready_when_its_gateway_health_says_ok(tmp_path: Path, result: ExecResult | Exception,
                                                                  ready: bool, detail: str) -> None:
    backend = FakeBackend(result)
    ctx = ReadyContext("ann", backend, LocalObjectStore(tmp_path), None)  # type: ignore[arg-type]
    probe = await profile("openclaw").probe(config(), ctx)
    assert probe.ready is ready
    assert probe.detail.startswith(detail)
    [argv] = backend.ran  # on this host: the install's own Node runs the install's openclaw
    assert argv[0].endswith("/bin/node")
    assert argv[1].endswith("/bin/openclaw")
    assert argv[2:] == ["gateway", "health", "--json"]


async def test_openclaw_is_not_ready_while_it_runs_an_older_config(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    await store.put("agents/ann/openclaw.json", b'{"model": "new"}')
    await store.put("agents/ann/state/runtime.json", json.dumps(
        {"config_sha256": hashlib.sha256(b'{"model": "old"}').hexdigest()}).encode())
    backend = FakeBackend(ExecResult(0, '{"ok": true}', ""))
    ctx = ReadyContext("ann", backend, store, None)  # type: ignore[arg-type]
    probe = await profile("openclaw").probe(config(), ctx)
    assert not probe.ready
    assert "not received the current openclaw.json" in probe.detail
    await store.put("agents/ann/state/runtime.json", json.dumps(
        {"config_sha256": hashlib.sha256(b'{"model": "new"}').hexdigest()}).encode())
    assert (await profile("openclaw").probe(config(), ctx)).ready
