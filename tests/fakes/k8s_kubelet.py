"""The fake cluster's moving parts: a Deployment controller and a kubelet running real processes.

The controller does what the ReplicaSet and Deployment controllers do for the backend's purposes:
one set of Pods per template hash (label ``pod-template-hash``), a rolling update within
``maxSurge``/``maxUnavailable``, ``minReadySeconds`` before a Pod counts as available, and the
status fields a rollout is judged by (``observedGeneration``, ``updatedReplicas``,
``availableReplicas``...). ReplicaSet objects themselves are not stored: Pods are owned by the
Deployment directly.

The kubelet runs each Pod's container as a real local process group (in a directory of its
own, with the Pod's environment, ``envFrom`` secrets included). So logs are what the worker
really printed and exec returns what a command really returned, through the same websocket
protocol a real kubelet speaks. What is *not* modelled: image contents (a container with no
``command`` runs an idle shell loop) and pulling, except that an image whose registry host ends
in ``.invalid`` (a name that can never resolve, RFC 2606) fails with ``ErrImagePull`` then
``ImagePullBackOff``, as it would on a real cluster. A process that exits is restarted after
``crash_backoff`` (``CrashLoopBackOff`` meanwhile); Pods turn Ready ``ready_delay`` seconds
after their process starts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import secrets
import signal
import time
import traceback
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.k8s_api import ApiError, Obj, parse_label_selector, selector_string
from tests.fakes.k8s_store import Store, now_rfc3339

IDLE_COMMAND = ["sh", "-c", "while :; do sleep 3600; done"]


class ConfigError(Exception):
    """The container cannot be configured (a missing secret): ``CreateContainerConfigError``."""


@dataclass
class PodRuntime:
    """What the kubelet knows of one Pod's container beyond its stored status."""

    workdir: Path
    process: asyncio.subprocess.Process | None = None
    reader: asyncio.Task[None] | None = None
    output: bytearray = field(default_factory=bytearray)
    previous: bytes = b""
    started_at: str | None = None
    started: float = 0.0
    ready_since: float | None = None
    ready_changed_at: str = field(default_factory=now_rfc3339)
    restarts: int = 0
    last_exit: tuple[int, str, str] | None = None  # exit code, started, finished
    next_start: float = 0.0
    pull_attempts: int = 0
    created_at: str = field(default_factory=now_rfc3339)


def template_hash(template: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def image_pullable(image: str) -> bool:
    first, sep, _ = image.partition("/")
    is_registry = bool(sep) and ("." in first or ":" in first or first == "localhost")
    return not (is_registry and first.partition(":")[0].endswith(".invalid"))


class Cluster:
    """Runs the controller and kubelet loop; ``failures`` collects their own crashes for the tests."""

    def __init__(self, store: Store, workdir: Path, *, ready_delay: float, crash_backoff: float,
                 kill_grace: float) -> None:
        self.store = store
        self.workdir = workdir
        self.ready_delay = ready_delay
        self.crash_backoff = crash_backoff
        self.kill_grace = kill_grace
        self.failures: list[str] = []
        self._runtimes: dict[tuple[str, str], PodRuntime] = {}
        self._progress: dict[str, tuple[tuple[int, int, int], float]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._killers: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="fake-k8s-cluster")

    def kick(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(self._kill(rt) for rt in self._runtimes.values()), *self._killers)
        self._runtimes.clear()

    # -- what the HTTP layer asks ---------------------------------------------------------------

    def exec_context(self, namespace: str, pod_name: str, container: str | None) -> tuple[dict[str, str], Path]:
        """Environment and directory for an exec into a running container, or the apiserver's error."""
        pod = self.store.get("Pod", namespace, pod_name)
        spec = self._container(pod, container)
        runtime = self._runtimes.get((namespace, pod_name))
        if runtime is None or runtime.process is None or runtime.process.returncode is not None:
            raise ApiError(400, "BadRequest", f'container {spec["name"]} is not valid for pod {pod_name}: '
                                              "container is not running")
        return self._env(namespace, pod, spec), runtime.workdir

    def logs(self, namespace: str, pod_name: str, container: str | None, *, previous: bool) -> str:
        pod = self.store.get("Pod", namespace, pod_name)
        spec = self._container(pod, container)
        runtime = self._runtimes.get((namespace, pod_name))
        if runtime is None or (runtime.started_at is None and not previous):
            raise ApiError(400, "BadRequest", f'container "{spec["name"]}" in pod "{pod_name}" is waiting to '
                                              "start: ContainerCreating")
        if previous:
            if runtime.last_exit is None:
                raise ApiError(400, "BadRequest", f'previous terminated container "{spec["name"]}" in pod '
                                                  f'"{pod_name}" not found')
            return runtime.previous.decode(errors="replace")
        return runtime.output.decode(errors="replace")

    def _container(self, pod: Obj, name: str | None) -> Obj:
        containers = pod["spec"]["containers"]
        if name is None:
            if len(containers) > 1:
                raise ApiError(400, "BadRequest", f'a container name must be specified for pod '
                                                  f'{pod["metadata"]["name"]}')
            return dict(containers[0])
        for container in containers:
            if container["name"] == name:
                return dict(container)
        raise ApiError(400, "BadRequest", f'container {name} is not valid for pod {pod["metadata"]["name"]}')

    # -- the loop -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.02)
            self._wake.clear()
            try:
                await self._reconcile()
            except Exception:
                self.failures.append(traceback.format_exc())

    async def _reconcile(self) -> None:
        for deployment in self.store.list("Deployment", None):
            self._sync_deployment(deployment)
        pods = self.store.list("Pod", None)
        for pod in pods:
            await self._sync_pod(pod)
        present = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}
        for key in set(self._runtimes) - present:
            task = asyncio.create_task(self._kill(self._runtimes.pop(key)))
            self._killers.add(task)
            task.add_done_callback(self._killers.discard)

    # -- controller -----------------------------------------------------------------------------

    def _sync_deployment(self, deployment: Obj) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        namespace, replicas = meta["namespace"], spec["replicas"]
        current_hash = template_hash(spec["template"])
        owned = self._owned_pods(deployment)
        new = [p for p in owned if p["metadata"]["labels"].get("pod-template-hash") == current_hash]
        old = [p for p in owned if p not in new]
        surge, unavailable = _rolling_limits(spec, replicas)
        recreate = spec["strategy"].get("type") == "Recreate"
        min_ready = spec.get("minReadySeconds", 0)

        def available(pod: Obj) -> bool:
            return self._available(pod, min_ready)

        for pod in old if recreate else ():
            self.store.delete("Pod", namespace, pod["metadata"]["name"])
        if not (recreate and old):
            room = replicas + surge - len(owned)
            for _ in range(max(0, min(replicas - len(new), room))):
                self._create_pod(deployment, current_hash)
        for pod in sorted(new, key=available)[:max(0, len(new) - replicas)]:
            self.store.delete("Pod", namespace, pod["metadata"]["name"])
        removable = sum(map(available, owned)) - (replicas - unavailable)
        for pod in sorted(old, key=available) if not recreate else ():
            if not available(pod):
                self.store.delete("Pod", namespace, pod["metadata"]["name"])
            elif removable > 0:
                self.store.delete("Pod", namespace, pod["metadata"]["name"])
                removable -= 1
        self._write_deployment_status(deployment, current_hash, unavailable)

    def _owned_pods(self, deployment: Obj) -> list[Obj]:
        matches = parse_label_selector(selector_string(deployment["spec"]["selector"]))
        uid = deployment["metadata"]["uid"]
        return [pod for pod in self.store.list("Pod", deployment["metadata"]["namespace"])
                if matches(pod["metadata"].get("labels") or {})
                and any(ref["uid"] == uid for ref in pod["metadata"].get("ownerReferences") or [])]

    def _create_pod(self, deployment: Obj, current_hash: str) -> None:
        meta, template = deployment["metadata"], deployment["spec"]["template"]
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": f"{meta['name']}-{current_hash}-{secrets.token_hex(3)[:5]}",
                "labels": {**(template.get("metadata", {}).get("labels") or {}), "pod-template-hash": current_hash},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                     "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": template["spec"],
        }
        self.store.create("Pod", meta["namespace"], pod)

    def _available(self, pod: Obj, min_ready: float) -> bool:
        """Ready for at least ``minReadySeconds`` (zero: simply ready)."""
        runtime = self._runtimes.get((pod["metadata"]["namespace"], pod["metadata"]["name"]))
        return (runtime is not None and runtime.ready_since is not None
                and time.monotonic() - runtime.ready_since >= min_ready)

    def _write_deployment_status(self, deployment: Obj, current_hash: str, max_unavailable: int) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        replicas, min_ready = spec["replicas"], spec.get("minReadySeconds", 0)
        owned = self._owned_pods(deployment)
        now = time.monotonic()
        ready = [p for p in owned if self._available(p, 0)]
        available = [p for p in owned if self._available(p, min_ready)]
        updated = [p for p in owned if p["metadata"]["labels"].get("pod-template-hash") == current_hash]
        status: Obj = {"observedGeneration": meta["generation"]}
        counts = {"replicas": len(owned), "updatedReplicas": len(updated), "readyReplicas": len(ready),
                  "availableReplicas": len(available), "unavailableReplicas": max(0, replicas - len(available))}
        status.update({key: value for key, value in counts.items() if value})  # zeros are omitted
        complete = len(updated) == replicas == len(owned) == len(available)
        signature = (meta["generation"], len(updated), len(available))
        seen, since = self._progress.get(meta["uid"], (signature, now))
        if seen != signature:
            since = now
        self._progress[meta["uid"]] = (signature, since)
        stalled = not complete and now - since > spec["progressDeadlineSeconds"]
        old_conditions = {c["type"]: c for c in (deployment.get("status") or {}).get("conditions", [])}
        status["conditions"] = [
            _condition(old_conditions, "Available", len(available) >= replicas - max_unavailable,
                       "MinimumReplicasAvailable", "MinimumReplicasUnavailable"),
            _condition(old_conditions, "Progressing", not stalled,
                       "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated", "ProgressDeadlineExceeded"),
        ]
        self.store.write_status("Deployment", meta["namespace"], meta["name"], status)

    # -- kubelet --------------------------------------------------------------------------------

    async def _sync_pod(self, pod: Obj) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        runtime = self._runtimes.get((namespace, name))
        if runtime is None:
            runtime = self._runtimes[(namespace, name)] = PodRuntime(self.workdir / namespace / name)
        container = pod["spec"]["containers"][0]
        now = time.monotonic()
        waiting: tuple[str, str] | None = None
        if not image_pullable(container["image"]):
            runtime.pull_attempts += 1
            waiting = ("ErrImagePull" if runtime.pull_attempts <= 2 else "ImagePullBackOff",
                       f'failed to pull image "{container["image"]}": no such host')
        else:
            process = runtime.process
            if process is not None and process.returncode is not None:
                if runtime.reader is not None:
                    await runtime.reader
                runtime.last_exit = (process.returncode, runtime.started_at or "", now_rfc3339())
                runtime.previous, runtime.output = bytes(runtime.output), bytearray()
                runtime.process, runtime.started_at = None, None
                runtime.restarts += 1
                runtime.next_start = now + self.crash_backoff
            if runtime.process is None and now >= runtime.next_start:
                try:
                    await self._spawn(runtime, namespace, pod, container)
                except ConfigError as exc:
                    waiting = ("CreateContainerConfigError", str(exc))
            if runtime.process is None and waiting is None:
                waiting = ("CrashLoopBackOff", "back-off restarting failed container") if runtime.restarts \
                    else ("ContainerCreating", "")
        is_ready = runtime.process is not None and now - runtime.started >= self.ready_delay
        if is_ready != (runtime.ready_since is not None):
            runtime.ready_since = now if is_ready else None
            runtime.ready_changed_at = now_rfc3339()
        self.store.write_status("Pod", namespace, name, self._pod_status(runtime, container, waiting))

    def _pod_status(self, runtime: PodRuntime, container: Obj, waiting: tuple[str, str] | None) -> Obj:
        ready = "True" if runtime.ready_since is not None else "False"
        state: Obj
        if waiting is not None:
            state = {"waiting": {"reason": waiting[0], **({"message": waiting[1]} if waiting[1] else {})}}
        else:
            state = {"running": {"startedAt": runtime.started_at}}
        status: Obj = {
            "phase": "Running" if runtime.started_at or runtime.restarts else "Pending",
            "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": runtime.created_at,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": runtime.created_at},
                {"type": "Initialized", "status": "True", "lastTransitionTime": runtime.created_at},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": runtime.ready_changed_at},
                {"type": "Ready", "status": ready, "lastTransitionTime": runtime.ready_changed_at},
            ],
            "containerStatuses": [{
                "name": container["name"], "image": container["image"],
                "imageID": f"fake://{container['image']}" if waiting is None else "",
                "ready": ready == "True", "started": runtime.process is not None,
                "restartCount": runtime.restarts, "state": state,
            }],
        }
        if runtime.last_exit is not None:
            code, started, finished = runtime.last_exit
            status["containerStatuses"][0]["lastState"] = {"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": started, "finishedAt": finished}}
        return status

    async def _spawn(self, runtime: PodRuntime, namespace: str, pod: Obj, container: Obj) -> None:
        env = self._env(namespace, pod, container)
        argv = [*(container.get("command") or IDLE_COMMAND), *(container.get("args") or [])]
        runtime.workdir.mkdir(parents=True, exist_ok=True)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=runtime.workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            runtime.output = bytearray(f"exec {argv[0]}: {exc.strerror}\n".encode())
            runtime.last_exit = (128, now_rfc3339(), now_rfc3339())
            runtime.restarts += 1
            runtime.next_start = time.monotonic() + self.crash_backoff
            return
        runtime.process, runtime.started, runtime.started_at = process, time.monotonic(), now_rfc3339()
        runtime.reader = asyncio.create_task(_read_into(process, runtime.output))

    def _env(self, namespace: str, pod: Obj, container: Obj) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOSTNAME": pod["metadata"]["name"]}
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                env.update(self._secret(namespace, source["secretRef"]["name"]))
        for variable in container.get("env") or []:
            if "value" in variable:
                env[variable["name"]] = variable["value"]
            elif "secretKeyRef" in (variable.get("valueFrom") or {}):
                ref = variable["valueFrom"]["secretKeyRef"]
                data = self._secret(namespace, ref["name"])
                if ref["key"] not in data:
                    raise ConfigError(f'couldn\'t find key {ref["key"]} in Secret {namespace}/{ref["name"]}')
                env[variable["name"]] = data[ref["key"]]
        return env

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        try:
            secret = self.store.get("Secret", namespace, name)
        except ApiError:
            raise ConfigError(f'secret "{name}" not found') from None
        return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}

    async def _kill(self, runtime: PodRuntime) -> None:
        process = runtime.process
        if process is not None and process.returncode is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.kill_grace)
            except TimeoutError:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if runtime.reader is not None:
            await runtime.reader


async def _read_into(process: asyncio.subprocess.Process, output: bytearray) -> None:
    assert process.stdout is not None
    while chunk := await process.stdout.read(65536):
        output += chunk


def _rolling_limits(spec: Obj, replicas: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as Pod counts; percentages round up and down like the controller."""
    rolling = spec["strategy"].get("rollingUpdate") or {}

    def resolve(value: Any, default: str, round_up: bool) -> int:
        value = default if value is None else value
        if isinstance(value, str) and value.endswith("%"):
            exact = replicas * int(value[:-1]) / 100
            return math.ceil(exact) if round_up else math.floor(exact)
        return int(value)

    surge = resolve(rolling.get("maxSurge"), "25%", True)
    unavailable = resolve(rolling.get("maxUnavailable"), "25%", False)
    return surge, unavailable if surge or unavailable else 1


def _condition(old: Mapping[str, Obj], kind: str, ok: bool, reason: str, bad_reason: str) -> Obj:
    status, why = ("True", reason) if ok else ("False", bad_reason)
    previous = old.get(kind)
    changed = previous is None or previous["status"] != status
    stamp = now_rfc3339() if changed or previous is None else previous["lastTransitionTime"]
    update = now_rfc3339() if previous is None or previous.get("reason") != why else previous["lastUpdateTime"]
    return {"type": kind, "status": status, "reason": why, "lastTransitionTime": stamp, "lastUpdateTime": update,
            "message": f"Deployment {why}"}

