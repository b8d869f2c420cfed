"""The sections saying where workers run (``backend``) and what they run (``runtimes``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from hiclaw_bot.config._base import Duration, Section


class DockerBackendConfig(Section):
    host: str | None = None
    """``unix:///var/run/docker.sock``; unset: ``DOCKER_HOST`` or the default socket."""
    network: str = "none"
    """``none``, ``host``, or a network's name: created (bridge) when missing. Workers need one that
    reaches the homeserver, the gateway and the object store at their worker-facing addresses."""
    allowed_registries: list[str] = Field(default_factory=list)


class KubernetesBackendConfig(Section):
    namespace: str = "hiclaw"
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    allowed_registries: list[str] = Field(default_factory=list)
    """As Docker's: images from these registries (besides local ones and the default image)."""


class ResourcesConfig(Section):
    """A worker's CPU and memory limit unless its create or update says otherwise (``--cpus``,
    ``--memory``): one worker must not starve the bot or its neighbours."""

    cpus: str = "1"
    memory: str = "1Gi"
    cpus_request: str = "100m"
    """What the scheduler reserves (Kubernetes requests, Docker's shares); never above the limit."""
    memory_request: str = "256Mi"


class ProcessBackendConfig(Section):
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


class BackendConfig(Section):
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


class OpenClawRuntimeConfig(Section):
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


class RuntimesConfig(Section):
    default: Literal["reference", "openclaw"] = "reference"
    """The runtime of a worker created without ``--runtime``."""
    openclaw: OpenClawRuntimeConfig = OpenClawRuntimeConfig()
