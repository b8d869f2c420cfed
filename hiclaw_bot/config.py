"""The bot's configuration: pydantic models for ``config.yaml``, with environment overrides.

Why pydantic and not a dict: a bad config must never start the bot, and every error must name
the field (``matrix.registration.token``) and, where the YAML tells us, its line. Secrets are
``SecretStr`` so they never print. Any field can be overridden from the environment as
``HICLAW_<SECTION>__<FIELD>`` (``HICLAW_MATRIX__BOT__PASSWORD=…``), which is how containers and CI
inject credentials without writing them to a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
USER_ID_PATTERN = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:[0-9]+)?$")
ENV_PREFIX = "HICLAW_"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"12h"``, ``"1d"`` or ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m or 12h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError("expected a duration such as 30s, 15m or 12h")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotAccount(_Model):
    localpart: str = "hiclaw-bot"
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    device_id: str = "HICLAWBOT"
    display_name: str = "HiClaw"

    @model_validator(mode="after")
    def _has_credentials(self) -> BotAccount:
        if self.password is None and self.access_token is None:
            raise ValueError("give the bot a password or an access_token")
        return self


class Registration(_Model):
    """How the bot creates worker and human accounts on the homeserver."""

    mode: Literal["token", "shared_secret", "appservice"] = "token"
    token: SecretStr | None = None
    shared_secret: SecretStr | None = None
    as_token: SecretStr | None = None

    @model_validator(mode="after")
    def _mode_has_its_secret(self) -> Registration:
        needed = {"token": "token", "shared_secret": "shared_secret", "appservice": "as_token"}[self.mode]
        if getattr(self, needed) is None:
            raise ValueError(f"registration mode {self.mode!r} needs registration.{needed}")
        return self


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class MatrixConfig(_Model):
    homeserver: str
    server_name: str
    bot: BotAccount
    admins: list[str] = Field(min_length=1)
    admin_password: SecretStr | None = None
    """Used by the bot's Synapse admin calls only when the bot itself is not a server admin."""
    registration: Registration
    command_max_age: Duration = 600.0
    """Commands older than this when the bot catches up after downtime are answered, not run."""
    allowed_inviters: list[str] = Field(default_factory=list)
    worker_homeserver: str | None = None
    """The homeserver as workers reach it (from their container or pod); unset: ``homeserver``."""

    @field_validator("homeserver", "worker_homeserver")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)

    @property
    def worker_homeserver_url(self) -> str:
        return self.worker_homeserver or self.homeserver

    @field_validator("admins", "allowed_inviters")
    @classmethod
    def _user_ids(cls, values: list[str]) -> list[str]:
        for value in values:
            if not USER_ID_PATTERN.match(value):
                raise ValueError(f"{value!r} is not a Matrix user id like @alice:example.org")
        return values


class HigressConfig(_Model):
    kind: Literal["higress"] = "higress"
    console_url: str
    username: str = "admin"
    password: SecretStr
    gateway_url: str
    """The AI gateway's public URL, written into worker configs (``<gateway_url>/v1``)."""
    worker_gateway_url: str | None = None
    """The gateway as workers reach it; unset: ``gateway_url``."""
    routes: Literal["all"] | list[str] = "all"
    mcp_servers: list[str] = Field(default_factory=list)

    @field_validator("worker_gateway_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)

    @property
    def worker_url(self) -> str:
        return self.worker_gateway_url or self.gateway_url


class NoGateway(_Model):
    kind: Literal["none"] = "none"


class S3StorageConfig(_Model):
    kind: Literal["s3"] = "s3"
    endpoint: str
    bucket: str
    access_key: SecretStr
    secret_key: SecretStr
    region: str = "us-east-1"
    path_style: bool = True
    iam_endpoint: str | None = None
    """Where workers' own identities are made (AWS IAM calls); by default the S3 endpoint (SeaweedFS)."""
    worker_endpoint: str | None = None
    """The object store as workers reach it; unset: ``endpoint``."""

    @field_validator("worker_endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value)


class LocalStorageConfig(_Model):
    kind: Literal["local"] = "local"
    directory: Path


class DockerBackendConfig(_Model):
    host: str | None = None
    """``unix:///var/run/docker.sock``; unset: ``DOCKER_HOST`` or the default socket."""
    network: str = "none"
    """``none``, ``host``, or a network's name: created (bridge) when missing. Workers need one that
    reaches the homeserver, the gateway and the object store at their worker-facing addresses."""
    allowed_registries: list[str] = Field(default_factory=list)


class KubernetesBackendConfig(_Model):
    namespace: str = "hiclaw"
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    allowed_registries: list[str] = Field(default_factory=list)
    """As Docker's: images from these registries (besides local ones and the default image)."""


class ResourcesConfig(_Model):
    """A worker's CPU and memory limit unless its create or update says otherwise (``--cpus``,
    ``--memory``): one worker must not starve the bot or its neighbours."""

    cpus: str = "1"
    memory: str = "1Gi"
    cpus_request: str = "100m"
    """What the scheduler reserves (Kubernetes requests, Docker's shares); never above the limit."""
    memory_request: str = "256Mi"


class ProcessBackendConfig(_Model):
    command: list[str] | None = None
    """The worker command; unset: the reference agent (``python -m hiclaw_bot.agent``)."""
    grace_period: Duration = 5.0
    preload: bool = True
    """Start the reference agent by forking a pre-imported launcher (about a second faster a
    start); false: a fresh interpreter each time. Unused with a ``command`` of your own."""
    confine: bool = True
    """When the bot runs as root, run each worker under a uid and gid of its own (from ``uid_base``)."""
    uid_base: int = Field(default=2_000_000, ge=1000, le=2**31 - 1_000_002)


BackendKind = Literal["docker", "kubernetes", "process"]


class BackendConfig(_Model):
    kind: BackendKind = "process"
    """The backend of a worker created without ``--backend``."""
    available: list[BackendKind] | None = None
    """Every backend this installation serves (``--backend`` chooses among them); unset: ``[kind]``.
    A worker keeps the backend it was created on: the bot refuses to start while a worker's
    backend is no longer offered here, rather than recreate that worker elsewhere."""
    instance: str = Field(default="hiclaw", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    """Labels every worker object (``hiclaw.io/instance``) so two installations never touch each other's."""
    default_image: str = "hiclaw/worker-agent:latest"
    ready_check: Literal["agent", "running"] = "agent"
    """When a started worker counts as ready: its agent reports a first sync after the start
    (``state/activity.json``, as the reference agent writes it), or merely its runtime is up."""
    resources: ResourcesConfig = ResourcesConfig()
    docker: DockerBackendConfig = DockerBackendConfig()
    kubernetes: KubernetesBackendConfig = KubernetesBackendConfig()
    process: ProcessBackendConfig = ProcessBackendConfig()

    @property
    def kinds(self) -> list[BackendKind]:
        """The backends offered, the default first."""
        return [self.kind, *(k for k in dict.fromkeys(self.available or []) if k != self.kind)]

    @model_validator(mode="after")
    def _default_available(self) -> BackendConfig:
        if self.available is not None and self.kind not in self.available:
            raise ValueError(f"kind {self.kind!r} is not in available {self.available}")
        return self


class OpenClawRuntimeConfig(_Model):
    """Where the OpenClaw runtime is, as ``scripts/install-openclaw.sh`` installs it."""

    install_dir: Path | None = None
    """The directory the install script prints (``bin/openclaw``, ``bin/node``, ``template-home``);
    unset: the script's default cache directory for the pinned versions."""
    fs_root: Path | None = None
    """Where a container mirrors its files: ``HOME`` is ``<fs_root>/agents/<name>``, as upstream's
    (unset: ``/root/hiclaw-fs``). A local process keeps the private home the backend gives it."""
    image: str = "hiclaw/openclaw-worker:2026.9.6"
    """The image for container backends (the process backend ignores it)."""
    ready_timeout: Duration = 180.0
    """OpenClaw's gateway takes ~10-30 s to answer its health check on a loaded machine."""
    sync_interval: Duration = 5.0
    """How often a worker mirrors its files from storage (OpenClaw reloads a changed ``openclaw.json``)."""


class RuntimesConfig(_Model):
    default: Literal["reference", "openclaw"] = "reference"
    """The runtime of a worker created without ``--runtime``."""
    openclaw: OpenClawRuntimeConfig = OpenClawRuntimeConfig()


class TeamQuota(_Model):
    max_workers: int | None = Field(default=None, ge=0)


class QuotaConfig(_Model):
    max_workers: int | None = Field(default=None, ge=0)
    team_max_workers: int | None = Field(default=None, ge=0)
    """Default per-team limit; ``teams.<name>.max_workers`` overrides it."""
    teams: dict[str, TeamQuota] = Field(default_factory=dict)
    allowed_models: list[str] = Field(default_factory=list)
    """Empty: the models the gateway's AI routes serve, asked of the console (any, if they name none)."""
    default_model: str = "qwen-max"

    @model_validator(mode="after")
    def _default_model_allowed(self) -> QuotaConfig:
        if self.allowed_models and self.default_model not in self.allowed_models:
            raise ValueError(f"default_model {self.default_model!r} is not in allowed_models")
        return self


class WorkerEnvConfig(_Model):
    """What ``--env`` may set in a worker (``hiclaw_bot.flows.worker_env`` holds the built-in rule)."""

    deny: list[str] = Field(default_factory=list)
    """More names to refuse, on top of the built-in deny list: exact (``MY_VAR``) or a prefix (``MY_*``)."""
    max_value_chars: int = Field(default=4096, ge=1, le=65536)
    max_vars: int = Field(default=64, ge=1, le=1024)


class LifecycleConfig(_Model):
    idle_timeout: Duration = 12 * 3600.0
    idle_check_interval: Duration = 60.0
    reconcile_interval: Duration = 120.0
    orphan_sweep_interval: Duration = 6 * 3600.0
    ready_timeout: Duration = 120.0
    report_room: str | None = None
    """Where the drift reconciler reports what it did: a room id or alias. Unset: the log and audit only."""
    activity_flush_interval: Duration = 10.0
    """How often seen activity is written to the workers table (one batched write)."""


MIN_API_TOKEN_CHARS = 32
PLACEHOLDERS = frozenset({"change-me", "changeme", "change_me", "secret", "token", "password", "replace-me",
                          "example", "test", "xxx", "todo"})
_PLACEHOLDER_PARTS = ("change-me", "changeme", "replace-me", "your-token", "<token>")


class ApiConfig(_Model):
    enabled: bool = True
    listen: str = "127.0.0.1:8090"
    token: SecretStr | None = None
    token_name: str = Field(default="operator", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    """Who the token stands for: operations it starts are by actor ``api:<token_name>``."""
    protect_metrics: bool = False
    """``/metrics`` is open by default (scraped on an internal port); true: it needs the token too."""

    @field_validator("token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        """The token opens every worker's wake and sleep: no placeholder, nothing guessable by length."""
        if value is None:
            return None
        token = value.get_secret_value()
        if token.strip().casefold() in PLACEHOLDERS or any(p in token.casefold() for p in _PLACEHOLDER_PARTS):
            raise ValueError("is a placeholder; generate one, e.g. `openssl rand -hex 32`")
        if len(token) < MIN_API_TOKEN_CHARS:
            raise ValueError(f"is {len(token)} characters long; use at least {MIN_API_TOKEN_CHARS} "
                             f"(e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8090")
        return value


class MailConfig(_Model):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["none", "starttls", "tls"] = "starttls"
    """A welcome mail carries a password: plaintext (``none``) only when set on purpose."""
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "hiclaw@localhost"


class EngineConfig(_Model):
    max_attempts: int = Field(default=6, ge=1, le=50)
    backoff_initial: Duration = 0.5
    backoff_max: Duration = 30.0
    max_concurrent_ops: int = Field(default=32, ge=1)


class HaConfig(_Model):
    """Leader election on a Kubernetes Lease (``hiclaw_bot.leadership``): one replica acts, others wait."""

    enabled: bool = False
    namespace: str = "hiclaw"
    lease_name: str = Field(default="hiclaw-bot", pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    identity: str | None = None
    """Unset: ``POD_NAME`` (from the downward API), else host name and process id."""
    lease_duration: Duration = 15.0
    renew_deadline: Duration = 10.0
    retry_period: Duration = 2.0
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False

    @model_validator(mode="after")
    def _periods_nest(self) -> HaConfig:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")
        if self.lease_duration < 1:
            raise ValueError("lease_duration is written in whole seconds: at least 1s")
        return self


class Config(_Model):
    data_dir: Path = Path("./data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    matrix: MatrixConfig
    gateway: Annotated[HigressConfig | NoGateway, Field(discriminator="kind")] = NoGateway()
    storage: Annotated[S3StorageConfig | LocalStorageConfig, Field(discriminator="kind")]
    backend: BackendConfig = BackendConfig()
    runtimes: RuntimesConfig = RuntimesConfig()
    quotas: QuotaConfig = QuotaConfig()
    worker_env: WorkerEnvConfig = WorkerEnvConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    api: ApiConfig = ApiConfig()
    mail: MailConfig = MailConfig()
    engine: EngineConfig = EngineConfig()
    ha: HaConfig = HaConfig()

    @property
    def database_path(self) -> Path:
        return self.data_dir / "hiclaw.db"

    def team_limit(self, team: str) -> int | None:
        quota = self.quotas.teams.get(team)
        if quota is not None and quota.max_workers is not None:
            return quota.max_workers
        return self.quotas.team_max_workers


# -- loading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{self.path or '<root>'}: {self.message}{where}"


class ConfigError(Exception):
    """The configuration is invalid; ``issues`` lists every problem, each naming its field."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        super().__init__(f"{source}: {len(issues)} problem(s)\n" + "\n".join(f"  {i}" for i in issues))
        self.source = source
        self.issues = issues


def _lines(node: yaml.Node, prefix: tuple[str, ...], into: dict[tuple[str, ...], int]) -> None:
    into[prefix] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _lines(value, (*prefix, str(key.value)), into)
            into.setdefault((*prefix, str(key.value)), key.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*prefix, str(index)), into)


def _set_path(data: dict[str, Any], path: list[str], value: str) -> None:
    cursor = data
    for key in path[:-1]:
        nxt = cursor.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            cursor[key] = nxt
        cursor = nxt
    cursor[path[-1]] = yaml.safe_load(value) if value.strip().startswith(("[", "{")) else value


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Overlay ``HICLAW_A__B=value`` onto ``data['a']['b']``; return the dotted paths changed."""
    changed: list[str] = []
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX):].split("__")]
        if path[0] not in Config.model_fields:
            continue
        _set_path(data, path, value)
        changed.append(".".join(path))
    return changed


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, overlay the environment, validate; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read the file: {exc.strerror}")]) from None
    return parse_config(text, source=source, environ=os.environ if environ is None else environ,
                        base_dir=path.parent)


def parse_config(text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None,
                 base_dir: Path | None = None) -> Config:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {problem}", line)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "the top level must be a mapping of sections", 1)])
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _lines(node, (), lines)
    apply_env(data, environ or {})
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        issues = []
        for error in exc.errors(include_url=False):
            loc = tuple(str(p) for p in error["loc"] if not _is_union_tag(p))
            line = _nearest_line(lines, loc)
            issues.append(ConfigIssue(".".join(loc), error["msg"].removeprefix("Value error, "), line))
        raise ConfigError(source, issues) from None
    issues = [ConfigIssue(path, message, _nearest_line(lines, tuple(path.split("."))))
              for path, message in cross_checks(config)]
    if issues:
        raise ConfigError(source, issues)
    if base_dir is not None and not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (base_dir / config.data_dir).resolve()})
    return config


def cross_checks(config: Config) -> list[tuple[str, str]]:
    """Settings that are each valid but cannot work together, as ``(field, why)``."""
    problems = []
    kind = config.backend.kind
    if kind in ("docker", "kubernetes") and config.storage.kind == "local":
        problems.append(("storage.kind", f"a {kind} worker cannot read a local directory of the bot's: "
                                         "use an S3 object store (storage.kind: s3)"))
    if kind == "docker" and config.backend.ready_check == "agent" and config.backend.docker.network == "none":
        problems.append(("backend.docker.network", "with network none the agent reaches no homeserver and "
                                                   "never becomes ready: name a network (or host), or set "
                                                   "backend.ready_check: running"))
    return problems


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in {"higress", "none", "s3", "local"}


def _nearest_line(lines: Mapping[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
