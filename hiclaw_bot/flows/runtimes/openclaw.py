"""The OpenClaw runtime: upstream HiClaw's worker, ``openclaw gateway run`` from npm.

What an upstream worker expects (``shared/reference/runtimes.md``), and how each part is met here:

- **Environment**: ``HICLAW_WORKER_NAME``, ``HICLAW_FS_*`` and the bucket as ``HICLAW_OSS_BUCKET``
  (:func:`~hiclaw_bot.agent.env.worker_env`); in a container ``HOME=<fs root>/agents/<name>``
  (``workspace: "~"`` in ``openclaw.json`` means that directory) and ``OPENCLAW_CONFIG_PATH``
  inside it. A local process keeps the private ``HOME`` the process backend gives each worker,
  which its delete removes with everything OpenClaw wrote there.
- **Files**: the worker mirrors ``agents/<name>/`` from storage with its own credentials, as
  upstream's entrypoint does. In a container the image's entrypoint does it; on the process
  backend our launcher (:mod:`hiclaw_bot.agent.openclaw`) does, then runs OpenClaw from the
  install of ``scripts/install-openclaw.sh``.
- **Port**: each worker's gateway binds ``gateway.port``. Alone in a container that is upstream's
  18800; local processes share the host's ports, so each gets its own, derived from its name.
- **Readiness**: upstream's manager runs ``openclaw gateway health --json`` in the worker and waits
  for ``"ok": true``; so do we, through ``backend.exec``.
- **Stop**: OpenClaw drains for ~5 minutes after SIGTERM; our launcher kills it 10 s after, and
  every backend kills after its own grace period (``backend.process.grace_period``: 15 s suits
  OpenClaw, whose agent database a kill during its start can leave half migrated).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from pathlib import Path

from backends import BackendError
from hiclaw_bot.agent.env import StorageAccess, worker_env
from hiclaw_bot.agent.openclaw import RUNTIME_RECORD
from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.config import Config
from hiclaw_bot.flows import names
from hiclaw_bot.flows.runtimes.base import Probe, ReadyContext
from hiclaw_bot.flows.worker_config import GATEWAY_PORT, OPENCLAW_JSON

__all__ = ["CONFIG_PATH", "HEALTH", "INSTALL_DIR", "NODE_VERSION", "OPENCLAW_VERSION", "PROFILE", "SYNC_INTERVAL",
           "OpenClawProfile", "default_install_dir", "fs_root", "install_dir"]

OPENCLAW_VERSION = "2026.9.6"
NODE_VERSION = "24.22.3"
HEALTH = ("openclaw", "gateway", "health", "--json")
LAUNCHER = "hiclaw-openclaw-worker"
"""The launcher's console script (:func:`hiclaw_bot.agent.openclaw.main`), beside the bot's Python."""
HEALTH_TIMEOUT = 45.0
CONFIG_PATH = "OPENCLAW_CONFIG_PATH"
INSTALL_DIR = "HICLAW_OPENCLAW_HOME"
SYNC_INTERVAL = "HICLAW_SYNC_INTERVAL"
CONTAINER_FS_ROOT = Path("/root/hiclaw-fs")
_LOCAL_PORTS = (20000, 12000)
"""First port and how many: local workers' gateways get ``20000 + crc32(name) % 12000``.

All below Linux's ephemeral range (32768–60999 by default), from which every port bound to 0 (the
dev stack's services, the test services) and every outgoing connection is taken: a gateway port in
that range was now and then already taken, and OpenClaw exited at start. The ~110 ports OpenClaw
derives above its gateway port (browser control and its CDP range) stay below it too."""


def default_install_dir() -> Path:
    """Where ``scripts/install-openclaw.sh`` installs the pinned versions by default."""
    cache = os.environ.get("HICLAW_RUNTIME_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hiclaw-bot")
    return Path(cache) / f"openclaw-{OPENCLAW_VERSION}-node-{NODE_VERSION}"


def install_dir(config: Config) -> Path:
    return (config.runtimes.openclaw.install_dir or default_install_dir()).resolve()


def fs_root(config: Config) -> Path:
    """The directory a container mirrors its files under (``agents/<name>/``), as upstream's."""
    return config.runtimes.openclaw.fs_root or CONTAINER_FS_ROOT


def _in_container(config: Config) -> bool:
    return config.backend.kind != "process"


class OpenClawProfile:
    name = "openclaw"

    def command(self, config: Config) -> list[str] | None:
        if _in_container(config):
            return None  # the image's entrypoint mirrors the files and runs the gateway
        # The console script, not ``python -m hiclaw_bot.agent.openclaw``: tools that find our
        # reference agents by "hiclaw_bot.agent" in a command line must not take it for one.
        script = Path(sys.executable).with_name(LAUNCHER)
        return [str(script)] if script.exists() else [sys.executable, "-m", "hiclaw_bot.agent.openclaw"]

    def image(self, config: Config) -> str:
        return config.runtimes.openclaw.image

    def env(self, config: Config, storage: StorageAccess, worker: str) -> dict[str, str]:
        env = {**worker_env(storage, worker), SYNC_INTERVAL: f"{config.runtimes.openclaw.sync_interval:g}"}
        if _in_container(config):
            home = fs_root(config) / "agents" / worker
            return env | {"HOME": str(home), CONFIG_PATH: str(home / "openclaw.json")}
        install = install_dir(config)
        return env | {INSTALL_DIR: str(install)}  # the launcher puts the install's bin first on PATH

    def gateway_port(self, config: Config, worker: str) -> int:
        if _in_container(config):
            return GATEWAY_PORT
        first, count = _LOCAL_PORTS
        return first + zlib.crc32(worker.encode()) % count

    def ready_timeout(self, config: Config) -> float:
        return config.runtimes.openclaw.ready_timeout

    async def probe(self, config: Config, ctx: ReadyContext) -> Probe:
        stale = await _stale_config(ctx)
        if stale:
            return Probe(False, stale)
        try:
            result = await ctx.backend.exec(ctx.worker, _health_argv(config), HEALTH_TIMEOUT)
        except BackendError as exc:
            return Probe(False, f"health check could not run: {exc}")
        try:
            report = json.loads(result.stdout)
        except ValueError:
            return Probe(False, f"health check exited {result.exit_code} without a JSON report")
        if isinstance(report, dict) and report.get("ok") is True:
            return Probe(True)
        error = report.get("error") if isinstance(report, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        return Probe(False, f"gateway not healthy: {message or 'no detail'}")


async def _stale_config(ctx: ReadyContext) -> str:
    """Why the running gateway does not run the current ``openclaw.json`` yet ("" when it does).

    Our launcher records the hash of the file it handed to OpenClaw (which reloads it itself); an
    image's own entrypoint may record nothing, and then the health check alone decides.
    """
    prefix = names.worker_prefix(ctx.worker)
    try:
        record = json.loads(await ctx.objects.get(prefix + RUNTIME_RECORD))
        current = hashlib.sha256(await ctx.objects.get(prefix + OPENCLAW_JSON)).hexdigest()
    except (NotFoundError, ValueError):
        return ""
    if isinstance(record, dict) and record.get("config_sha256") not in (None, current):
        return "the worker has not received the current openclaw.json yet"
    return ""


PROFILE = OpenClawProfile()


def _health_argv(config: Config) -> list[str]:
    """``openclaw gateway health --json``; on this host with the install's own Node named, since a
    worker's PATH is the backend's (no spec may set PATH) and openclaw asks ``env`` for ``node``."""
    if _in_container(config):
        return list(HEALTH)
    bin_dir = install_dir(config) / "bin"
    return [str(bin_dir / "node"), str(bin_dir / "openclaw"), *HEALTH[1:]]
