"""The container policy of upstream's docker-proxy, applied on our side of the socket.

Upstream runs workers behind a filtering proxy in front of the Docker socket. Its create rules
(worker name prefix, no host paths, no privilege, no host namespaces, no dangerous capabilities,
images only from allowed registries) are what keeps a compromised worker manager from owning the
host. We talk to the engine directly, so we apply the same rules to every container request we
are about to send (including the operator's extra create options) and refuse with the rule's name
before anything reaches the engine. Unlike the proxy, we check every call, not only create: names
are always built from a validated worker name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from backends.base import OBJECT_PREFIX
from backends.errors import PolicyViolation

DANGEROUS_CAPABILITIES = frozenset(
    {"ALL", "SYS_ADMIN", "SYS_PTRACE", "DAC_OVERRIDE", "NET_ADMIN", "SYS_RAWIO", "SYS_MODULE"}
)
LOCAL_REGISTRIES = ("localhost", "127.0.0.1")
DOCKER_HUB = "docker.io"


def normalise_image(image: str) -> str:
    """The full reference an engine would pull: ``busybox`` → ``docker.io/library/busybox``,
    ``attacker/x`` → ``docker.io/attacker/x``; a reference naming its registry is kept as it is.

    A short name is Docker Hub's, not "local": checking the registry of the name as written let
    ``attacker/x`` through any allow list.
    """
    first, sep, _ = image.partition("/")
    if first in ("index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB + image[len(first):]
    if image_registry(image) is not None:
        return image
    return f"{DOCKER_HUB}/{image}" if sep else f"{DOCKER_HUB}/library/{image}"


@dataclass(frozen=True)
class ImagePolicy:
    """Which images a worker may run, on Docker and Kubernetes alike.

    Allowed: images of a local registry (``localhost``, ``127.0.0.1``), any tag of the configured
    default image's repository (the image ``hiclaw-bot image build`` tags by content), and images
    whose registry (or whole normalised name) matches one of
    ``allowed_registries`` (shell patterns: ``higress-registry*.cr.aliyuncs.com``, ``docker.io``,
    ``docker.io/library/*``). Everything is compared after :func:`normalise_image`.
    """

    allowed_registries: tuple[str, ...] = ()
    default_image: str | None = None

    def check(self, backend: str, image: str) -> None:
        full = normalise_image(image)
        registry = full.partition("/")[0]
        host = registry.partition(":")[0]
        if host in LOCAL_REGISTRIES:
            return
        if self.default_image is not None and _repository(full) == _repository(normalise_image(self.default_image)):
            return
        if any(fnmatch.fnmatchcase(registry, pattern) or fnmatch.fnmatchcase(host, pattern)
               or fnmatch.fnmatchcase(full, pattern) for pattern in self.allowed_registries):
            return
        raise PolicyViolation(backend, f"image {full!r} (registry {registry!r}) is not allowed: only local registries,"
                                       " the default image's repository or the configured allowed registries")


def _repository(full: str) -> str:
    """A normalised reference without its digest and tag: ``docker.io/hiclaw/worker-agent``."""
    name = full.partition("@")[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.partition(':')[0]}" if head else last.partition(":")[0]


def image_registry(image: str) -> str | None:
    """The registry host of an image reference, or None for a local / Docker Hub short name.

    Docker's own rule: the first path component names a registry when it contains a dot or a
    colon or is ``localhost``.
    """
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


@dataclass(frozen=True)
class DockerPolicy:
    """Which container requests may reach the engine.

    ``allowed_registries`` and ``default_image`` are :class:`ImagePolicy`'s. ``allow_host_network``
    is an explicit opt-in for a development engine started with ``--bridge=none``, where ``host``
    is the only network that reaches the chat server on 127.0.0.1.
    """

    allowed_registries: tuple[str, ...] = ()
    allow_host_network: bool = False
    default_image: str | None = None

    def check(self, request: Mapping[str, Any]) -> None:
        """Raise :class:`PolicyViolation` naming the first rule ``request`` breaks.

        ``request`` holds the keyword arguments of ``docker``'s ``containers.create``.
        """
        self._check_name(str(request.get("name", "")))
        self._check_image(str(request.get("image", "")))
        if request.get("privileged"):
            raise PolicyViolation("docker", "privileged containers are not allowed")
        network = str(request.get("network_mode") or "")
        if (network == "host" and not self.allow_host_network) or network.startswith("container:"):
            raise PolicyViolation("docker", f"network mode {network!r} shares another network namespace")
        pid_mode = str(request.get("pid_mode") or "")
        if pid_mode == "host" or pid_mode.startswith("container:"):
            raise PolicyViolation("docker", f"PID mode {pid_mode!r} shares another PID namespace")
        dangerous = sorted(_normalise_caps(request.get("cap_add") or ()) & DANGEROUS_CAPABILITIES)
        if dangerous:
            raise PolicyViolation("docker", f"capabilities {', '.join(dangerous)} may not be added")
        _check_volumes(request.get("volumes"))
        _check_mounts(request.get("mounts") or ())

    def _check_name(self, name: str) -> None:
        if not name.startswith(OBJECT_PREFIX) or "/" in name or ".." in name:
            raise PolicyViolation("docker", f"container names must start with {OBJECT_PREFIX!r} "
                                            "and contain no '/' or '..'")

    def _check_image(self, image: str) -> None:
        ImagePolicy(self.allowed_registries, self.default_image).check("docker", image)


def _normalise_caps(caps: Iterable[str]) -> set[str]:
    return {str(cap).upper().removeprefix("CAP_") for cap in caps}


def _check_volumes(volumes: Any) -> None:
    """``volumes`` is a dict ``{source: {...}}`` or a list of ``source:target[:mode]``."""
    if not volumes:
        return
    sources = volumes.keys() if isinstance(volumes, Mapping) else (str(v).split(":", 1)[0] for v in volumes)
    for source in sources:
        if str(source).startswith(("/", ".", "~")):
            raise PolicyViolation("docker", "bind mounts of host paths are not allowed (named volumes are)")


def _check_mounts(mounts: Iterable[Any]) -> None:
    """``mounts`` holds ``docker.types.Mount`` objects, which are dicts."""
    for mount in mounts:
        if not isinstance(mount, Mapping) or mount.get("Type") == "bind":
            raise PolicyViolation("docker", "bind mounts of host paths are not allowed (named volumes are)")
