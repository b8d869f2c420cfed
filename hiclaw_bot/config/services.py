"""The sections naming the services the bot talks to: Matrix, the gateway, the object store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from hiclaw_bot.config._base import USER_ID_PATTERN, Duration, Section, http_url


class BotAccount(Section):
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


class Registration(Section):
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



class MatrixConfig(Section):
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
        return http_url(value)

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


class HigressConfig(Section):
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
        return http_url(value)

    @property
    def worker_url(self) -> str:
        return self.worker_gateway_url or self.gateway_url


class NoGateway(Section):
    kind: Literal["none"] = "none"


class S3StorageConfig(Section):
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
        return http_url(value)


class LocalStorageConfig(Section):
    kind: Literal["local"] = "local"
    directory: Path
