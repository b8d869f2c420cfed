"""The whole configuration: one :class:`Config` made of the sections, and what it derives from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from hiclaw_bot.config._base import Section
from hiclaw_bot.config.backend import BackendConfig, RuntimesConfig
from hiclaw_bot.config.policy import (
    ApiConfig,
    EngineConfig,
    HaConfig,
    LifecycleConfig,
    MailConfig,
    QuotaConfig,
    WorkerEnvConfig,
)
from hiclaw_bot.config.services import HigressConfig, LocalStorageConfig, MatrixConfig, NoGateway, S3StorageConfig


class Config(Section):
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
