"""The Docker backend creates the workers' named network when it is missing, and only then.

A fake engine stands in here: creating a real bridge on the shared test machine would add a host
link and a subnet that outlive the test engine. The engine's own networks are never created, and
a lost race (another replica created it first) counts as success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import docker.errors
import pytest

from backends.docker_engine import ensure_network
from backends.errors import BackendError


@dataclass
class Network:
    name: str


@dataclass
class Networks:
    names: list[str] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    conflict_from: str | None = None
    """Simulate another replica: the create fails with 409 after this name appears."""

    def list(self, names: list[str]) -> list[Network]:
        wanted = names[0]
        return [Network(n) for n in self.names if wanted in n]  # the engine's filter matches substrings

    def create(self, name: str, **options: Any) -> Network:
        if self.conflict_from is not None:
            self.names.append(self.conflict_from)
            raise docker.errors.APIError("conflict", response=None, explanation="network exists")
        self.names.append(name)
        self.created.append({"name": name, **options})
        return Network(name)


@dataclass
class Engine:
    networks: Networks


@pytest.mark.parametrize("mode", ["none", "host", "bridge", "default", "container:abc"])
def test_the_engines_own_networks_are_never_created(mode: str) -> None:
    engine = Engine(Networks())
    ensure_network(engine, mode, "hiclaw")  # type: ignore[arg-type]
    assert engine.networks.created == []


def test_a_missing_network_is_created_once_and_labelled() -> None:
    engine = Engine(Networks(names=["hiclaw-net-old"]))  # a name that merely contains ours
    ensure_network(engine, "hiclaw-net", "team-a")  # type: ignore[arg-type]
    ensure_network(engine, "hiclaw-net", "team-a")  # type: ignore[arg-type]
    assert engine.networks.created == [{"name": "hiclaw-net", "driver": "bridge", "check_duplicate": True,
                                        "labels": {"hiclaw.io/instance": "team-a"}}]


def test_losing_the_race_to_create_it_is_fine() -> None:
    engine = Engine(Networks(conflict_from="hiclaw-net"))
    ensure_network(engine, "hiclaw-net", "hiclaw")  # type: ignore[arg-type]


def test_a_failed_create_says_which_network() -> None:
    engine = Engine(Networks(conflict_from="something-else"))
    with pytest.raises(BackendError, match="cannot create network hiclaw-net"):
        ensure_network(engine, "hiclaw-net", "hiclaw")  # type: ignore[arg-type]
