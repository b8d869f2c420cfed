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

    ``allowed_registries`` are host names (shell patterns allowed, e.g.
    ``higress-registry*.cr.aliyuncs.com``). ``allow_host_network`` is an explicit opt-in for a
    development engine started with ``--bridge=none``, where ``host`` is the only network that
    reaches the chat server on 127.0.0.1.
    """

    allowed_registries: tuple[str, ...] = ()
    allow_host_network: bool = False

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
        registry = image_registry(image)
        if registry is None:
            return
        host = registry.partition(":")[0]
        if host in LOCAL_REGISTRIES:
            return
        if any(fnmatch.fnmatchcase(registry, pattern) or fnmatch.fnmatchcase(host, pattern)
               for pattern in self.allowed_registries):
            return
        raise PolicyViolation("docker", f"registry {registry!r} is not in the allowed registries "
                                        "(local images, localhost, 127.0.0.1 or the configured list)")


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
