"""``deploy/kubernetes``: every manifest valid for the Kubernetes versions it targets, wired to
each other and to the image, a configuration the bot accepts, and RBAC rules that cover every
request the Kubernetes backend and the leader election make (and grant little else)."""

from __future__ import annotations

import secrets
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from backends.base import WorkerSpec
from backends.kubernetes import KubernetesBackend
from hiclaw_bot.config import ConfigError, parse_config
from hiclaw_bot.leadership.elector import LeaseElector, LeaseSettings, coordination_api
from tests.fakes.k8s_store import validate_object
from tests.fixtures.k8s import KubeTarget
from tests.integration.deploy.manifests import MANIFESTS, ROOT, access_of, allows, granted, manifest_files, objects, one

TARGETS = ("1.30.0", "1.37.0")  # the oldest and newest minor the manifests are written for
NAMESPACE = "hiclaw"
# Granted without being exercised here, each for a stated reason (role.yaml says the same).
UNEXERCISED = {("", "pods/exec", "get")}  # how older clusters authorize the exec websocket


@pytest.mark.parametrize("version", TARGETS)
def test_every_manifest_validates(version: str) -> None:
    checked = []
    for obj in objects():
        kubernetes_validate.validate(obj, version, strict=True)
        checked.append(obj["kind"])
    assert sorted(checked) == ["ConfigMap", "Deployment", "Namespace", "NetworkPolicy", "PersistentVolumeClaim",
                               "Role", "RoleBinding", "Secret", "Service", "ServiceAccount"]


def test_the_deployment_passes_the_apiserver_rules_the_schema_misses() -> None:
    validate_object("Deployment", one("Deployment"))  # selector matches labels, names, quantities…


def test_kustomization_lists_every_manifest_in_one_namespace() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == NAMESPACE
    assert sorted(kustomization["resources"]) == sorted(path.name for path in manifest_files())
    for obj in objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


def test_the_configmap_and_secret_make_a_configuration_the_bot_accepts() -> None:
    deployment = one("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    environ = {**one("Secret")["stringData"], "POD_NAME": "hiclaw-bot-0",
               **{env["name"]: NAMESPACE for env in container["env"] if env["name"].startswith("HICLAW_")}}
    # The Secret's API token is a placeholder the bot refuses until the operator replaces it.
    with pytest.raises(ConfigError, match=r"api\.token"):
        parse_config(one("ConfigMap")["data"]["config.yaml"], environ=environ)
    environ["HICLAW_API__TOKEN"] = secrets.token_hex(32)
    config = parse_config(one("ConfigMap")["data"]["config.yaml"], environ=environ)
    assert config.ha.enabled
    assert config.ha.in_cluster
    assert config.ha.namespace == NAMESPACE
    assert config.backend.kind == "kubernetes"
    assert config.backend.kubernetes.in_cluster
    assert config.backend.kubernetes.namespace == NAMESPACE
    assert config.data_dir == Path("/data")
    # The probes and the Service reach the API the configuration opens.
    host, _, port = config.api.listen.rpartition(":")
    assert host == "0.0.0.0"
    assert container["ports"] == [{"name": "http", "containerPort": int(port)}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The Lease the bot uses is the one its Role may renew.
    lease_rule = [rule for rule in one("Role")["rules"] if rule.get("resourceNames")]
    assert lease_rule[0]["resourceNames"] == [config.ha.lease_name]


def test_the_deployment_is_wired_to_the_other_objects_and_the_image() -> None:
    deployment = one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
    binding = one("RoleBinding")
    assert binding["roleRef"]["name"] == one("Role")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": NAMESPACE}]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == one("PersistentVolumeClaim")["metadata"]["name"]
    assert container["envFrom"] == [{"secretRef": {"name": one("Secret")["metadata"]["name"]}}]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts["data"] == "/data"
    assert mounts["config"] == "/etc/hiclaw"
    assert container["args"] == ["run", "--config", "/etc/hiclaw/config.yaml"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert one("Service")["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert one("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]


async def test_the_role_covers_every_request_the_bot_makes(kube: KubeTarget) -> None:
    """Drive the backend through a worker's whole life and the elector through a term, on the fake
    API server, and check each recorded request against the Role; then check the Role grants
    nothing that was not needed."""
    fake = kube.fake
    if fake is None:
        pytest.skip("needs the fake API server's request log")
    first = len(fake.requests)
    backend = KubernetesBackend(f"rbac-{secrets.token_hex(3)}", namespace=kube.namespace, kubeconfig=kube.kubeconfig,
                                min_ready_seconds=0, rollout_timeout=20, poll_interval=0.1, stop_grace_seconds=2)
    command = ["sh", "-c", "echo up; while true; do sleep 1; done"]
    try:
        await backend.create(WorkerSpec("rbac", kube.image_v1, command, {"GREETING": "hi"}))
        await backend.status("rbac")
        await backend.stop("rbac")
        await backend.start("rbac")
        await backend.update("rbac", WorkerSpec("rbac", kube.image_v2, command, {"GREETING": "hello"}))
        assert (await backend.exec("rbac", ["echo", "ok"], 10)).exit_code == 0
        await backend.logs("rbac", tail=5)
        await backend.list()
        await backend.delete("rbac")
    finally:
        await backend.close()
    lease = one("Role")["rules"][-1]["resourceNames"][0]
    async with coordination_api(kubeconfig=str(kube.kubeconfig), context=None, in_cluster=False) as api:
        elector = LeaseElector(api, LeaseSettings(kube.namespace, lease, "rbac-test", 2, 1.5, 0.25))
        await elector.acquire()
        assert await elector.try_acquire_or_renew()
        await elector.release()

    rules = one("Role")["rules"]
    accesses = {access_of(r.method, r.path, r.query) for r in fake.requests[first:]}
    denied = sorted(str(access) for access in accesses if not allows(rules, access))
    assert not denied, f"the Role does not allow: {denied}"
    used = {(access.group, access.resource, access.verb) for access in accesses}
    assert granted(rules) - used - UNEXERCISED == set(), "granted but never used"
