"""The sections of rules and limits: quotas, worker environment, lifecycle, API, mail, engine, HA."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from hiclaw_bot.config._base import Duration, Section


class TeamQuota(Section):
    max_workers: int | None = Field(default=None, ge=0)


class QuotaConfig(Section):
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


class WorkerEnvConfig(Section):
    """What ``--env`` may set in a worker (``hiclaw_bot.flows.worker_env`` holds the built-in rule)."""

    deny: list[str] = Field(default_factory=list)
    """More names to refuse, on top of the built-in deny list: exact (``MY_VAR``) or a prefix (``MY_*``)."""
    max_value_chars: int = Field(default=4096, ge=1, le=65536)
    max_vars: int = Field(default=64, ge=1, le=1024)


class LifecycleConfig(Section):
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


class ApiConfig(Section):
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


class MailConfig(Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["none", "starttls", "tls"] = "starttls"
    """A welcome mail carries a password: plaintext (``none``) only when set on purpose."""
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "hiclaw@localhost"


class EngineConfig(Section):
    max_attempts: int = Field(default=6, ge=1, le=50)
    backoff_initial: Duration = 0.5
    backoff_max: Duration = 30.0
    max_concurrent_ops: int = Field(default=32, ge=1)


class HaConfig(Section):
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
