"""End-to-end fixtures: the chat test accounts and helpers, reused, and the real worker image.

``worker_image`` builds ``hiclaw/worker-agent:<hash>`` with ``hiclaw-bot image build``'s library
into the session's private engine, once per session. The build is cached in
``$HICLAW_IMAGE_CACHE`` (default ``~/.cache/hiclaw-bot/worker-image``): an unchanged checkout is a
``docker load`` of the saved image, a changed one reuses the Debian rootfs and rebuilds only the
agent layer. A machine where dockerd runs but the image cannot be built fails, it does not skip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from hiclaw_bot.devstack.worker_image import ImageBuildError, build_worker_image
from tests.fixtures.dockerd import DockerEngine
from tests.integration.chat.conftest import setup

__all__ = ["AgentImage", "setup", "worker_image"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class AgentImage:
    """The built agent image, and a second tag of it (a new image name for ``--image`` updates)."""

    tag: str
    next_tag: str


@pytest.fixture(scope="session")
def worker_image(dockerd: DockerEngine) -> AgentImage:
    try:
        result = build_worker_image(ROOT, base_url=dockerd.base_url)
    except ImageBuildError as exc:
        pytest.fail(f"the worker image cannot be built: {exc}")
    next_tag = f"{result.tag}-next"
    client = docker.DockerClient(base_url=dockerd.base_url)
    try:
        repository, _, version = next_tag.rpartition(":")
        client.images.get(result.tag).tag(repository, version)
    finally:
        client.close()
    return AgentImage(result.tag, next_tag)
