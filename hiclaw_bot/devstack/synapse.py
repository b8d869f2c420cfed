"""A real Synapse on 127.0.0.1, for ``hiclaw-bot dev`` and for the test suite.

Why a real homeserver and not a fake: what makes provisioning idempotent is server behaviour —
``M_USER_IN_USE``, ``M_ROOM_IN_USE``, transaction-id deduplication, the registration-token UIA
stages, room-version rules for power levels. A fake would only repeat our own assumptions back.

This module installs nothing: Synapse comes from the ``local`` extra and runs under the current
interpreter. It writes a minimal ``homeserver.yaml`` (SQLite, one client listener on 127.0.0.1,
no federation, no outbound key fetching, rate limits raised, token-gated registration), keeps the
secrets it generated in the data directory so a restart finds the same server (the dev stack keeps
its database; the test fixture uses a fresh directory per session), starts Synapse on a free port,
waits for ``/health`` and fails with the log tail if the process dies first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from hiclaw_bot.clients.matrix_admin import MatrixAdmin, SharedSecretRegistration
from hiclaw_bot.devstack.service import Service, free_port
from hiclaw_bot.types import UserId

logger = logging.getLogger(__name__)

_SECRET_KEYS = ("registration_shared_secret", "macaroon_secret_key", "form_secret")
_GENEROUS = {"per_second": 1000, "burst_count": 1000}
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _GENEROUS,
    "rc_registration": _GENEROUS,
    "rc_registration_token_validity": _GENEROUS,
    "rc_login": {"address": _GENEROUS, "account": _GENEROUS, "failed_attempts": _GENEROUS},
    "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
    "rc_joins_per_room": _GENEROUS,
    "rc_invites": {"per_room": _GENEROUS, "per_user": _GENEROUS, "per_issuer": _GENEROUS},
    "rc_admin_redaction": _GENEROUS,
    "rc_3pid_validation": _GENEROUS,
    "rc_media_create": _GENEROUS,
    "rc_room_creation": _GENEROUS,  # 10 rooms, then one a minute by default: a test suite makes more
    "rc_profile": _GENEROUS,
}
_LOG_TAIL_LINES = 40


class SynapseStartError(RuntimeError):
    """Synapse did not become healthy; the message carries the tail of its logs."""


@dataclass(frozen=True)
class AppService:
    """An application service to register with the server: it owns the users ``@<user_prefix>…``.

    No URL: the server pushes no transactions; the service only registers and logs in its users.
    """

    id: str
    sender_localpart: str
    user_prefix: str
    as_token: str = field(repr=False)
    hs_token: str = field(repr=False)


def _port_taken(port: int) -> bool:
    """Whether something listens on ``port``. SO_REUSEADDR as Twisted uses it: a port left in
    TIME_WAIT by our own previous run (a restart) is free for Synapse, and so it is for this probe."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class LocalSynapse(Service):
    """One Synapse process over one data directory.

    ``port=None`` picks a free port at each start. ``bcrypt_rounds`` trades password-hash strength
    for speed (4 in tests: registration and login get ten times faster).
    """

    def __init__(self, data_dir: Path, *, server_name: str = "localhost", port: int | None = None,
                 bcrypt_rounds: int = 12, appservices: Sequence[AppService] = (),
                 start_timeout: float = 30.0, stop_timeout: float = 15.0) -> None:
        self.data_dir = data_dir.resolve()
        self.server_name = server_name
        self._wanted_port = port
        self._port: int | None = None
        self._bcrypt_rounds = bcrypt_rounds
        self.appservices = tuple(appservices)
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._secrets: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"LocalSynapse(url={self.url if self._port else None!r}, server_name={self.server_name!r})"

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("Synapse is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def shared_secret(self) -> str:
        """The registration shared secret (generated once per data directory)."""
        return self._load_secrets()["registration_shared_secret"]

    @property
    def log_path(self) -> Path:
        return self.data_dir / "homeserver.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Write the configuration, start Synapse and wait until ``/health`` answers."""
        if self.running:
            return
        # A restart keeps the address: configs and running workers have the URL.
        port = self._wanted_port or self._port or free_port()
        if _port_taken(port):
            raise SynapseStartError(f"port {port} on 127.0.0.1 is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config(port)
        stdout_path = self.data_dir / "stdout.log"
        with stdout_path.open("ab") as stdout:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "synapse.app.homeserver", "-c", str(config),
                cwd=self.data_dir, stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=stdout,
                start_new_session=True,
            )
        self._port = port
        started = time.monotonic()
        try:
            await self._wait_healthy()
        except BaseException:
            await self.stop()
            raise
        logger.info("Synapse %s healthy at %s after %.1f s", self.server_name, self.url, time.monotonic() - started)

    async def stop(self) -> None:
        """SIGTERM, then wait for the process to exit (SIGKILL after ``stop_timeout``)."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self._stop_timeout)
        except TimeoutError:
            logger.warning("Synapse did not stop within %.0f s; killing it", self._stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def register_admin(self, localpart: str, password: str) -> tuple[UserId, str]:
        """A server admin registered with the shared secret, or logged in if it exists: ``(user id, token)``."""
        registration = SharedSecretRegistration(self.shared_secret, admin=True)
        async with MatrixAdmin(self.url, server_name=self.server_name, registration=registration) as client:
            user = await client.ensure_user(localpart, password)
        return user.user_id, user.access_token

    async def create_registration_token(self, admin_token: str, *, uses_allowed: int | None = None) -> str:
        """A new registration token (``uses_allowed=None``: unlimited), minted with an admin's token."""
        async with MatrixAdmin(self.url, server_name=self.server_name, access_token=admin_token) as client:
            return await client.create_registration_token(uses_allowed=uses_allowed)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of Synapse's stdout and log file, for error messages."""
        parts = []
        for path in (self.data_dir / "stdout.log", self.log_path):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no log written)"

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        probe = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=probe) as session:
            while True:
                assert self._process is not None
                if self._process.returncode is not None:
                    raise SynapseStartError(f"Synapse exited with code {self._process.returncode} before it was "
                                            f"healthy\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/health") as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise SynapseStartError(f"Synapse was not healthy within {self._start_timeout:.0f} s\n"
                                            f"{self.log_tail()}")
                await asyncio.sleep(0.05)

    def _load_secrets(self) -> dict[str, str]:
        """The server's secrets, generated on first use and kept (mode 0600) in the data directory."""
        if self._secrets:
            return self._secrets
        path = self.data_dir / "secrets.json"
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        missing = [key for key in _SECRET_KEYS if key not in stored]
        if missing:
            stored.update({key: secrets.token_urlsafe(32) for key in missing})
            self.data_dir.mkdir(parents=True, exist_ok=True)
            _write_private(path, json.dumps(stored, indent=2, sort_keys=True))
        self._secrets = stored
        return stored

    def _write_config(self, port: int) -> Path:
        data = self.data_dir
        log_config = data / "log.config.yaml"
        _write_private(log_config, yaml.safe_dump({
            "version": 1,
            "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                                                 "%(request)s - %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                                  "filename": str(self.log_path), "encoding": "utf8"}},
            "root": {"level": "WARNING", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }))
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "signing_key_path": str(data / "signing.key"),
            "media_store_path": str(data / "media_store"),
            "log_config": str(log_config),
            "report_stats": False,
            "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                           "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}],
            "database": {"name": "sqlite3", "args": {"database": str(data / "homeserver.db")}},
            "enable_registration": True,
            "registration_requires_token": True,
            **self._load_secrets(),
            "federation_domain_whitelist": [],
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "enable_metrics": False,
            "bcrypt_rounds": self._bcrypt_rounds,
            **_RATE_LIMITS,
        }
        if self.appservices:
            config["app_service_config_files"] = [str(self._write_appservice(s)) for s in self.appservices]
        path = data / "homeserver.yaml"
        _write_private(path, yaml.safe_dump(config, sort_keys=False))
        return path

    def _write_appservice(self, service: AppService) -> Path:
        regex = f"@{re.escape(service.user_prefix)}.*:{re.escape(self.server_name)}"
        path = self.data_dir / f"appservice-{service.id}.yaml"
        _write_private(path, yaml.safe_dump({
            "id": service.id,
            "url": None,
            "as_token": service.as_token,
            "hs_token": service.hs_token,
            "sender_localpart": service.sender_localpart,
            "rate_limited": False,
            "namespaces": {"users": [{"exclusive": True, "regex": regex}], "aliases": [], "rooms": []},
        }))
        return path


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: it holds secrets."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
