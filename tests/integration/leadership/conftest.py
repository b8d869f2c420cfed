"""A ``CoordinationV1Api`` on the session's Kubernetes API (the fake, or a real cluster with ``KUBECONFIG``)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hiclaw_bot.leadership.elector import LeaseElector, LeaseSettings, coordination_api
from tests.fixtures.k8s import KubeTarget

# Short periods keep the tests quick; their order is what the safety argument needs.
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 2.0, 1.5, 0.25


@pytest.fixture
async def coordination(kube: KubeTarget) -> AsyncIterator[Any]:
    async with coordination_api(kubeconfig=str(kube.kubeconfig), context=None, in_cluster=False) as api:
        yield api


def lease_name() -> str:
    return f"hiclaw-test-{secrets.token_hex(4)}"


def elector(api: Any, namespace: str, name: str, identity: str) -> LeaseElector:
    return LeaseElector(api, LeaseSettings(namespace, name, identity, LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD))
