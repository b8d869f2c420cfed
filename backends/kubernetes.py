"""Workers as Kubernetes Deployments, through the official asyncio client (``kubernetes.aio``).

Sleep and wake go through the ``/scale`` subresource (replicas 0 or 1), which touches nothing
else of the Deployment. An update replaces the Pod template with one JSON patch and then waits,
as ``kubectl rollout status`` does, for ``observedGeneration`` to catch up and for the updated and
available replica counts to reach the wanted count. It gives up early when a new Pod reports a
reason that waiting cannot cure (``ImagePullBackOff``, ``CrashLoopBackOff``...), and on any
failure patches the previous template back, so the worker keeps its old version.

Exec uses the websocket API without preloading: the preloading variant merges stdout with stderr
and drops the exit code, which only channel 3 (a ``metav1.Status``) carries. Replies are turned
into plain dicts right away (``sanitize_for_serialization``), so the rest of the module reads the
same camelCase shapes a real apiserver sends (see :mod:`backends.k8s_objects`).

Client objects are typed ``Any``: the package ships no type information.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.stream import WsApiClient

from backends import k8s_objects as objects
from backends.base import (
    LABEL_INSTANCE,
    LABEL_SPEC_HASH,
    LABEL_WORKER,
    BackendRef,
    ExecResult,
    WorkerSpec,
    WorkerState,
    WorkerStatus,
    check_instance,
    check_name,
    object_name,
    worker_labels,
)
from backends.errors import (
    BackendError,
    Conflict,
    ExecTimeout,
    InvalidSpec,
    NotFound,
    TransientBackendError,
    Unavailable,
    UpdateFailed,
)
from backends.policy import ImagePolicy

BACKEND = "kubernetes"
Obj = dict[str, Any]


@dataclass
class _Apis:
    api: Any
    ws: Any
    apps: Any
    core: Any
    core_ws: Any


class KubernetesBackend:
    """Workers as Deployments in ``namespace``.

    Configuration comes from ``kubeconfig`` (and ``context``), or from the Pod's service account
    when ``in_cluster`` is true. ``min_ready_seconds`` is how long a new Pod must stay ready
    before an update retires the old one; ``rollout_timeout`` bounds an update's wait.
    """

    name = BACKEND

    def __init__(self, instance: str, *, namespace: str = "default", kubeconfig: str | os.PathLike[str] | None = None,
                 context: str | None = None, in_cluster: bool = False, rollout_timeout: float = 300.0,
                 min_ready_seconds: int = 2, stop_grace_seconds: int = 10, poll_interval: float = 0.5,
                 policy: ImagePolicy | None = None) -> None:
        check_instance(BACKEND, instance)
        self.instance = instance
        self._policy = policy or ImagePolicy()
        self.namespace = namespace
        self._kubeconfig = os.fspath(kubeconfig) if kubeconfig is not None else None
        self._context = context
        self._in_cluster = in_cluster
        self._rollout_timeout = rollout_timeout
        self._min_ready = min_ready_seconds
        self._grace = stop_grace_seconds
        self._poll = poll_interval
        self._apis: _Apis | None = None
        self._connecting = asyncio.Lock()

    # -- the contract ---------------------------------------------------------------------------

    async def create(self, spec: WorkerSpec, *, replace: bool = False) -> BackendRef:
        self._policy.check(BACKEND, spec.image)
        apis = await self._connect()
        manifest = objects.deployment(spec, self.instance, grace_seconds=self._grace,
                                      min_ready_seconds=self._min_ready)
        existing = await self._read(apis, spec.name)
        adopted = existing is not None
        if existing is None:
            await self._ensure_secret(apis, spec)
            try:
                async with _errors():
                    existing = self._plain(apis, await apis.apps.create_namespaced_deployment(
                        self.namespace, manifest))
            except Conflict:  # created concurrently: observe it like any existing one
                existing = await self._require(apis, spec.name)
                adopted = True
        found_hash = existing["metadata"].get("labels", {}).get(LABEL_SPEC_HASH)
        if adopted and found_hash != spec.spec_hash:
            if not replace:
                raise Conflict(BACKEND, f"worker {spec.name} exists with spec hash {found_hash}, not {spec.spec_hash}")
            await self.update(spec.name, spec)
        return BackendRef(BACKEND, spec.name, object_name(spec.name), str(existing["metadata"]["uid"]),
                          spec.spec_hash, adopted)

    async def start(self, name: str) -> None:
        await self._scale(name, 1)

    async def stop(self, name: str) -> None:
        await self._scale(name, 0)

    async def update(self, name: str, spec: WorkerSpec) -> None:
        check_name(BACKEND, name)
        if spec.name != name:
            raise InvalidSpec(BACKEND, f"spec is for worker {spec.name}, not {name}")
        self._policy.check(BACKEND, spec.image)
        apis = await self._connect()
        dep = await self._require(apis, name)
        old_labels = dict(dep["metadata"].get("labels") or {})
        if old_labels.get(LABEL_SPEC_HASH) == spec.spec_hash:
            return
        old_template = dep["spec"]["template"]
        await self._ensure_secret(apis, spec)
        new_template = objects.pod_template(spec, self.instance, self._grace)
        async with _errors():
            swap = objects.template_swap(new_template, worker_labels(spec, self.instance))
            patched = self._plain(apis, await apis.apps.patch_namespaced_deployment(
                object_name(name), self.namespace, swap))
        failure = await self._wait_rollout(apis, name, patched["metadata"]["generation"], spec.spec_hash)
        if failure is None:
            await self._delete_secrets(apis, name, keep=spec.spec_hash)
            return
        async with _errors():
            restored = self._plain(apis, await apis.apps.patch_namespaced_deployment(
                object_name(name), self.namespace, objects.template_swap(old_template, old_labels)))
        rollback = await self._wait_rollout(apis, name, restored["metadata"]["generation"],
                                            old_labels.get(LABEL_SPEC_HASH))
        await self._delete_secrets(apis, name, keep=old_labels.get(LABEL_SPEC_HASH))
        outcome = "rolled back to its previous version" if rollback is None else \
            f"rolled back, but the previous version is not available either ({rollback})"
        raise UpdateFailed(BACKEND, f"worker {name} {outcome}: the new version failed: {failure}")

    async def delete(self, name: str) -> None:
        check_name(BACKEND, name)
        apis = await self._connect()
        dep = await self._read(apis, name)  # refuses another instance's Deployment
        if dep is not None:
            try:
                async with _errors():
                    await apis.apps.delete_namespaced_deployment(
                        object_name(name), self.namespace, propagation_policy="Background",
                        body={"preconditions": {"uid": dep["metadata"]["uid"]}})
            except NotFound:
                pass
        await self._delete_secrets(apis, name, keep=None)

    async def status(self, name: str) -> WorkerStatus:
        check_name(BACKEND, name)
        apis = await self._connect()
        dep = await self._read(apis, name)
        if dep is None:
            return WorkerStatus(name, WorkerState.NOT_FOUND)
        return objects.status_of(name, dep, await self._pods(apis, objects.selector(name, self.instance)))

    async def exec(self, name: str, argv: Sequence[str], timeout: float) -> ExecResult:  # noqa: ASYNC109
        check_name(BACKEND, name)
        command = list(argv)
        if not command or not all(isinstance(arg, str) for arg in command):
            raise InvalidSpec(BACKEND, "exec needs a non-empty list of strings")
        apis = await self._connect()
        dep = await self._require(apis, name)
        pods = await self._pods(apis, objects.selector(name, self.instance))
        pod = objects.current_pod([p for p in pods if objects.running(p)],
                                  dep["metadata"].get("labels", {}).get(LABEL_SPEC_HASH))
        if pod is None:
            raise Conflict(BACKEND, f"worker {name} is not running")
        try:
            async with asyncio.timeout(timeout), _errors():
                return await _exec(apis, pod["metadata"]["name"], self.namespace, command)
        except TimeoutError:
            raise ExecTimeout(BACKEND, f"command in worker {name} did not finish in {timeout:g}s") from None

    async def logs(self, name: str, tail: int | None = None) -> str:
        check_name(BACKEND, name)
        apis = await self._connect()
        dep = await self._require(apis, name)
        pod = objects.current_pod(await self._pods(apis, objects.selector(name, self.instance)),
                                  dep["metadata"].get("labels", {}).get(LABEL_SPEC_HASH))
        if pod is None:
            return ""  # asleep: no Pod, and Pod logs go with their Pod
        try:
            async with _errors():
                text = await apis.core.read_namespaced_pod_log(pod["metadata"]["name"], self.namespace,
                                                               container=objects.CONTAINER, tail_lines=tail)
        except BackendError as exc:
            if "waiting to start" in exc.message:
                return ""
            raise
        return str(text)

    async def list(self) -> builtins.list[WorkerStatus]:
        apis = await self._connect()
        selector = f"{LABEL_INSTANCE}={self.instance},{LABEL_WORKER}"
        async with _errors():
            deployments = self._plain(apis, await apis.apps.list_namespaced_deployment(
                self.namespace, label_selector=selector))["items"]
        pods = await self._pods(apis, {LABEL_INSTANCE: self.instance})
        found = []
        for dep in deployments:
            worker = dep["metadata"]["labels"][LABEL_WORKER]
            mine = [p for p in pods if p["metadata"].get("labels", {}).get(LABEL_WORKER) == worker]
            found.append(objects.status_of(worker, dep, mine))
        return sorted(found, key=lambda status: status.name)

    async def close(self) -> None:
        if self._apis is not None:
            apis, self._apis = self._apis, None
            await apis.ws.close()
            await apis.api.close()

    # -- helpers --------------------------------------------------------------------------------

    async def _scale(self, name: str, replicas: int) -> None:
        check_name(BACKEND, name)
        apis = await self._connect()
        dep = await self._require(apis, name)
        if dep["spec"].get("replicas") == replicas:
            return
        async with _errors():
            await apis.apps.patch_namespaced_deployment_scale(object_name(name), self.namespace,
                                                               {"spec": {"replicas": replicas}})

    async def _wait_rollout(self, apis: _Apis, name: str, generation: int, spec_hash: str | None) -> str | None:
        """None once the rollout completed, else why it cannot."""
        deadline = time.monotonic() + self._rollout_timeout
        while True:
            dep = await self._require(apis, name)
            if objects.rolled_out(dep, generation):
                return None
            pods = await self._pods(apis, {**objects.selector(name, self.instance), LABEL_SPEC_HASH: spec_hash or ""})
            reason = objects.failing_reason(pods) or objects.stalled_reason(dep)
            if reason is not None:
                return reason
            if time.monotonic() >= deadline:
                return f"not available after {self._rollout_timeout:g}s"
            await asyncio.sleep(self._poll)

    async def _ensure_secret(self, apis: _Apis, spec: WorkerSpec) -> None:
        """Create the spec's environment Secret; one that exists has the same content (same hash)."""
        try:
            async with _errors(quiet=True):
                await apis.core.create_namespaced_secret(self.namespace, objects.env_secret(spec, self.instance))
        except Conflict:
            pass

    async def _delete_secrets(self, apis: _Apis, name: str, keep: str | None) -> None:
        async with _errors():
            secrets = self._plain(apis, await apis.core.list_namespaced_secret(
                self.namespace, label_selector=objects.label_selector(objects.selector(name, self.instance))))
        for secret in secrets["items"]:
            if keep is not None and secret["metadata"].get("labels", {}).get(LABEL_SPEC_HASH) == keep:
                continue
            try:
                async with _errors(quiet=True):
                    await apis.core.delete_namespaced_secret(secret["metadata"]["name"], self.namespace)
            except NotFound:
                pass

    async def _read(self, apis: _Apis, name: str) -> Obj | None:
        check_name(BACKEND, name)
        try:
            async with _errors():
                dep = self._plain(apis, await apis.apps.read_namespaced_deployment(object_name(name), self.namespace))
        except NotFound:
            return None
        if dep["metadata"].get("labels", {}).get(LABEL_INSTANCE) != self.instance:
            raise Conflict(BACKEND, f"deployment {object_name(name)} belongs to another bot instance")
        return dep

    async def _require(self, apis: _Apis, name: str) -> Obj:
        dep = await self._read(apis, name)
        if dep is None:
            raise NotFound(BACKEND, f"worker {name} has no deployment")
        return dep

    async def _pods(self, apis: _Apis, labels: dict[str, str]) -> builtins.list[Obj]:
        async with _errors():
            pods = await apis.core.list_namespaced_pod(self.namespace, label_selector=objects.label_selector(labels))
        items: builtins.list[Obj] = self._plain(apis, pods)["items"]
        return items

    @staticmethod
    def _plain(apis: _Apis, model: Any) -> Obj:
        plain: Obj = apis.api.sanitize_for_serialization(model)
        return plain

    async def _connect(self) -> _Apis:
        async with self._connecting:
            if self._apis is None:
                configuration = client.Configuration()
                try:
                    if self._in_cluster:
                        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                    else:
                        await config.load_kube_config(  # type: ignore[no-untyped-call]
                            config_file=self._kubeconfig, context=self._context, client_configuration=configuration)
                except (config.ConfigException, OSError) as exc:
                    raise Unavailable(BACKEND, f"cannot load the cluster configuration: {exc}") from exc
                api = client.ApiClient(configuration=configuration)
                ws = WsApiClient(configuration=configuration)  # type: ignore[no-untyped-call]
                self._apis = _Apis(api, ws, client.AppsV1Api(api), client.CoreV1Api(api), client.CoreV1Api(ws))
            return self._apis


@asynccontextmanager
async def _errors(*, quiet: bool = False) -> AsyncIterator[None]:
    """Translate the client's exceptions; ``quiet`` drops the server's message (Secret calls)."""
    try:
        yield
    except ApiException as exc:
        raise _translated(exc, quiet) from exc
    except aiohttp.ClientConnectionError as exc:
        raise Unavailable(BACKEND, f"cannot reach the API server: {type(exc).__name__}") from exc
    except aiohttp.ClientError as exc:
        raise TransientBackendError(BACKEND, f"API call failed: {type(exc).__name__}") from exc


def _translated(exc: ApiException, quiet: bool) -> BackendError:
    status = int(exc.status or 0)
    message = str(exc.reason or "")
    try:
        body = json.loads(exc.body or "")
        message = message if quiet else str(body.get("message") or message)
    except (ValueError, AttributeError):
        pass
    text = f"API server answered {status}: {message}"
    if status == 404:
        return NotFound(BACKEND, text)
    if status == 409:
        return Conflict(BACKEND, text)
    if status in (400, 422):
        return InvalidSpec(BACKEND, text)
    if status == 429 or status >= 500:
        retry_after = (exc.headers or {}).get("Retry-After")
        return TransientBackendError(BACKEND, text, retry_after=float(retry_after) if retry_after else None)
    return BackendError(BACKEND, text)


async def _exec(apis: _Apis, pod: str, namespace: str, command: builtins.list[str]) -> ExecResult:
    """One exec over the websocket: stdout (1), stderr (2), and the exit status on channel 3."""
    stdout, stderr, status = bytearray(), bytearray(), None
    connection = await apis.core_ws.connect_get_namespaced_pod_exec_without_preload_content(
        pod, namespace, command=command, container=objects.CONTAINER, stderr=True, stdin=False, stdout=True,
        tty=False)
    async with connection as ws:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.BINARY or not message.data:
                continue
            channel, data = message.data[0], message.data[1:]
            if channel == 1:
                stdout += data
            elif channel == 2:
                stderr += data
            elif channel == 3:
                status = json.loads(data)
    if status is None:
        raise TransientBackendError(BACKEND, f"exec in pod {pod} ended without an exit status")
    if status.get("status") == "Success":
        return ExecResult(0, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return ExecResult(int(cause["message"]), stdout.decode(errors="replace"), stderr.decode(errors="replace"))
    # The command could not be run at all (not found, not executable): 126, as a container engine says.
    return ExecResult(126, stdout.decode(errors="replace"),
                      stderr.decode(errors="replace") + f"{status.get('message', 'exec failed')}\n")
