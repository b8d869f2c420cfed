"""The bot's configuration: pydantic models for ``config.yaml``, with environment overrides.

A bad config must never start the bot, and every error names the field and its line; secrets are
``SecretStr`` so they never print. The sections live in modules of their own (services the bot
talks to, where workers run, rules and limits); this package is the one name the rest imports.
"""

from hiclaw_bot.config._base import NAME_PATTERN, USER_ID_PATTERN, Duration, parse_duration
from hiclaw_bot.config.backend import (
    BackendConfig,
    BackendKind,
    DockerBackendConfig,
    KubernetesBackendConfig,
    OpenClawRuntimeConfig,
    ProcessBackendConfig,
    ResourcesConfig,
    RuntimesConfig,
)
from hiclaw_bot.config.loading import ConfigError, ConfigIssue, apply_env, cross_checks, load_config, parse_config
from hiclaw_bot.config.model import Config
from hiclaw_bot.config.policy import (
    ApiConfig,
    EngineConfig,
    HaConfig,
    LifecycleConfig,
    MailConfig,
    QuotaConfig,
    TeamQuota,
    WorkerEnvConfig,
)
from hiclaw_bot.config.services import (
    BotAccount,
    HigressConfig,
    LocalStorageConfig,
    MatrixConfig,
    NoGateway,
    Registration,
    S3StorageConfig,
)

__all__ = [
    "NAME_PATTERN", "USER_ID_PATTERN", "ApiConfig", "BackendConfig", "BackendKind", "BotAccount", "Config",
    "ConfigError", "ConfigIssue", "DockerBackendConfig", "Duration", "EngineConfig", "HaConfig", "HigressConfig",
    "KubernetesBackendConfig", "LifecycleConfig", "LocalStorageConfig", "MailConfig", "MatrixConfig", "NoGateway",
    "OpenClawRuntimeConfig", "ProcessBackendConfig", "QuotaConfig", "Registration", "ResourcesConfig",
    "RuntimesConfig", "S3StorageConfig", "TeamQuota", "WorkerEnvConfig", "apply_env", "cross_checks",
    "load_config", "parse_config", "parse_duration",
]
