"""The fake API server keeps the apiserver's rules, checked through the official client and raw HTTP.

If the fake accepted what a real server refuses (or invented a behaviour), the backend tests
above it would prove nothing; these tests pin the rules down. They always run against the fake.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException

from tests.fakes.k8s_apiserver import TOKEN, FakeKubeApiServer

NS = "fake-test"
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "c", "image": "busybox:1",
                                                   "command": ["sh", "-c", "echo started; sleep 600"]}]}}},
}


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[tuple[FakeKubeApiServer, Any, Any]]:
    server = FakeKubeApiServer(namespaces=(NS,), ready_delay=0.05)
    await server.start()
    kubeconfig = server.kubeconfig(tmp_path / "kubeconfig", NS)
    api = await config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield server, client.AppsV1Api(api), client.CoreV1Api(api)
    finally:
        await api.close()
        await server.stop()
    assert not server.cluster.failures


def body(error: ApiException) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(error.body or "{}")
    return parsed


async def raw(server: FakeKubeApiServer, method: str, path: str, payload: Any = None,
              token: str = TOKEN) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.request(
            method, server.url + path, json=payload, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json()


async def test_create_conflict_and_not_found(fake: tuple[FakeKubeApiServer, Any, Any]) -> None:
    server, apps, _ = fake
    created = await apps.create_namespaced_deployment(NS, DEPLOYMENT)
    assert (created.metadata.generation, created.metadata.uid is not None) == (1, True)
    with pytest.raises(ApiException) as duplicate:
        await apps.create_namespaced_deployment(NS, DEPLOYMENT)
    assert (duplicate.value.status, body(duplicate.value)["reason"]) == (409, "AlreadyExists")
    with pytest.raises(ApiException) as missing:
        await apps.read_namespaced_deployment("nope", NS)
    assert body(missing.value) | {"message": ""} == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "",
        "reason": "NotFound", "code": 404, "details": {"name": "nope", "group": "apps", "kind": "deployments"}}
    status, answer = await raw(server, "POST", "/apis/apps/v1/namespaces/elsewhere/deployments", DEPLOYMENT)
    assert (status, answer["message"]) == (404, 'namespaces "elsewhere" not found')


async def test_stale_resource_version_is_a_conflict(fake: tuple[FakeKubeApiServer, Any, Any]) -> None:
    """A Secret: no controller writes to it behind the test's back."""
    _, _, core = fake
    first = await core.create_namespaced_secret(NS, {"metadata": {"name": "s"}, "stringData": {"k": "v1"}})
    assert first.data == {"k": "djE="}  # stringData is folded into data
    assert first.string_data is None
    first.data = {"k": "djI="}
    second = await core.replace_namespaced_secret("s", NS, first)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    with pytest.raises(ApiException) as stale:
        await core.replace_namespaced_secret("s", NS, first)  # still carries the old resourceVersion
    assert (stale.value.status, body(stale.value)["reason"]) == (409, "Conflict")


async def test_generation_follows_spec_changes_only(fake: tuple[FakeKubeApiServer, Any, Any]) -> None:
    _, apps, _ = fake
    await apps.create_namespaced_deployment(NS, DEPLOYMENT)
    labelled = await apps.patch_namespaced_deployment("web", NS, {"metadata": {"labels": {"extra": "yes"}}})
    assert labelled.metadata.generation == 1
    scaled = await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 2}})
    assert scaled.spec.replicas == 2
    assert (await apps.read_namespaced_deployment("web", NS)).metadata.generation == 2


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["metadata"].update(name="Bad_Name"), "metadata.name"),
    (lambda d: d["spec"]["template"]["metadata"].update(labels={"app": "other"}), "spec.template.metadata.labels"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image=""), "image"),
    (lambda d: d["spec"]["template"]["spec"]["containers"].append({"name": "c", "image": "x"}), "containers[1].name"),
    (lambda d: d["spec"].update(replicaz=1), "spec"),
    (lambda d: d["spec"].update(replicas="one"), "spec.replicas"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(resources={"limits": {"cpu": "lots"}}),
     "resources.limits[cpu]"),
    (lambda d: d["metadata"].update(labels={"bad key": "x"}), "metadata.labels"),
])
async def test_invalid_objects_are_refused_with_causes(fake: tuple[FakeKubeApiServer, Any, Any], change: Any,
                                                        field: str) -> None:
    server, _, _ = fake
    deployment = copy.deepcopy(DEPLOYMENT)
    change(deployment)
    status, answer = await raw(server, "POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment)
    assert (status, answer["reason"]) == (422, "Invalid")
    assert field in answer["details"]["causes"][0]["field"]
    assert server.store.list("Deployment", NS) == []


async def test_selector_is_immutable_and_unknown_patch_types_refused(fake: tuple[FakeKubeApiServer, Any, Any]) -> None:
    _, apps, _ = fake
    await apps.create_namespaced_deployment(NS, DEPLOYMENT)
    with pytest.raises(ApiException) as immutable:
        await apps.patch_namespaced_deployment("web", NS, [
            {"op": "replace", "path": "/spec/selector/matchLabels", "value": {"app": "web", "x": "y"}}])
    assert body(immutable.value)["details"]["causes"][0]["field"] == "spec.selector"
    with pytest.raises(ApiException) as directive:
        await apps.patch_namespaced_deployment("web", NS, {"spec": {"$patch": "replace"}})
    assert directive.value.status == 422


async def test_unauthenticated_and_unknown_endpoints(fake: tuple[FakeKubeApiServer, Any, Any]) -> None:
    server, _, _ = fake
    assert (await raw(server, "GET", f"/api/v1/namespaces/{NS}/pods", token="wrong"))[0] == 401
    status, answer = await raw(server, "GET", f"/api/v1/namespaces/{NS}/configmaps")
    assert (status, answer["reason"]) == (404, "NotFound")


async def test_pods_logs_scale_and_bad_images(fake: tuple[FakeKubeApiServer, Any, Any]) -> None:
    _, apps, core = fake
    await apps.create_namespaced_deployment(NS, DEPLOYMENT)
    pod = await wait_for_pod(core, lambda p: p.status.container_statuses
                             and p.status.container_statuses[0].ready)
    assert pod.metadata.name.startswith("web-")
    assert await core.read_namespaced_pod_log(pod.metadata.name, NS, container="c") == "started\n"
    deployment = await apps.read_namespaced_deployment("web", NS)
    assert (deployment.status.available_replicas, deployment.status.observed_generation) == (1, 1)
    scale = await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 0}})
    assert scale.spec.replicas == 0
    await wait_for(lambda: core.list_namespaced_pod(NS), lambda pods: not pods.items)
    await apps.patch_namespaced_deployment("web", NS, [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.invalid/x:1"},
        {"op": "replace", "path": "/spec/replicas", "value": 1}])
    pod = await wait_for_pod(core, lambda p: p.status.container_statuses
                             and p.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff")
    assert pod.status.phase == "Pending"
    with pytest.raises(ApiException) as waiting:
        await core.read_namespaced_pod_log(pod.metadata.name, NS)
    assert waiting.value.status == 400


async def wait_for(read: Any, ok: Any) -> Any:
    for _ in range(200):
        value = await read()
        if ok(value):
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


async def wait_for_pod(core: Any, ok: Any) -> Any:
    pods = await wait_for(lambda: core.list_namespaced_pod(NS, label_selector="app=web"),
                          lambda found: any(ok(p) for p in found.items))
    return next(p for p in pods.items if ok(p))


async def test_exec_negotiates_v5_when_offered(fake: tuple[FakeKubeApiServer, Any, Any]) -> None:
    """The official sync client offers v5 first; the fake must speak it as a real kubelet does."""
    server, apps, core = fake
    await apps.create_namespaced_deployment(NS, DEPLOYMENT)
    pod = await wait_for_pod(core, lambda p: p.status.container_statuses and p.status.container_statuses[0].ready)
    url = (f"{server.url}/api/v1/namespaces/{NS}/pods/{pod.metadata.name}/exec"
           "?command=sh&command=-c&command=echo%20v5%3B%20exit%202&stdout=true&stderr=true")
    frames: list[bytes] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
            url, protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"),
            headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert ws.protocol == "v5.channel.k8s.io"
        frames = [message.data async for message in ws if message.type == aiohttp.WSMsgType.BINARY]
    assert frames[0] == b"\x01v5\n"
    status = json.loads(frames[-1][1:])
    assert (frames[-1][0], status["reason"], status["details"]["causes"][0]["message"]) == (3, "NonZeroExitCode", "2")
