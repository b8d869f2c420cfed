"""The Kubernetes objects of a worker, and how to read a worker's state back from them.

Kept apart from the API calls so the shapes can be read (and reviewed) on their own:

- one **Deployment** ``hiclaw-worker-<name>`` whose ``replicas`` is 1 (awake) or 0 (asleep). Its
  selector holds only the worker and instance labels, because a selector is immutable while the
  spec-hash label changes with every update. The rolling update surges one Pod and never drops
  the old one first (``maxSurge: 1, maxUnavailable: 0``), so a new version that never becomes
  available leaves the old one serving; ``minReadySeconds`` is the settle period a new Pod must
  survive before the old one goes.
- one **Secret** per spec hash, ``hiclaw-worker-<name>-env-<hash>``, holding the environment
  (which may carry secrets: it never appears in the Deployment, whose readers are many). A new
  hash gets a new Secret, so rolling back to the previous template finds its Secret unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from backends.base import (
    LABEL_INSTANCE,
    LABEL_SPEC_HASH,
    LABEL_WORKER,
    Resources,
    WorkerSpec,
    WorkerState,
    WorkerStatus,
    object_name,
    worker_labels,
)

Obj = dict[str, Any]
CONTAINER = "worker"
# Waiting reasons that will not resolve by waiting: a rollout showing them has failed.
FAILING_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
                             "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


WORK_DIR = "/home/worker"
POD_SECURITY: Obj = {
    # The Pod Security Standard "restricted": the worker image's own unprivileged user (10001),
    # the runtime's default seccomp profile; the container adds no privilege escalation, no
    # capability and a read-only root filesystem, writing only to two emptyDirs (/tmp, its home).
    "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def secret_name(name: str, spec_hash: str) -> str:
    return f"{object_name(name)}-env-{spec_hash}"


def selector(name: str, instance: str) -> dict[str, str]:
    return {LABEL_WORKER: name, LABEL_INSTANCE: instance}


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def env_secret(spec: WorkerSpec, instance: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name(spec.name, spec.spec_hash), "labels": worker_labels(spec, instance)},
            "stringData": dict(spec.env)}


def pod_template(spec: WorkerSpec, instance: str, grace_seconds: int) -> Obj:
    container: Obj = {"name": CONTAINER, "image": spec.image,
                      "envFrom": [{"secretRef": {"name": secret_name(spec.name, spec.spec_hash)}}]}
    if spec.command is not None:
        container["command"] = list(spec.command)
    if spec.resources is not None:
        container["resources"] = _resources(spec.resources)
    container["securityContext"] = {
        "runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }
    container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 -- an emptyDir of its own
                                 {"name": "work", "mountPath": WORK_DIR}]
    return {"metadata": {"labels": worker_labels(spec, instance)},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": grace_seconds,
                     "automountServiceAccountToken": False, "enableServiceLinks": False,
                     "securityContext": POD_SECURITY,
                     "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                                 {"name": "work", "emptyDir": {"sizeLimit": "256Mi"}}]}}


def deployment(spec: WorkerSpec, instance: str, *, grace_seconds: int, min_ready_seconds: int) -> Obj:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": object_name(spec.name), "labels": worker_labels(spec, instance)},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": selector(spec.name, instance)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "minReadySeconds": min_ready_seconds,
            "revisionHistoryLimit": 2,
            "template": pod_template(spec, instance, grace_seconds),
        },
    }


def _resources(resources: Resources) -> Obj:
    requests = {"cpu": resources.cpu_request, "memory": resources.memory_request}
    limits = {"cpu": resources.cpu_limit, "memory": resources.memory_limit}
    out: Obj = {}
    for key, values in (("requests", requests), ("limits", limits)):
        present = {resource: value for resource, value in values.items() if value is not None}
        if present:
            out[key] = present
    return out


def template_swap(template: Obj, labels: Mapping[str, str]) -> list[Obj]:
    """The JSON patch that puts ``template`` in place, with the Deployment's labels to match."""
    return [{"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/labels", "value": dict(labels)}]


def rolled_out(dep: Obj, generation: int) -> bool:
    """``kubectl rollout status``'s test: observed, all updated, all available, nothing extra."""
    status, want = dep.get("status") or {}, int(dep["spec"].get("replicas", 0))
    return bool(status.get("observedGeneration", 0) >= generation
            and status.get("updatedReplicas", 0) == want
            and status.get("availableReplicas", 0) == want
            and status.get("replicas", 0) == want)


def failing_reason(pods: Iterable[Obj]) -> str | None:
    """Why one of ``pods`` cannot become ready, if a container says so."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FAILING_REASONS:
                message = waiting.get("message")
                return f"{waiting['reason']}" + (f": {message}" if message else "")
    return None


def stalled_reason(dep: Obj) -> str | None:
    for condition in (dep.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return "the rollout exceeded its progress deadline"
    return None


def current_pod(pods: Iterable[Obj], spec_hash: str | None) -> Obj | None:
    """The Pod that speaks for the worker: live, then ready, then of the current spec, then newest."""
    live = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
    if not live:
        return None
    return max(live, key=lambda pod: (_ready(pod), pod["metadata"].get("labels", {}).get(LABEL_SPEC_HASH) == spec_hash,
                                      pod["metadata"].get("creationTimestamp", "")))


def running(pod: Obj) -> bool:
    statuses: list[Obj] = (pod.get("status") or {}).get("containerStatuses") or []
    return any("running" in (status.get("state") or {}) for status in statuses if status.get("name") == CONTAINER)


def status_of(name: str, dep: Obj, pods: list[Obj]) -> WorkerStatus:
    spec = dep["spec"]
    image = spec["template"]["spec"]["containers"][0].get("image")
    spec_hash = (dep["metadata"].get("labels") or {}).get(LABEL_SPEC_HASH)
    want, status = spec.get("replicas", 0), dep.get("status") or {}
    pod = current_pod(pods, spec_hash)
    started_at = _started_at(pod) if pod is not None else None
    if want == 0:
        return WorkerStatus(name, WorkerState.STOPPED, image, spec_hash, None, "scaled to 0")
    if status.get("availableReplicas", 0) >= want:
        detail = "" if rolled_out(dep, dep["metadata"].get("generation", 0)) else "rolling out"
        return WorkerStatus(name, WorkerState.RUNNING, image, spec_hash, started_at, detail)
    current = [p for p in pods if (p["metadata"].get("labels") or {}).get(LABEL_SPEC_HASH) == spec_hash]
    reason = failing_reason(current) or stalled_reason(dep)
    if reason is not None:
        return WorkerStatus(name, WorkerState.FAILED, image, spec_hash, started_at, reason)
    return WorkerStatus(name, WorkerState.STARTING, image, spec_hash, started_at, "waiting for an available pod")


def _ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _started_at(pod: Obj) -> datetime | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        started = ((status.get("state") or {}).get("running") or {}).get("startedAt")
        if status.get("name") == CONTAINER and started:
            return datetime.fromisoformat(str(started))
    return None
