"""The fake API server's Leases keep the apiserver's rules, through the official client: these are
what the elector's safety rests on (a stale write loses, a PUT must say which version it read)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.aio.client.exceptions import ApiException

from tests.fixtures.k8s import KubeTarget
from tests.integration.leadership.conftest import lease_name


def lease(name: str, spec: dict[str, object] | None = None, holder: str = "a") -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, **(spec or {})}}


def reason(error: ApiException) -> str:
    return str(json.loads(error.body or "{}")["reason"])


async def test_create_read_and_a_second_create(coordination: Any, kube: KubeTarget) -> None:
    name = lease_name()
    created = await coordination.create_namespaced_lease(kube.namespace, lease(name))
    assert created.metadata.resource_version
    assert created.spec.holder_identity == "a"
    read = await coordination.read_namespaced_lease(name, kube.namespace)
    assert read.metadata.resource_version == created.metadata.resource_version
    with pytest.raises(ApiException) as again:
        await coordination.create_namespaced_lease(kube.namespace, lease(name, holder="b"))
    assert (again.value.status, reason(again.value)) == (409, "AlreadyExists")
    with pytest.raises(ApiException) as missing:
        await coordination.read_namespaced_lease(lease_name(), kube.namespace)
    assert (missing.value.status, reason(missing.value)) == (404, "NotFound")


async def test_a_put_needs_the_current_resource_version(coordination: Any, kube: KubeTarget) -> None:
    name = lease_name()
    created = await coordination.create_namespaced_lease(kube.namespace, lease(name))
    current = created.metadata.resource_version
    unversioned = lease(name, holder="b")
    with pytest.raises(ApiException) as blind:
        await coordination.replace_namespaced_lease(name, kube.namespace, unversioned)
    assert (blind.value.status, reason(blind.value)) == (409, "Conflict")
    renewed = await coordination.replace_namespaced_lease(
        name, kube.namespace, {**unversioned, "metadata": {"name": name, "resourceVersion": current}})
    assert renewed.spec.holder_identity == "b"
    assert renewed.metadata.resource_version != current
    with pytest.raises(ApiException) as stale:
        await coordination.replace_namespaced_lease(
            name, kube.namespace, {**lease(name, holder="c"), "metadata": {"name": name, "resourceVersion": current}})
    assert (stale.value.status, reason(stale.value)) == (409, "Conflict")


async def test_patch_and_invalid_specs(coordination: Any, kube: KubeTarget) -> None:
    name = lease_name()
    await coordination.create_namespaced_lease(kube.namespace, lease(name))
    patched = await coordination.patch_namespaced_lease(name, kube.namespace, {"spec": {"leaseTransitions": 2}})
    assert (patched.spec.holder_identity, patched.spec.lease_transitions) == ("a", 2)
    for field, value in (("leaseDurationSeconds", 0), ("leaseTransitions", -1)):
        with pytest.raises(ApiException) as invalid:
            await coordination.create_namespaced_lease(kube.namespace, lease(lease_name(), {field: value}))
        assert (invalid.value.status, reason(invalid.value)) == (422, "Invalid")
