"""The local stack of ``hiclaw-bot dev``: every service the bot needs, on 127.0.0.1, under one directory.

A newcomer should get from a clone to "a worker answered me" with one command and no Matrix
client, and what they try must be the real thing: a real Synapse, a real S3 server when one is
installed, the Higress console simulator that validates every call against the console's OpenAPI
document, and the same backends production uses. :class:`LocalStack` starts them, creates the
accounts, and writes a ``config.yaml`` that :func:`hiclaw_bot.config.load_config` accepts::

    async with LocalStack(Path(".dev")) as stack:
        print(stack.describe())
        await run_bot(stack.config)

A second start over the same directory finds the same world: the Synapse database (and its
port, because worker configs name it), the same admin password, bot password and object-store
key, the registration token while Synapse still accepts it, and the gateway's consumers and allow
lists, saved when the stack stops. Generated secrets live in ``credentials.json`` and
``config.yaml``, both mode 0600, and never in a repr or a log line.

Layout of the data directory::

    config.yaml        the bot's configuration (0600)
    credentials.json   generated secrets (0600)
    stack.json         ports kept across restarts
    synapse/           the homeserver (LocalSynapse)
    s3/ or objects/    SeaweedFS data, or the object store as a plain directory
    higress.json       the gateway simulator's state, saved at stop (0600: consumer keys)
    bot/               the bot's own data directory (its database, process-backend workers)
"""

from __future__ import annotations

import copy
import json
import logging
import os
import secrets
import socket
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

from hiclaw_bot.clients.matrix_admin import MatrixAdmin, SharedSecretRegistration
from hiclaw_bot.config import Config, load_config
from hiclaw_bot.devstack.higress_sim import DEFAULT_AI_ROUTES, DEFAULT_PROVIDERS, HigressConsoleSimulator
from hiclaw_bot.devstack.seaweed import SeaweedServer, weed_binary
from hiclaw_bot.devstack.service import Service, free_port
from hiclaw_bot.devstack.synapse import LocalSynapse
from hiclaw_bot.types import UserId

__all__ = ["AI_ROUTE", "MCP_SERVERS", "AdminLogin", "LocalStack", "StackError", "docker_host", "read_admin_login"]

logger = logging.getLogger(__name__)

SERVER_NAME = "localhost"
ADMIN_LOCALPART = "admin"
BOT_LOCALPART = "hiclaw-bot"
BUCKET = "hiclaw-storage"
S3_ACCESS_KEY = "hiclaw"
CONSOLE_USER = "admin"
AI_ROUTE = "default-ai-route"
AI_ROUTE_MODELS = ("qwen-max", "qwen-plus", "qwen-turbo")
"""The models the seed route serves (its ``modelPredicates``): what ``!worker create --model`` may name."""
MCP_SERVERS: tuple[dict[str, Any], ...] = (
    {"name": "github", "type": "OPEN_API", "domains": [], "description": "GitHub tools (simulated)",
     "consumerAuthInfo": {"type": "key-auth", "enable": True, "allowedConsumers": []}},
    {"name": "web-search", "type": "OPEN_API", "domains": [], "description": "Web search (simulated)",
     "consumerAuthInfo": {"type": "key-auth", "enable": True, "allowedConsumers": []}},
)
"""The MCP servers the gateway simulator starts with, allow lists empty."""
WORKER_IMAGE = "hiclaw/worker-agent:latest"
_DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"
_T = TypeVar("_T")
_SECRETS = ("admin_password", "bot_password", "s3_secret_key", "console_password", "api_token")


class StackError(RuntimeError):
    """The local stack cannot start as asked (the message says why, never with a secret)."""


@dataclass(frozen=True)
class AdminLogin:
    """How to act as the stack's admin from another process (``hiclaw-bot say``)."""

    homeserver: str
    user_id: UserId
    password: str = field(repr=False)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise StackError(f"{path.name} is not a JSON object; remove it to start afresh")
    return data


def read_admin_login(data_dir: Path) -> AdminLogin:
    """The admin's login of a stack that ``hiclaw-bot dev`` runs (or ran) over ``data_dir``."""
    credentials = _read_json(data_dir / "credentials.json")
    if "admin_password" not in credentials or not (data_dir / "config.yaml").exists():
        raise StackError(f"no local stack in {data_dir}: start one with 'hiclaw-bot dev'")
    config = load_config(data_dir / "config.yaml")
    return AdminLogin(config.matrix.homeserver, UserId(f"@{ADMIN_LOCALPART}:{SERVER_NAME}"),
                      str(credentials["admin_password"]))


async def docker_host(environ: Mapping[str, str] | None = None) -> str | None:
    """The Docker daemon that answers ``/_ping``: ``$DOCKER_HOST``, else the default socket; None if neither."""
    environ = os.environ if environ is None else environ
    candidates = [host for host in (environ.get("DOCKER_HOST"), _DEFAULT_DOCKER_SOCKET) if host]
    for host in dict.fromkeys(candidates):
        if await _pings(host):
            return host
    return None


async def _pings(host: str) -> bool:
    connector: aiohttp.BaseConnector | None = None
    if host.startswith("unix://"):
        connector, url = aiohttp.UnixConnector(path=host.removeprefix("unix://")), "http://docker/_ping"
    elif host.startswith("tcp://"):
        url = f"http://{host.removeprefix('tcp://')}/_ping"
    else:
        return False
    timeout = aiohttp.ClientTimeout(total=1.0)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http, http.get(url) as response:
            return response.status == 200 and (await response.text()).strip() == "OK"
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def _token_valid(synapse: LocalSynapse, token: str) -> bool:
    """Whether Synapse still accepts a registration token (the public validity check, no admin needed)."""
    url = f"{synapse.url}/_matrix/client/v1/register/m.login.registration_token/validity"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
            http.get(url, params={"token": token}) as response:
        return response.status == 200 and (await response.json()).get("valid") is True


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalStack(Service):
    """Synapse, object store and gateway simulator over ``data_dir``; ``async with LocalStack(dir) as stack``.

    ``bcrypt_rounds`` goes to Synapse (4 in tests). ``use_seaweed``: True requires SeaweedFS, False
    uses a plain directory, None (the default) uses SeaweedFS when its ``weed`` binary is installed.
    """

    def __init__(self, data_dir: Path, *, bcrypt_rounds: int = 12, use_seaweed: bool | None = None,
                 worker_image: str | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.worker_image = worker_image
        """Run workers as containers of this image (``hiclaw-bot dev --backend docker``); None: processes."""
        self._bcrypt_rounds = bcrypt_rounds
        self._use_seaweed = use_seaweed
        self.admin_user_id = UserId(f"@{ADMIN_LOCALPART}:{SERVER_NAME}")
        self.bot_user_id = UserId(f"@{BOT_LOCALPART}:{SERVER_NAME}")
        self._credentials: dict[str, str] = {}
        self._synapse: LocalSynapse | None = None
        self._seaweed: SeaweedServer | None = None
        self._gateway: HigressConsoleSimulator | None = None
        self._config: Config | None = None
        self.docker: str | None = None
        """The Docker daemon the bot uses, or None for the process backend."""
        self._stack: AsyncExitStack | None = None

    def __repr__(self) -> str:
        return f"LocalStack(data_dir={str(self.data_dir)!r}, running={self._stack is not None})"

    # ---- what callers use

    @property
    def config_path(self) -> Path:
        return self.data_dir / "config.yaml"

    @property
    def credentials_path(self) -> Path:
        return self.data_dir / "credentials.json"

    @property
    def config(self) -> Config:
        return self._require(self._config, "config")

    @property
    def synapse(self) -> LocalSynapse:
        return self._require(self._synapse, "synapse")

    @property
    def gateway(self) -> HigressConsoleSimulator:
        return self._require(self._gateway, "gateway")

    @property
    def seaweed(self) -> SeaweedServer | None:
        """The S3 server, or None when the object store is a plain directory."""
        return self._seaweed

    def admin_password(self) -> str:
        """The admin's password (generated once per data directory)."""
        return self._require(self._credentials.get("admin_password"), "admin password")

    def _require(self, value: _T | None, what: str) -> _T:
        if value is None or self._stack is None:
            raise StackError(f"the local stack is not started (no {what} yet)")
        return value

    def describe(self, *, reveal_password: bool = False) -> str:
        """What to tell a newcomer: where everything is, how to log in, and what to try first."""
        config = self.config
        password = self.admin_password() if reveal_password else f"in {self.credentials_path} (admin_password)"
        if self._seaweed is not None:
            store = f"SeaweedFS S3 at {self._seaweed.endpoint_url}, bucket {BUCKET}"
        else:
            store = f"directory {self.data_dir / 'objects'}"
        backend = f"Docker at {self.docker} (image {self.worker_image})" if self.docker else "local processes"
        lines = [
            f"hiclaw-bot dev stack in {self.data_dir}",
            f"  Matrix homeserver  {config.matrix.homeserver}  (server name {SERVER_NAME})",
            f"  Admin login        {self.admin_user_id}, password {password}",
            f"  Bot                {self.bot_user_id} (a server admin)",
            f"  Object store       {store}",
            f"  Gateway console    {self.gateway.url}  (Higress console simulator: AI route {AI_ROUTE}, "
            f"MCP servers {', '.join(s['name'] for s in MCP_SERVERS)})",
            f"  Model gateway      {self.gateway.gateway_url}/v1  (key-auth by consumer, echo model)",
            f"  Workers run as     {backend}",
            f"  Configuration      {self.config_path}",
        ]
        lines.append("try: hiclaw-bot say '!worker create alice'")
        return "\n".join(lines)

    # ---- lifecycle

    async def start(self) -> None:
        """Start every service, make the accounts and the token, write ``config.yaml``."""
        if self._stack is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._credentials = self._load_credentials()
        ports = _read_json(self.data_dir / "stack.json")
        async with AsyncExitStack() as stack:
            synapse_port = self._reuse_port(ports, "synapse_port")
            synapse = LocalSynapse(self.data_dir / "synapse", port=synapse_port, bcrypt_rounds=self._bcrypt_rounds)
            await stack.enter_async_context(synapse)
            bot_token = await self._ensure_accounts(synapse)
            registration_token = await self._ensure_registration_token(synapse, bot_token)
            seaweed = await self._start_object_store(stack)
            gateway = self._new_gateway()
            await stack.enter_async_context(gateway)
            stack.push_async_callback(self._save_gateway, gateway)
            if self.worker_image is not None:
                self.docker = await docker_host()
                if self.docker is None:
                    raise StackError("no Docker engine answers at $DOCKER_HOST or the default socket")
                if seaweed is None:
                    raise StackError("containers cannot read a local object-store directory: install "
                                     "SeaweedFS (pip install 'hiclaw-bot[local]') for --backend docker")
            api_port = self._reuse_port(ports, "api_port")
            _write_private(self.data_dir / "stack.json",
                           json.dumps({"synapse_port": synapse_port, "api_port": api_port}, indent=2) + "\n")
            document = self._config_document(synapse, seaweed, gateway, registration_token, api_port)
            _write_private(self.config_path, yaml.safe_dump(document, sort_keys=False))
            self._config = load_config(self.config_path)
            self._synapse, self._seaweed, self._gateway = synapse, seaweed, gateway
            self._stack = stack.pop_all()
        logger.info("local stack ready in %s", self.data_dir)

    async def stop(self) -> None:
        """Stop everything that runs, in reverse order (the gateway's state is saved first)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # ---- the pieces

    def _load_credentials(self) -> dict[str, str]:
        stored = {key: str(value) for key, value in _read_json(self.credentials_path).items()}
        missing = [key for key in _SECRETS if key not in stored]
        if missing:
            stored.update({key: secrets.token_urlsafe(24) for key in missing})
            self._save_credentials(stored)
        return stored

    def _save_credentials(self, credentials: Mapping[str, str]) -> None:
        _write_private(self.credentials_path, json.dumps(dict(credentials), indent=2, sort_keys=True) + "\n")

    @staticmethod
    def _reuse_port(ports: dict[str, Any], key: str) -> int:
        """The port used last time if it is still free (worker configs name it), else a new one."""
        previous = ports.get(key)
        if isinstance(previous, int) and _port_free(previous):
            return previous
        if previous is not None:
            logger.warning("port %s of the last run is taken; using another (running workers need an update)",
                           previous)
        return free_port()

    async def _ensure_accounts(self, synapse: LocalSynapse) -> str:
        """Create (or log in) the bot, a server admin, and the admin; returns the bot's access token."""
        _, bot_token = await synapse.register_admin(BOT_LOCALPART, self._credentials["bot_password"])
        registration = SharedSecretRegistration(synapse.shared_secret, admin=False)
        async with MatrixAdmin(synapse.url, server_name=SERVER_NAME, registration=registration) as client:
            await client.ensure_user(ADMIN_LOCALPART, self._credentials["admin_password"])
        return bot_token

    async def _ensure_registration_token(self, synapse: LocalSynapse, bot_token: str) -> str:
        """The saved registration token while Synapse still accepts it, else a new one (saved)."""
        saved = self._credentials.get("registration_token")
        if saved and await _token_valid(synapse, saved):
            return saved
        token = await synapse.create_registration_token(bot_token)
        self._credentials["registration_token"] = token
        self._save_credentials(self._credentials)
        return token

    async def _start_object_store(self, stack: AsyncExitStack) -> SeaweedServer | None:
        use = self._use_seaweed
        if use is not False:
            try:
                weed_binary()
            except FileNotFoundError as exc:
                if use:
                    raise StackError(str(exc)) from None
                use = False
        if use is False:
            (self.data_dir / "objects").mkdir(exist_ok=True)
            return None
        server = SeaweedServer(self.data_dir / "s3", access_key=S3_ACCESS_KEY,
                               secret_key=self._credentials["s3_secret_key"])
        await stack.enter_async_context(server)
        return server

    def _new_gateway(self) -> HigressConsoleSimulator:
        """The console simulator, with the state saved by the last run or the seed route and MCP servers."""
        saved = _read_json(self.data_dir / "higress.json")
        gateway = HigressConsoleSimulator(
            username=CONSOLE_USER, password=self._credentials["console_password"], initialized=True,
            providers=saved.get("providers", DEFAULT_PROVIDERS),
            ai_routes=saved.get("ai_routes", [{
                **copy.deepcopy(DEFAULT_AI_ROUTES[0]), "name": AI_ROUTE,
                "modelPredicates": [{"matchType": "EXACT", "matchValue": m, "caseSensitive": True}
                                    for m in AI_ROUTE_MODELS]}]),
            mcp_servers=saved.get("mcp_servers", MCP_SERVERS),
        )
        gateway.consumers.update({c["name"]: c for c in saved.get("consumers", [])})
        return gateway

    async def _save_gateway(self, gateway: HigressConsoleSimulator) -> None:
        """Keep the consumers and allow lists for the next start (as a real console keeps them)."""
        routes = []
        for name, route in gateway.ai_routes.items():
            route = {k: v for k, v in copy.deepcopy(route).items() if k != "version"}
            if isinstance(route.get("authConfig"), dict):
                route["authConfig"]["allowedConsumers"] = list(gateway.route_allow.get(name, []))
            routes.append(route)
        servers = [{**copy.deepcopy(server), "consumerAuthInfo": {
            "type": "key-auth", "enable": gateway.mcp_auth_enabled.get(name, False),
            "allowedConsumers": list(gateway.mcp_allow.get(name, []))}}
            for name, server in gateway.mcp_servers.items()]
        state = {"providers": list(gateway.providers.values()), "consumers": list(gateway.consumers.values()),
                 "ai_routes": routes, "mcp_servers": servers}
        _write_private(self.data_dir / "higress.json", json.dumps(state, indent=2, sort_keys=True) + "\n")

    def _config_document(self, synapse: LocalSynapse, seaweed: SeaweedServer | None,
                         gateway: HigressConsoleSimulator, registration_token: str, api_port: int) -> dict[str, Any]:
        credentials = self._credentials
        if seaweed is not None:
            storage: dict[str, Any] = {"kind": "s3", "endpoint": seaweed.endpoint_url, "bucket": BUCKET,
                                       "access_key": S3_ACCESS_KEY, "secret_key": credentials["s3_secret_key"],
                                       "region": seaweed.region, "path_style": True}
        else:
            storage = {"kind": "local", "directory": str(self.data_dir / "objects")}
        backend: dict[str, Any] = {"kind": "process", "default_image": WORKER_IMAGE}
        if self.docker:
            # Host networking: the workers reach Synapse, S3 and the gateway on 127.0.0.1 like the bot
            # does, so the worker-facing addresses are the bot's own. (A bridge network would need
            # these services on an address the bridge reaches, and matrix.worker_homeserver & co.)
            # Process workers made before Docker came up stay served where they run.
            backend = {"kind": "docker", "available": ["docker", "process"],
                       "default_image": self.worker_image or WORKER_IMAGE,
                       "docker": {"host": self.docker, "network": "host"}}
        return {
            "data_dir": str(self.data_dir / "bot"),
            "log_level": "INFO",
            "matrix": {
                "homeserver": synapse.url,
                "server_name": SERVER_NAME,
                "bot": {"localpart": BOT_LOCALPART, "password": credentials["bot_password"]},
                "admins": [self.admin_user_id],
                "registration": {"mode": "token", "token": registration_token},
            },
            "gateway": {"kind": "higress", "console_url": gateway.url, "username": CONSOLE_USER,
                        "password": credentials["console_password"], "gateway_url": gateway.gateway_url,
                        "routes": "all", "mcp_servers": [s["name"] for s in MCP_SERVERS]},
            "storage": storage,
            "backend": backend,
            "api": {"enabled": True, "listen": f"127.0.0.1:{api_port}", "token": credentials["api_token"]},
        }
