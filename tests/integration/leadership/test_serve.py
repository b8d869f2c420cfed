"""``serve()`` with ``ha.enabled``: a standby opens nothing, answers the kubelet's probes, and a
leader that loses the Lease ends the process with its own exit status."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from hiclaw_bot.app import serve
from hiclaw_bot.cli import main
from hiclaw_bot.config import ConfigError, HaConfig, parse_config
from hiclaw_bot.devstack.service import free_port
from hiclaw_bot.leadership import EXIT_LEADERSHIP_LOST, LeadershipLost
from hiclaw_bot.leadership.leading import serve_while_leading
from tests.fixtures.k8s import KubeTarget
from tests.integration.leadership.conftest import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, elector, lease_name


def ha_yaml(kube: KubeTarget, lease: str, identity: str) -> str:
    return f"""
ha:
  enabled: true
  namespace: {kube.namespace}
  lease_name: {lease}
  identity: {identity}
  lease_duration: {LEASE_DURATION}s
  renew_deadline: {RENEW_DEADLINE}s
  retry_period: {RETRY_PERIOD * 1000:.0f}ms
  kubeconfig: {kube.kubeconfig}
"""


async def get(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status


async def until_healthy(port: int, *, attempts: int) -> None:
    """Until /healthz answers 200 (the standby's probe server takes a moment to listen)."""
    for _ in range(attempts):
        try:
            assert await get(f"http://127.0.0.1:{port}/healthz") == 200
            return
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"/healthz on port {port} never answered")


async def test_a_standby_opens_nothing_and_answers_probes(coordination: Any, kube: KubeTarget,
                                                          tmp_path: Path) -> None:
    lease, port = lease_name(), free_port()
    config = parse_config(f"""
data_dir: {tmp_path / "data"}
matrix:
  homeserver: http://127.0.0.1:9
  server_name: localhost
  bot: {{password: unused}}
  admins: ["@admin:localhost"]
  registration: {{token: unused}}
storage: {{kind: local, directory: {tmp_path / "objects"}}}
api: {{listen: "127.0.0.1:{port}"}}
{ha_yaml(kube, lease, "standby")}""")
    holder = elector(coordination, kube.namespace, lease, "leader")
    await holder.acquire()
    keeper = asyncio.ensure_future(holder.hold())
    bot = asyncio.ensure_future(serve(config))
    try:
        await until_healthy(port, attempts=100)
        assert await get(f"http://127.0.0.1:{port}/readyz") == 503
        await asyncio.sleep(LEASE_DURATION * 1.5)  # past a lease duration: the holder renews, nothing moves
        assert not bot.done()
        assert not config.database_path.exists()
        assert not config.data_dir.exists()
    finally:
        bot.cancel()
        keeper.cancel()
        await asyncio.gather(bot, keeper, return_exceptions=True)
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(f"http://127.0.0.1:{port}/healthz")  # the port is free for the bot's own API


async def test_losing_the_lease_stops_the_work_and_says_so(coordination: Any, kube: KubeTarget) -> None:
    lease = lease_name()
    ha = HaConfig.model_validate({"enabled": True, "namespace": kube.namespace, "lease_name": lease,
                                  "identity": "a", "lease_duration": LEASE_DURATION,
                                  "renew_deadline": RENEW_DEADLINE, "retry_period": RETRY_PERIOD,
                                  "kubeconfig": kube.kubeconfig})
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.Event().wait()

    leading = asyncio.ensure_future(serve_while_leading(ha, work, standby_listen=None))
    await asyncio.wait_for(started.wait(), 10)
    taken = await coordination.read_namespaced_lease(lease, kube.namespace)
    taken.spec.holder_identity = "b"
    await coordination.replace_namespaced_lease(lease, kube.namespace, taken)
    with pytest.raises(LeadershipLost, match="held by b"):
        await asyncio.wait_for(leading, 10)


def test_hiclaw_bot_run_exits_with_its_own_status_after_losing_the_lease(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The last link, in isolation: ``serve`` raising ``LeadershipLost`` becomes exit status 3."""
    async def lost(config: object) -> None:
        raise LeadershipLost("lease hiclaw-bot is now held by hiclaw-bot-1")

    monkeypatch.setattr("hiclaw_bot.cli.serve", lost)
    (tmp_path / "config.yaml").write_text(BASE)
    result = CliRunner().invoke(main, ["run", "--config", str(tmp_path / "config.yaml")])
    assert result.exit_code == EXIT_LEADERSHIP_LOST != 0


BASE = """
matrix:
  homeserver: http://127.0.0.1:9
  server_name: localhost
  bot: {password: unused}
  admins: ["@admin:localhost"]
  registration: {token: unused}
storage: {kind: local, directory: objects}
"""


def test_ha_is_off_by_default_and_switched_on_from_the_environment() -> None:
    assert not parse_config(BASE).ha.enabled
    config = parse_config(BASE, environ={"HICLAW_HA__ENABLED": "true", "HICLAW_HA__NAMESPACE": "bots",
                                         "HICLAW_HA__LEASE_DURATION": "20s"})
    assert (config.ha.enabled, config.ha.namespace, config.ha.lease_duration) == (True, "bots", 20.0)


@pytest.mark.parametrize("periods", [
    {"lease_duration": "10s", "renew_deadline": "10s"},
    {"renew_deadline": "1s", "retry_period": "2s"},
    {"lease_duration": "500ms", "renew_deadline": "400ms", "retry_period": "100ms"},
])
def test_periods_that_break_the_safety_argument_are_refused(periods: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(BASE, environ={f"HICLAW_HA__{key.upper()}": value for key, value in periods.items()})
    assert refused.value.issues[0].path == "ha"


async def test_hiclaw_bot_run_waits_as_a_standby_and_stops_on_sigterm(coordination: Any, kube: KubeTarget,
                                                                      tmp_path: Path) -> None:
    """The real command in a real process: it waits without touching the data dir, answers the
    probes, and SIGTERM ends it cleanly."""
    lease, port = lease_name(), free_port()
    (tmp_path / "config.yaml").write_text(BASE + f'api: {{listen: "127.0.0.1:{port}"}}\n'
                                          + ha_yaml(kube, lease, "standby"))
    holder = elector(coordination, kube.namespace, lease, "leader")
    await holder.acquire()
    keeper = asyncio.ensure_future(holder.hold())
    command = Path(sys.executable).with_name("hiclaw-bot")
    process = await asyncio.create_subprocess_exec(str(command), "run", "--config", str(tmp_path / "config.yaml"),
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await until_healthy(port, attempts=200)
        assert await get(f"http://127.0.0.1:{port}/readyz") == 503
        assert not (tmp_path / "data").exists()
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, output.decode()[-2000:]
        assert b"Traceback" not in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    assert not (tmp_path / "data").exists()
