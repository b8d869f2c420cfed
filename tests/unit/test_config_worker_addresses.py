"""Worker-facing addresses default to the bot's own, and two setups that cannot work are refused,
naming the field (and its line) as ``check-config`` prints it."""

from __future__ import annotations

import pytest
import yaml

from hiclaw_bot.agent.env import FS_ENDPOINT, worker_env
from hiclaw_bot.config import ConfigError, S3StorageConfig, parse_config
from hiclaw_bot.flows.worker_identity import s3_access

BASE = {
    "matrix": {"homeserver": "http://127.0.0.1:8008", "server_name": "localhost",
               "bot": {"password": "pw"}, "admins": ["@admin:localhost"],
               "registration": {"mode": "token", "token": "t"}},
    "gateway": {"kind": "higress", "console_url": "http://127.0.0.1:8001", "password": "pw",
                "gateway_url": "http://127.0.0.1:8080"},
    "storage": {"kind": "s3", "endpoint": "http://127.0.0.1:8333", "bucket": "b", "access_key": "a",
                "secret_key": "s"},
}


def config_text(**sections: dict[str, object]) -> str:
    data = {**BASE}
    for name, value in sections.items():
        data[name] = value
    return yaml.safe_dump(data, sort_keys=False)


def test_worker_addresses_default_to_the_bots_own() -> None:
    config = parse_config(config_text())
    assert config.matrix.worker_homeserver_url == "http://127.0.0.1:8008"
    assert config.gateway.kind == "higress"
    assert config.gateway.worker_url == "http://127.0.0.1:8080"
    assert config.storage.kind == "s3"
    assert config.storage.worker_endpoint is None


def test_worker_addresses_can_differ() -> None:
    config = parse_config(config_text(
        matrix={**BASE["matrix"], "worker_homeserver": "http://synapse:8008/"},
        gateway={**BASE["gateway"], "worker_gateway_url": "http://gateway:8080"},
        storage={**BASE["storage"], "worker_endpoint": "http://s3:8333"},
    ))
    assert config.matrix.worker_homeserver_url == "http://synapse:8008"
    assert config.gateway.kind == "higress"
    assert config.gateway.worker_url == "http://gateway:8080"
    assert config.storage.kind == "s3"
    assert config.storage.worker_endpoint == "http://s3:8333"


def test_a_worker_address_must_be_a_url() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(matrix={**BASE["matrix"], "worker_homeserver": "synapse:8008"}))
    assert [issue.path for issue in caught.value.issues] == ["matrix.worker_homeserver"]


@pytest.mark.parametrize("kind", ["docker", "kubernetes"])
def test_containers_cannot_use_a_local_storage_directory(kind: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(storage={"kind": "local", "directory": "/srv/objects"},
                                 backend={"kind": kind, "ready_check": "running"}))
    [issue] = caught.value.issues
    assert issue.path == "storage.kind"
    assert issue.line is not None
    assert "s3" in issue.message


def test_the_process_backend_may_use_a_local_directory() -> None:
    config = parse_config(config_text(storage={"kind": "local", "directory": "/srv/objects"}))
    assert config.storage.kind == "local"


def test_an_agent_readiness_check_on_network_none_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(backend={"kind": "docker", "docker": {"network": "none"}}))
    [issue] = caught.value.issues
    assert issue.path == "backend.docker.network"
    assert "ready_check" in issue.message
    ok = parse_config(config_text(backend={"kind": "docker", "docker": {"network": "hiclaw-net"}}))
    assert ok.backend.docker.network == "hiclaw-net"
    running = parse_config(config_text(backend={"kind": "docker", "ready_check": "running"}))
    assert running.backend.docker.network == "none"


def test_workers_are_told_the_worker_facing_object_store() -> None:
    """The environment a worker gets names ``storage.worker_endpoint``, not the bot's endpoint."""
    def env_of(storage: dict[str, object]) -> dict[str, str]:
        config = parse_config(config_text(storage=storage))
        assert isinstance(config.storage, S3StorageConfig)
        return worker_env(s3_access(config.storage, "alice-key", "alice-secret"), "alice")

    assert env_of(BASE["storage"])[FS_ENDPOINT] == "http://127.0.0.1:8333"
    assert env_of({**BASE["storage"], "worker_endpoint": "http://s3:8333"})[FS_ENDPOINT] == "http://s3:8333"
