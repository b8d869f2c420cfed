"""A fake Kubernetes API server: real HTTP on 127.0.0.1, driven by the unmodified official client.

No kube-apiserver can run on these machines (no binary in any reachable package index, no
registry for kind/k3s images), so the Kubernetes backend is tested against this fake. It serves
exactly the endpoints the backend uses: Deployments (with ``/scale``), Pods (with ``/log`` and
``/exec`` over the ``v4``/``v5.channel.k8s.io`` websocket protocols) and Secrets, plus the
``coordination.k8s.io/v1`` Leases of the bot's leader election, with a bearer
token, ``Status`` error bodies (themselves checked against the official schema) and the API
machinery of :mod:`tests.fakes.k8s_store`. Anything else answers 404/405, so a backend that
starts depending on an unmodelled endpoint fails loudly instead of passing against a guess.

Tests can read ``requests`` (every call: method, path, query, content type, JSON body) and
inject faults with :meth:`FakeKubeApiServer.fail`. The same backend tests run unchanged against
a real cluster when ``KUBECONFIG`` is set; only assertions on the fake's request log are skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.k8s_api import KINDS, ApiError, Obj, apply_patch, selector_string
from tests.fakes.k8s_kubelet import Cluster
from tests.fakes.k8s_store import Store, validate_status

TOKEN = "fake-token-for-tests"
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY: web.RequestKey[Any] = web.RequestKey("json", object)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int


@dataclass
class FakeKubeApiServer:
    """Start with :meth:`start`, stop with :meth:`stop`; ``kubeconfig`` writes a file pointing here."""

    namespaces: Iterable[str] = ("default",)
    ready_delay: float = 0.05
    crash_backoff: float = 0.5
    kill_grace: float = 2.0
    requests: list[RecordedRequest] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _url: str = ""
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="hiclaw-fake-k8s-")
        self.cluster = Cluster(Store(self.namespaces, lambda: self.cluster.kick()), Path(self._tmp.name),
                               ready_delay=self.ready_delay, crash_backoff=self.crash_backoff,
                               kill_grace=self.kill_grace)
        self.store = self.cluster.store
        self.cluster.start()
        app = web.Application(middlewares=[self._middleware])
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.cluster.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def url(self) -> str:
        return self._url

    def kubeconfig(self, path: Path, namespace: str) -> Path:
        """A kubeconfig (JSON is YAML) for the official client, with the fake's bearer token."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self._url}}],
            "users": [{"name": "fake", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }
        path.write_text(json.dumps(config))
        return path

    def fail(self, method: str, path_pattern: str, status: int, *, times: int = 1) -> None:
        """Answer the next ``times`` matching calls with ``status`` (a ``Status`` body) instead."""
        self._faults.append(_Fault(method.upper(), re.compile(path_pattern), status, times))

    # -- plumbing -------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return _status_response(ApiError(400, "BadRequest", "the request body is not JSON"))
        request[BODY] = body
        self.requests.append(RecordedRequest(request.method, request.path,
                                             {k: request.query.getall(k) for k in request.query},
                                             request.content_type, body))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _status_response(ApiError(401, "Unauthorized", "Unauthorized"))
        for fault in self._faults:
            if fault.times > 0 and fault.method == request.method and fault.path.search(request.path):
                fault.times -= 1
                return _status_response(ApiError(fault.status, "InternalError" if fault.status >= 500
                                                 else "BadRequest", f"injected fault {fault.status}"))
        try:
            return await handler(request)
        except ApiError as exc:
            return _status_response(exc)
        except web.HTTPException as exc:
            return _status_response(ApiError(exc.status, exc.reason.replace(" ", ""), exc.reason))

    def _routes(self, app: web.Application) -> None:
        apps = "/apis/apps/v1/namespaces/{ns}/deployments"
        core = "/api/v1/namespaces/{ns}"
        leases = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
        policies = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
        for kind, base in (("Deployment", apps), ("Secret", f"{core}/secrets"), ("Pod", f"{core}/pods"),
                           ("Lease", leases), ("NetworkPolicy", policies)):
            app.router.add_get(base, self._list(kind))
            app.router.add_get(base + "/{name}", self._get(kind))
            app.router.add_delete(base + "/{name}", self._delete(kind))
            if kind != "Pod":  # Pods are made by the controller here
                app.router.add_post(base, self._create(kind))
                app.router.add_put(base + "/{name}", self._replace(kind))
                app.router.add_patch(base + "/{name}", self._patch(kind))
        app.router.add_get(apps + "/{name}/scale", self._scale)
        app.router.add_put(apps + "/{name}/scale", self._scale)
        app.router.add_patch(apps + "/{name}/scale", self._scale)
        app.router.add_get(core + "/pods/{name}/log", self._logs)
        app.router.add_get(core + "/pods/{name}/exec", self._exec)
        app.router.add_post(core + "/pods/{name}/exec", self._exec)
        app.router.add_route("*", "/{tail:.*}", self._unknown)

    # -- resources ------------------------------------------------------------------------------

    def _list(self, kind: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if request.query.get("watch") in ("1", "true"):
                raise ApiError(400, "BadRequest", "the fake apiserver does not implement watch")
            items = self.store.list(kind, request.match_info["ns"], request.query.get("labelSelector"),
                                    request.query.get("fieldSelector"))
            for item in items:
                item.pop("apiVersion", None)
                item.pop("kind", None)
            return web.json_response({"apiVersion": KINDS[kind][2], "kind": f"{kind}List",
                                      "metadata": {"resourceVersion": self.store.resource_version},
                                      "items": items})
        return handler

    def _get(self, kind: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(self.store.get(kind, request.match_info["ns"], request.match_info["name"]))
        return handler

    def _create(self, kind: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            created = self.store.create(kind, request.match_info["ns"], request[BODY])
            return web.json_response(created, status=201)
        return handler

    def _replace(self, kind: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(self.store.replace(kind, request.match_info["ns"], request.match_info["name"],
                                                        request[BODY]))
        return handler

    def _patch(self, kind: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(self.store.patch(kind, request.match_info["ns"], request.match_info["name"],
                                                      request.content_type, request[BODY]))
        return handler

    def _delete(self, kind: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            namespace, name = request.match_info["ns"], request.match_info["name"]
            preconditions = (request[BODY] or {}).get("preconditions") or {}
            deleted = self.store.delete(kind, namespace, name, preconditions)
            if kind == "Deployment":  # background propagation: the garbage collector takes the Pods
                for pod in self.store.list("Pod", namespace):
                    if any(ref["uid"] == deleted["metadata"]["uid"]
                           for ref in pod["metadata"].get("ownerReferences") or []):
                        self.store.delete("Pod", namespace, pod["metadata"]["name"])
            if kind == "Pod":
                return web.json_response(deleted)
            group, plural, _ = KINDS[kind]
            details = {"name": name, "kind": plural, "uid": deleted["metadata"]["uid"]}
            if group:
                details["group"] = group
            return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                      "details": details})
        return handler

    async def _scale(self, request: web.Request) -> web.StreamResponse:
        """``autoscaling/v1`` Scale of a Deployment: writes go to ``spec.replicas``."""
        namespace, name = request.match_info["ns"], request.match_info["name"]
        deployment = self.store.get("Deployment", namespace, name)
        if request.method != "GET":
            scale = _scale_of(deployment)
            body = request[BODY]
            wanted = body if request.method == "PUT" else apply_patch(scale, request.content_type, body)
            replicas = (wanted.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                                               "must be greater than or equal to 0")
            precondition = (wanted.get("metadata") or {}).get("resourceVersion")
            patch: Obj = {"spec": {"replicas": replicas}}
            if precondition is not None:
                patch["metadata"] = {"resourceVersion": precondition}
            deployment = self.store.patch("Deployment", namespace, name, "application/merge-patch+json", patch)
        return web.json_response(_scale_of(deployment))

    # -- pods: logs and exec --------------------------------------------------------------------

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        for unsupported in ("follow", "timestamps", "sinceSeconds", "sinceTime", "limitBytes"):
            if request.query.get(unsupported) not in (None, "false", "False"):
                raise ApiError(400, "BadRequest", f"the fake apiserver does not implement log option {unsupported}")
        text = self.cluster.logs(request.match_info["ns"], request.match_info["name"], request.query.get("container"),
                                 previous=request.query.get("previous") in ("true", "True", "1"))
        tail = request.query.get("tailLines")
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) > 0 else ""
        return web.Response(text=text, content_type="text/plain")

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        command = request.query.getall("command", [])
        if not command:
            raise ApiError(400, "BadRequest", "you must specify at least 1 command")
        if request.query.get("stdin") in ("true", "True", "1") or request.query.get("tty") in ("true", "True", "1"):
            raise ApiError(400, "BadRequest", "the fake apiserver does not implement exec stdin or tty")
        env, cwd = self.cluster.exec_context(request.match_info["ns"], request.match_info["name"],
                                             request.query.get("container"))
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise ApiError(400, "BadRequest", "Upgrade request required")
        ws = web.WebSocketResponse(protocols=PROTOCOLS)
        await ws.prepare(request)
        if ws.ws_protocol is None:
            await ws.close(code=1002, message=b"no supported channel protocol offered")
            return ws
        await _run_exec(ws, command, env, cwd,
                        stdout=request.query.get("stdout") in ("true", "True", "1"),
                        stderr=request.query.get("stderr") in ("true", "True", "1"))
        return ws

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        raise ApiError(404, "NotFound", f"the fake apiserver does not serve {request.method} {request.path}")


def _scale_of(deployment: Obj) -> Obj:
    meta = deployment["metadata"]
    return {"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion",
                                                     "creationTimestamp")},
            "spec": {"replicas": deployment["spec"]["replicas"]},
            "status": {"replicas": (deployment.get("status") or {}).get("replicas", 0),
                       "selector": selector_string(deployment["spec"]["selector"])}}


def _status_response(error: ApiError) -> web.Response:
    body = error.status()
    validate_status(body)
    return web.json_response(body, status=error.code)


async def _run_exec(ws: web.WebSocketResponse, command: list[str], env: dict[str, str], cwd: Path, *,
                    stdout: bool, stderr: bool) -> None:
    """Run ``command`` and stream it: channel 1 stdout, 2 stderr, then the ``Status`` on channel 3."""
    try:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        message = (f'OCI runtime exec failed: exec failed: unable to start container process: exec: '
                   f'"{command[0]}": {exc.strerror}: unknown')
        await ws.send_bytes(b"\x03" + json.dumps({"metadata": {}, "status": "Failure", "message": message,
                                                  "reason": "InternalError",
                                                  "details": {"causes": [{"message": message}]}}).encode())
        await ws.close()
        return

    async def pump(stream: asyncio.StreamReader | None, channel: int, wanted: bool) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            if wanted:
                await ws.send_bytes(bytes([channel]) + chunk)

    async def watch_client() -> None:
        async for message in ws:
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    async def run() -> None:
        await asyncio.gather(pump(process.stdout, 1, stdout), pump(process.stderr, 2, stderr), process.wait())

    client = asyncio.create_task(watch_client())
    output = asyncio.create_task(run())
    done, _ = await asyncio.wait({client, output}, return_when=asyncio.FIRST_COMPLETED)
    if output not in done:  # the client went away: stop the command like a kubelet would
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.gather(output, return_exceptions=True)
        return
    client.cancel()
    with suppress(asyncio.CancelledError):
        await client
    code = process.returncode
    status: Obj = {"metadata": {}, "status": "Success"} if code == 0 else {
        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
        "message": f"command terminated with non-zero exit code: error executing command {command}, exit code {code}",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
    await ws.send_bytes(b"\x03" + json.dumps(status).encode())
    await ws.close()
