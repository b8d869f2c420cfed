"""``python -m hiclaw_bot.agent.openclaw``: an OpenClaw worker on the process backend.

It does what upstream's ``worker-entrypoint.sh`` does in a container, with the worker's own
storage credentials (the ``HICLAW_FS_*`` variables):

1. mirror ``agents/<name>/`` from the object store into ``$HOME`` (``<fs root>/agents/<name>``),
   waiting for ``openclaw.json``, ``SOUL.md`` and ``AGENTS.md`` (6 attempts, as upstream);
2. seed OpenClaw's state with the trusted Matrix plugin install that ``install-openclaw.sh``
   made in its template home (only such an install may open the plugin's keyed store), and
   point ``~/.openclaw/openclaw.json`` at the mirrored file;
3. run ``openclaw gateway run`` and mirror again every ``HICLAW_SYNC_INTERVAL`` seconds. OpenClaw
   watches its config file and applies a change itself (``channels`` and ``plugins`` hot,
   ``agents`` and ``models`` on their next use; ``config-reload-plan`` in its source), so a new
   model or allow list needs no restart. Killing a gateway that is still starting can leave its
   agent database half migrated, which the next start refuses: another reason not to restart;
4. record the hash of the ``openclaw.json`` it handed to OpenClaw in ``state/runtime.json``, so that
   the bot's readiness check knows an update has arrived.

On SIGTERM it stops OpenClaw within ten seconds (SIGKILL after SIGTERM: OpenClaw would drain for
five minutes) and exits 0. Exit 1: the files never came, or OpenClaw exited on its own (with its
code when it is not 0); exit 2: the environment is incomplete. Logs never show a token or a key.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import psutil

from hiclaw_bot.agent.env import AgentEnv, EnvError, read_env
from hiclaw_bot.agent.files import open_store
from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.clients.objectstore import ObjectStore

logger = logging.getLogger("hiclaw_bot.agent.openclaw")

REQUIRED = ("openclaw.json", "SOUL.md", "AGENTS.md")
_ATTEMPTS = 6
_STOP_GRACE = 10.0
"""An idle gateway exits within a second or two of SIGTERM; one still starting needs longer."""
_PR_SET_PDEATHSIG = 1
_SKIPPED = ("state/",)
"""What the worker itself writes to storage, never mirrored back down."""


class FilesMissing(RuntimeError):
    """The worker's files were not in storage after every attempt."""


RUNTIME_RECORD = "state/runtime.json"


async def mirror(store: ObjectStore, worker: str, home: Path, seen: dict[str, str]) -> set[str]:
    """Copy ``agents/<worker>/`` into ``home``; the paths whose content changed in storage.

    ``seen`` holds the hash of what was last copied from each path: a file the runtime itself
    rewrote locally is put back only when storage has something new, so that no rewrite by the
    runtime can make the two fight over it.
    """
    prefix = f"agents/{worker}/"
    changed = set()
    for key in await store.list(prefix):
        relative = key[len(prefix):]
        if not relative or relative.startswith(_SKIPPED) or ".." in relative.split("/"):
            continue
        try:
            data = await store.get(key)
        except NotFoundError:
            continue  # deleted between the listing and the read
        target = home / relative
        digest = hashlib.sha256(data).hexdigest()
        if seen.get(relative) == digest and target.is_file():
            continue
        seen[relative] = digest
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_bytes(data)
        temporary.chmod(0o600)
        os.replace(temporary, target)
        changed.add(relative)
    return changed


async def first_mirror(store: ObjectStore, worker: str, home: Path, seen: dict[str, str], *,
                       delay: float = 5.0) -> None:
    """Mirror until the required files are there, as upstream's entrypoint waits for them."""
    for attempt in range(1, _ATTEMPTS + 1):
        await mirror(store, worker, home, seen)
        missing = [name for name in REQUIRED if not (home / name).is_file()]
        if not missing:
            return
        logger.info("waiting for %s (attempt %d of %d)", ", ".join(missing), attempt, _ATTEMPTS)
        if attempt < _ATTEMPTS:
            await asyncio.sleep(delay)
    raise FilesMissing(f"agents/{worker}/ lacks {', '.join(missing)} after {_ATTEMPTS} attempts")


def seed_state(home: Path, install: Path) -> None:
    """Give a new worker home the template's plugin registry and the config link OpenClaw reads."""
    state = home / ".openclaw" / "state" / "openclaw.sqlite"
    template = install / "template-home" / ".openclaw" / "state" / "openclaw.sqlite"
    state.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not state.exists():
        if not template.is_file():
            raise FileNotFoundError(f"{template} is missing: run scripts/install-openclaw.sh")
        shutil.copyfile(template, state)
        state.chmod(0o600)
    link = home / ".openclaw" / "openclaw.json"
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(home / "openclaw.json")


def _die_with_parent() -> None:
    """In the child before exec: the kernel SIGKILLs it when the launcher dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Gateway:
    """``openclaw gateway run`` as a child in a session of its own.

    OpenClaw signals process groups itself (stale gateways, its own respawn), and in our
    group it sent SIGTERM to the launcher. A session of its own keeps that away from us; the
    parent-death signal keeps a SIGKILLed launcher from leaving it behind.
    """

    def __init__(self, openclaw: Path, home: Path) -> None:
        self._argv = [str(openclaw), "gateway", "run"]
        self._home = home
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        # The install's own bin first (its Node 24 beside openclaw's ``#!/usr/bin/env node``): the
        # worker's PATH is the backend's, since no spec may set PATH (hiclaw_bot.flows.worker_env).
        path = f"{Path(self._argv[0]).parent}:{os.environ.get('PATH', os.defpath)}"
        env = {**os.environ, "PATH": path, "OPENCLAW_CONFIG_PATH": str(self._home / "openclaw.json")}
        self.process = await asyncio.create_subprocess_exec(
            *self._argv, cwd=self._home, env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent)
        logger.info("openclaw gateway started (pid %d)", self.process.pid)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        try:  # OpenClaw starts helpers in sessions of their own (its spawn broker): the tree, not the group
            tree = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), _STOP_GRACE)
        with suppress(ProcessLookupError):  # the gateway, if deaf, and whatever it started
            os.killpg(process.pid, signal.SIGKILL)
        for child in tree:
            with suppress(psutil.NoSuchProcess):
                child.kill()
        await process.wait()


async def _supervise(env: AgentEnv, home: Path, install: Path, interval: float, stop: asyncio.Event) -> int:
    store = await open_store(env.storage)
    gateway = Gateway(install / "bin" / "openclaw", home)
    seen: dict[str, str] = {}

    async def record() -> None:
        entry = {"config_sha256": seen.get("openclaw.json"), "at": datetime.now(UTC).isoformat()}
        await store.put(f"agents/{env.worker}/{RUNTIME_RECORD}", json.dumps(entry, sort_keys=True).encode())

    try:
        await first_mirror(store, env.worker, home, seen)
        seed_state(home, install)
        await gateway.start()
        await record()
        while True:
            assert gateway.process is not None
            exited = asyncio.ensure_future(gateway.process.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({exited, stopping}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            stopping.cancel()
            if stop.is_set():
                logger.info("stopping: signal received")
                return 0
            if gateway.process.returncode is not None:
                code = gateway.process.returncode
                logger.error("openclaw gateway exited with code %d", code)
                return code or 1
            if "openclaw.json" in await mirror(store, env.worker, home, seen):
                logger.info("openclaw.json changed: OpenClaw reloads it")
                await record()
    finally:
        await gateway.stop()
        await store.close()


async def _main(env: AgentEnv, home: Path, install: Path, interval: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await _supervise(env, home, install, interval, stop)
    except (FilesMissing, FileNotFoundError) as exc:
        logger.error("cannot start: %s", exc)
        return 1


def main() -> None:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        env = read_env(os.environ)
        home = Path(os.environ.get("HOME", ""))
        install = Path(os.environ.get("HICLAW_OPENCLAW_HOME", ""))
        interval = float(os.environ.get("HICLAW_SYNC_INTERVAL", "5"))
        if not home.is_absolute() or not install.is_absolute():
            raise EnvError("HOME and HICLAW_OPENCLAW_HOME must be absolute paths")
    except (EnvError, ValueError) as exc:
        logger.error("cannot start: %s", exc)
        sys.exit(2)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    logger.info("openclaw worker %s starting in %s", env.worker, home)
    sys.exit(asyncio.run(_main(env, home, install, interval)))


if __name__ == "__main__":
    main()
