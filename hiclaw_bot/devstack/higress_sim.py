"""An honest stand-in for the Higress console, served over real HTTP on 127.0.0.1.

No Higress image can be pulled here, yet the gateway client must be tested against the console's
real behaviour, not against an idealised API. So this simulator reproduces what the console's Java
source does (``shared/reference/higress-console.md``): cookie and Basic auth, the GET envelope,
``POST`` → 201 raw, ``PUT`` → 200 raw, ``DELETE`` → 204, a GET of a missing object → 404 with an
empty body, upserting consumers and providers, optimistic ``version`` on AI routes, and the open
console bug #744 (a stale AI-route PUT answers 409 *after* rewriting the data-plane allow list).

To keep it from drifting into invented behaviour, every request and every response is validated
against the console's OpenAPI document (with the documented errata applied in memory, the file stays
verbatim). A mismatch answers 500, is logged, and lands in :attr:`HigressConsoleSimulator.violations`,
which tests assert empty.

Allow lists live apart from the route objects, as they do in the console (in the key-auth WasmPlugin
instances): that is the *data plane* :meth:`HigressConsoleSimulator.is_authorized` answers from, and
the one that #744 corrupts. Fault knobs (:meth:`HigressConsoleSimulator.inject`) fail, delay, or
apply-then-fail the N-th call of a (method, path); a request log records what every call carried,
with secrets redacted.

The data plane a worker's model calls reach (``/v1/chat/completions`` behind key-auth) is served
apart, as Higress serves it on its gateway port: :attr:`HigressConsoleSimulator.models`, at
:attr:`HigressConsoleSimulator.gateway_url`, answering from the allow lists kept here.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.response.exceptions import MissingData

from hiclaw_bot.devstack.model_gateway import ModelGateway
from hiclaw_bot.devstack.service import Service, listen

__all__ = [
    "DEFAULT_AI_ROUTES",
    "DEFAULT_PROVIDERS",
    "SPEC_ENV",
    "Fault",
    "HigressConsoleSimulator",
    "LoggedRequest",
    "SpecDriftError",
    "SpecViolation",
    "find_spec",
    "load_spec",
]

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
SPEC_ENV = "HICLAW_HIGRESS_OPENAPI"
"""Environment variable naming the console's OpenAPI document, when it is not found beside the repo."""
_SPEC_RELATIVE = Path("shared") / "higress" / "higress-console-openapi.json"
_SPEC_SERVER = "http://localhost:8080"  # the document's `servers` entry; requests are matched against it
COOKIE = "_hi_sess"

_EXC = {
    400: "com.alibaba.higress.sdk.exception.ValidationException",
    401: "com.alibaba.higress.console.controller.exception.AuthException",
    409: "com.alibaba.higress.sdk.exception.ResourceConflictException",
    502: "com.alibaba.higress.sdk.exception.NotFoundException",
}
_BUSINESS = "com.alibaba.higress.sdk.exception.BusinessException"
_ILLEGAL_ARGUMENT = "java.lang.IllegalArgumentException"
_ILLEGAL_STATE = "java.lang.IllegalStateException"
_NPE = "java.lang.NullPointerException"
_REDACTED_FIELDS = frozenset({"password", "values", "tokens", "oldPassword", "newPassword"})


# --------------------------------------------------------------------------------------------
# The OpenAPI document and its errata


class SpecDriftError(RuntimeError):
    """An erratum no longer applies: the OpenAPI document changed and the errata need a review."""


def find_spec() -> Path:
    """Locate the console's OpenAPI document: ``$HICLAW_HIGRESS_OPENAPI``, else ``shared/`` beside the repo."""
    if env := os.environ.get(SPEC_ENV):
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (candidate := parent / _SPEC_RELATIVE).is_file():
            return candidate
    raise FileNotFoundError(f"the Higress console OpenAPI document was not found; set {SPEC_ENV}")


def _walk(node: Any) -> Iterator[JSON]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _operations(spec: JSON) -> Iterator[tuple[str, str, JSON]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


_ENVELOPE = {"type": "object", "properties": {"success": {"type": "boolean"}, "message": {"type": "string"}}}


def _json_content(schema: JSON) -> JSON:
    return {"application/json": {"schema": schema}}


def _erratum_info_version(spec: JSON) -> bool:
    """1. ``info.version`` is required by OAS 3.0 and missing."""
    if "version" in spec["info"]:
        return False
    spec["info"]["version"] = "unknown"
    return True


def _erratum_plugin_phase(spec: JSON) -> bool:
    """2. ``WasmPlugin.phase`` references ``PluginPhase``, which is not defined."""
    schemas = spec["components"]["schemas"]
    if "PluginPhase" in schemas:
        return False
    schemas["PluginPhase"] = {"type": "string"}
    return True


def _erratum_credential_cycle(spec: JSON) -> bool:
    """3. ``Credential.oneOf: [KeyAuthCredential]`` plus ``KeyAuthCredential.allOf: [Credential]`` recurse."""
    return spec["components"]["schemas"]["Credential"].pop("oneOf", None) is not None


def _erratum_consumer_credentials(spec: JSON) -> bool:
    """4. ``oneOf[Credential, KeyAuthCredential]`` matches every valid credential twice, so all fail."""
    items = spec["components"]["schemas"]["Consumer"]["properties"]["credentials"]
    if "oneOf" not in items["items"]:
        return False
    items["items"] = {"$ref": "#/components/schemas/KeyAuthCredential"}
    return True


def _erratum_any_map(spec: JSON) -> bool:
    """5. Java ``Map<String, Object>`` became ``additionalProperties: {type: object}``; values are any JSON."""
    changed = False
    for node in _walk(spec):
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("type") == "object" and not {"properties", "$ref"} & extra.keys():
            node["additionalProperties"] = {}
            changed = True
    return changed


def _erratum_media_type(spec: JSON) -> bool:
    """6. Responses are declared under ``*/*``, so their JSON bodies are never parsed; they are JSON."""
    changed = False
    for _, _, operation in _operations(spec):
        for response in operation.get("responses", {}).values():
            content = response.get("content", {})
            if "*/*" in content:
                content["application/json"] = content.pop("*/*")
                changed = True
    return changed


def _erratum_real_statuses(spec: JSON) -> bool:
    """7. Statuses the real server sends but the document omits (higress-console.md §3, §5).

    401 on every call but the anonymous init; 201 with the raw object on POST (login answers the ``User``);
    409 on a consumer POST (a WasmPlugin write race); 502 on the detail GET of a missing MCP server;
    400 on ``GET /v1/mcpServer/consumers`` without ``mcpServerName`` (§4.4).
    """
    for path, method, operation in _operations(spec):
        responses = operation.setdefault("responses", {})
        if path != "/system/init":  # login answers 401 on a wrong password, the rest when logged out
            responses.setdefault("401", {"description": "Login required.", "content": _json_content(_ENVELOPE)})
        if method == "post":
            raw: JSON = {"type": "object"}
            if path == "/session/login":
                raw = {"$ref": "#/components/schemas/User"}
            elif path != "/system/init" and "requestBody" in operation:
                raw = operation["requestBody"]["content"]["application/json"]["schema"]
            responses.setdefault("201", {"description": "Created (raw object).", "content": _json_content(raw)})
    posts = spec["paths"]["/v1/consumers"]["post"]["responses"]
    mcp_get = spec["paths"]["/v1/mcpServer/{name}"]["get"]["responses"]
    mcp_consumers = spec["paths"]["/v1/mcpServer/consumers"]["get"]["responses"]
    if "409" in posts or "502" in mcp_get or "400" in mcp_consumers:
        return False
    posts["409"] = {"description": "Concurrent write.", "content": _json_content(_ENVELOPE)}
    mcp_get["502"] = {"description": "Not found.", "content": _json_content(_ENVELOPE)}
    mcp_consumers["400"] = {"description": "mcpServerName missing.", "content": _json_content(_ENVELOPE)}
    return True


def _erratum_raw_put(spec: JSON) -> bool:
    """8. ``PUT`` answers 200 with the raw object, not the envelope the document declares (§3).

    Without this the envelope schema (no required fields, open properties) would accept any body.
    ``PUT /system/higress-config`` does return an envelope; ``PUT /v1/mcpServer/consumers`` is a 204.
    """
    changed = False
    for path, method, operation in _operations(spec):
        if method != "put" or path == "/system/higress-config" or "200" not in operation["responses"]:
            continue
        raw = _json_content(operation["requestBody"]["content"]["application/json"]["schema"])
        if operation["responses"]["200"].get("content") != raw:
            operation["responses"]["200"]["content"] = raw
            changed = True
    return changed


ERRATA: tuple[Callable[[JSON], bool], ...] = (
    _erratum_info_version,
    _erratum_plugin_phase,
    _erratum_credential_cycle,
    _erratum_consumer_credentials,
    _erratum_any_map,
    _erratum_media_type,
    _erratum_real_statuses,
    _erratum_raw_put,
)
"""Patches that make the verbatim document load in openapi-core and describe the real server.

Each must change something: one that finds nothing to fix raises :class:`SpecDriftError`, so an
updated document is reviewed rather than silently double-patched.
"""


def load_spec(path: Path | None = None) -> JSON:
    """Read the verbatim OpenAPI document and apply :data:`ERRATA` in memory."""
    spec: JSON = json.loads((path or find_spec()).read_text(encoding="utf-8"))
    for erratum in ERRATA:
        if not erratum(spec):
            raise SpecDriftError(f"erratum {erratum.__name__} no longer applies to the OpenAPI document")
    return spec


@functools.lru_cache(maxsize=4)
def _openapi(path: Path) -> OpenAPI:
    """Parse the document once per process: every simulator validates against the same one."""
    return OpenAPI.from_dict(load_spec(path))


@dataclass
class _SpecRequest:
    """The request as openapi-core sees it, matched against the document's own server URL."""

    method: str
    path: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters
    host_url: str = _SPEC_SERVER


@dataclass(frozen=True)
class _SpecResponse:
    status_code: int
    content_type: str
    headers: Mapping[str, Any]
    data: bytes | None


# --------------------------------------------------------------------------------------------
# Records and knobs for tests


@dataclass(frozen=True)
class SpecViolation:
    """A request or response that the OpenAPI document (with errata) does not allow."""

    direction: str
    method: str
    path: str
    status: int | None
    detail: str


@dataclass
class Fault:
    """Answer the ``nth`` next call of (``method``, ``path``) with ``status`` and/or after ``delay`` s.

    With ``apply`` the call is executed first, then answered with ``status`` (or delayed): the
    client sees a failure although the write happened.
    """

    method: str
    path: str
    nth: int = 1
    status: int | None = None
    delay: float = 0.0
    apply: bool = False


@dataclass(frozen=True)
class LoggedRequest:
    """One call as the simulator saw it. Passwords, keys and tokens are redacted."""

    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    status: int
    fault: bool = False


class _ConsoleError(Exception):
    """An exception the console maps to an HTTP status with the error envelope."""

    def __init__(self, status: int, message: str, exception: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.exception = exception or _EXC.get(status, _BUSINESS)


def _error_response(status: int, exception: str, message: str) -> web.Response:
    return web.json_response({"success": False, "message": f"{exception}: {message}"}, status=status)


def _clean(value: Any) -> Any:
    """Drop ``None`` recursively: the schemas declare nothing nullable (nulls from Jackson are inferred)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _clean_object(value: JSON) -> JSON:
    cleaned: JSON = _clean(value)
    return cleaned


def _secrets_in(raw: bytes) -> set[str]:
    """The strings under secret-bearing fields of a JSON body, to scrub them from messages."""
    found: set[str] = set()

    def collect(value: Any, secret: bool) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                collect(v, secret or k in _REDACTED_FIELDS)
        elif isinstance(value, list):
            for v in value:
                collect(v, secret)
        elif secret and isinstance(value, str) and value:
            found.add(value)

    with contextlib.suppress(ValueError):
        collect(json.loads(raw), False)
    return found


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if k in _REDACTED_FIELDS else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# The simulator

DEFAULT_PROVIDERS: tuple[JSON, ...] = (
    {"name": "default", "type": "openai", "protocol": "openai/v1", "tokens": ["sk-simulated"]},
)
DEFAULT_AI_ROUTES: tuple[JSON, ...] = (
    {
        "name": "default",
        "domains": [],
        "pathPredicate": {"matchType": "PRE", "matchValue": "/", "caseSensitive": False},
        "upstreams": [{"provider": "default", "weight": 100, "modelMapping": {}}],
        "authConfig": {"enabled": True, "allowedCredentialTypes": ["key-auth"], "allowedConsumers": []},
    },
)

SIM_MODELS = ("qwen-max", "qwen-plus", "qwen-turbo")
"""The models the data plane lists; the echo model answers for any name."""

Handler = Callable[[web.Request, Any], Awaitable[web.Response]]


class HigressConsoleSimulator(Service):
    """The Higress console on ``127.0.0.1:<random port>``: ``async with HigressConsoleSimulator() as sim``.

    ``initialized=False`` mimics a fresh console, on which ``/system/init`` must precede a login;
    with ``initialized=True`` the admin is ``username``/``password`` (a random password by default,
    readable as :attr:`password`).
    Seeds (``providers``, ``ai_routes``, ``mcp_servers``) are console objects as the API shows them;
    AI routes and MCP servers may carry an allow list, which seeds the data plane.
    ``stale_put_applies`` keeps the console bug #744 (default) or gives a clean 409.
    """

    def __init__(
        self,
        *,
        username: str = "admin",
        password: str | None = None,
        initialized: bool = False,
        providers: Sequence[JSON] = DEFAULT_PROVIDERS,
        ai_routes: Sequence[JSON] = DEFAULT_AI_ROUTES,
        mcp_servers: Sequence[JSON] = (),
        stale_put_applies: bool = True,
        spec_path: Path | None = None,
    ) -> None:
        self._api = _openapi(spec_path or find_spec())
        self.username = username
        self.password = password or secrets.token_urlsafe(16)
        self._admin: tuple[str, str] | None = (username, self.password) if initialized else None
        self._session_key = secrets.token_bytes(32)
        self.stale_put_applies = stale_put_applies
        self._rv = 1000
        self.providers: dict[str, JSON] = {p["name"]: copy.deepcopy(p) for p in providers}
        self.consumers: dict[str, JSON] = {}
        self.ai_routes: dict[str, JSON] = {}
        self.route_allow: dict[str, list[str]] = {}
        self.mcp_servers: dict[str, JSON] = {}
        self.mcp_allow: dict[str, list[str]] = {}
        self.mcp_auth_enabled: dict[str, bool] = {}
        for route in ai_routes:
            self._store_route(copy.deepcopy(route))
        for server in mcp_servers:
            self._store_mcp(copy.deepcopy(server))
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.requests: list[LoggedRequest] = []
        self.violations: list[SpecViolation] = []
        self._faults: list[Fault] = []
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.models = ModelGateway(self._data_plane_consumer, lambda: SIM_MODELS)
        """The data plane: a worker's model calls, key-auth against the allow lists kept here."""

    def __repr__(self) -> str:
        return f"HigressConsoleSimulator(url={self.url!r})"

    @property
    def gateway_url(self) -> str:
        """The data plane's URL: ``gateway.gateway_url`` in the bot's config."""
        return self.models.url

    # ---- lifecycle

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app.router)
        self._runner, self.url = await listen(app)
        logger.info("Higress console simulator listening on %s", self.url)
        await self.models.start()

    async def stop(self) -> None:
        await self.models.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- knobs and views for tests

    def inject(self, method: str, path: str, *, nth: int = 1, status: int | None = None,
               delay: float = 0.0, apply: bool = False) -> None:
        """Fault the ``nth`` next call of ``method path`` (see :class:`Fault`)."""
        self._faults.append(Fault(method.upper(), path, nth, status, delay, apply))

    def count(self, method: str, path: str) -> int:
        """How many calls of ``method path`` arrived so far."""
        return self.calls[(method.upper(), path)]

    def expire_sessions(self) -> None:
        """Invalidate every issued cookie, as re-creating the console's secret does."""
        self._session_key = secrets.token_bytes(32)

    def is_authorized(self, key: str | None, *, ai_route: str | None = None, mcp_server: str | None = None) -> bool:
        """Would the data plane let a request with ``Authorization: Bearer <key>`` through?"""
        if ai_route is not None:
            route = self.ai_routes.get(ai_route)
            if route is None:
                return False
            enabled = bool((route.get("authConfig") or {}).get("enabled"))
            allowed = self.route_allow.get(ai_route, [])
        elif mcp_server is not None:
            if mcp_server not in self.mcp_servers:
                return False
            enabled = self.mcp_auth_enabled[mcp_server]
            allowed = self.mcp_allow.get(mcp_server, [])
        else:
            raise ValueError("name an ai_route or an mcp_server")
        if not enabled:
            return True
        owner = next((name for name, c in self.consumers.items() if key in _credential_values(c)), None)
        return owner is not None and owner in allowed

    def _data_plane_consumer(self, key: str | None, path: str) -> tuple[str | None, bool]:
        """The consumer owning a data-plane request's key, and whether key-auth lets it through:
        the first AI route whose path prefix matches decides, as the gateway matches routes."""
        owner = next((c for c, body in self.consumers.items() if key in _credential_values(body)), None)
        for name, route in self.ai_routes.items():
            predicate = route.get("pathPredicate") or {}
            if predicate.get("matchType", "PRE") == "PRE" and path.startswith(predicate.get("matchValue") or "/"):
                return owner, self.is_authorized(key, ai_route=name)
        return owner, False

    # ---- plumbing

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        add = self._wrap
        router.add_post("/system/init", add(self._init))
        router.add_post("/session/login", add(self._login))
        router.add_get("/v1/consumers", add(self._list_consumers))
        router.add_post("/v1/consumers", add(self._post_consumer))
        router.add_get("/v1/consumers/{name}", add(self._get_consumer))
        router.add_put("/v1/consumers/{name}", add(self._put_consumer))
        router.add_delete("/v1/consumers/{name}", add(self._delete_consumer))
        router.add_get("/v1/ai/routes", add(self._list_routes))
        router.add_post("/v1/ai/routes", add(self._post_route))
        router.add_get("/v1/ai/routes/{name}", add(self._get_route))
        router.add_put("/v1/ai/routes/{name}", add(self._put_route))
        router.add_delete("/v1/ai/routes/{name}", add(self._delete_route))
        router.add_get("/v1/ai/providers", add(self._list_providers))
        router.add_post("/v1/ai/providers", add(self._post_provider))
        router.add_get("/v1/ai/providers/{name}", add(self._get_provider))
        router.add_put("/v1/ai/providers/{name}", add(self._put_provider))
        router.add_delete("/v1/ai/providers/{name}", add(self._delete_provider))
        router.add_get("/v1/mcpServer", add(self._list_mcp))
        router.add_put("/v1/mcpServer", add(self._put_mcp))
        router.add_get("/v1/mcpServer/consumers", add(self._list_mcp_consumers))
        router.add_put("/v1/mcpServer/consumers", add(self._add_mcp_consumers))
        router.add_delete("/v1/mcpServer/consumers", add(self._remove_mcp_consumers))
        router.add_get("/v1/mcpServer/{name}", add(self._get_mcp))
        router.add_delete("/v1/mcpServer/{name}", add(self._delete_mcp))

    def _wrap(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Check auth, parse the JSON body, and map console exceptions to the error envelope."""

        async def endpoint(request: web.Request) -> web.Response:
            try:
                if handler not in (self._init, self._login) and not self._authenticated(request):
                    raise _ConsoleError(401, "Login required.")
                raw = await request.read()
                body = json.loads(raw) if raw else None
                return await handler(request, body)
            except _ConsoleError as exc:
                return _error_response(exc.status, exc.exception, str(exc))

        return endpoint

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        raw = await request.read()
        key = (request.method, request.path)
        self.calls[key] += 1
        fault = self._take_fault(key)
        spec_request = _SpecRequest(
            method=request.method.lower(), path=request.path, body=raw or None,
            content_type=request.content_type,
            parameters=RequestParameters(query=request.query, header=request.headers, cookie=request.cookies),
        )
        errors = [str(e) for e in self._api.iter_request_errors(spec_request)]
        if errors:
            return self._violation("request", request, None, "; ".join(errors), raw)
        if fault is not None and not fault.apply:
            await asyncio.sleep(fault.delay)
            if fault.status is not None:
                return self._fault_response(request, raw, fault.status)
        try:
            response = await handler(request)
        except web.HTTPException:  # no route or no such method here: the document has it, we do not
            return self._violation("request", request, None, "the simulator does not implement this call", raw)
        assert isinstance(response, web.Response)
        detail = self._response_errors(spec_request, response)
        if detail:
            return self._violation("response", request, response.status, detail, raw)
        if fault is not None:
            await asyncio.sleep(fault.delay)
            if fault.status is not None:
                return self._fault_response(request, raw, fault.status)
        self._log(request, raw, response.status)
        return response

    def _response_errors(self, spec_request: _SpecRequest, response: web.Response) -> str:
        body = response.body if isinstance(response.body, bytes) else b""
        spec_response = _SpecResponse(response.status, response.content_type or "", response.headers, body)
        errors = []
        for error in self._api.iter_response_errors(spec_request, spec_response):
            # The real console answers 404 and 204 with no body although the document declares one.
            if isinstance(error, MissingData) and not body and response.status in (204, 404):
                continue
            errors.append(str(error))
        return "; ".join(errors)

    def _take_fault(self, key: tuple[str, str]) -> Fault | None:
        for fault in self._faults:
            if (fault.method, fault.path) == key:
                fault.nth -= 1
                if fault.nth == 0:
                    self._faults.remove(fault)
                    return fault
        return None

    def _fault_response(self, request: web.Request, raw: bytes, status: int) -> web.Response:
        self._log(request, raw, status, fault=True)
        return _error_response(status, _EXC.get(status, _BUSINESS), "injected fault")

    def _violation(self, direction: str, request: web.Request, status: int | None, detail: str,
                   raw: bytes) -> web.Response:
        for secret in _secrets_in(raw):  # validation messages quote the offending body
            detail = detail.replace(repr(secret), "'***'").replace(json.dumps(secret), '"***"')
        violation = SpecViolation(direction, request.method, request.path, status, detail)
        self.violations.append(violation)
        logger.error("Higress simulator: OpenAPI violation: %s", violation)
        self._log(request, raw, 500)
        return _error_response(500, _ILLEGAL_STATE, f"simulator: {direction} rejected, see the violation log")

    def _log(self, request: web.Request, raw: bytes, status: int, *, fault: bool = False) -> None:
        try:
            body = _redact(json.loads(raw)) if raw else None
        except ValueError:
            body = "<not JSON>"
        self.requests.append(LoggedRequest(request.method, request.path, dict(request.query), body, status, fault))

    def _next_version(self) -> str:
        self._rv += 1
        return str(self._rv)

    # ---- session

    def _token(self, username: str, password: str) -> str:
        digest = hmac.new(self._session_key, f"{username}\x01{password}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _authenticated(self, request: web.Request) -> bool:
        if self._admin is None:
            return False
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and hmac.compare_digest(cookie, self._token(*self._admin)):
            return True
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            parts = base64.b64decode(encoded).decode().split(":")
        except ValueError:
            return False
        return len(parts) == 2 and (parts[0], parts[1]) == self._admin

    async def _init(self, request: web.Request, body: Any) -> web.Response:
        user = (body or {}).get("adminUser") or {}
        if not all(user.get(k) for k in ("name", "displayName", "password")):
            raise _ConsoleError(400, "Incomplete adminUser object.")
        if self._admin is not None:
            raise _ConsoleError(500, "System already initialized.", _ILLEGAL_STATE)
        self._admin = (user["name"], user["password"])
        return web.json_response({"name": user["name"], "displayName": user["displayName"]}, status=201)

    async def _login(self, request: web.Request, body: Any) -> web.Response:
        username, password = (body or {}).get("username"), (body or {}).get("password")
        if not username or not password:
            raise _ConsoleError(400, "Missing user name or password.")
        if self._admin != (username, password):
            raise _ConsoleError(401, "Incorrect username or password")
        response = web.json_response({"name": username, "displayName": username}, status=201)
        max_age = 2592000 if body.get("autoLogin") else None
        response.set_cookie(COOKIE, self._token(username, password), path="/", httponly=True, max_age=max_age)
        return response

    # ---- consumers (all live in one key-auth WasmPlugin: no version, create is an upsert)

    async def _list_consumers(self, request: web.Request, body: Any) -> web.Response:
        return _list_envelope(list(self.consumers.values()))

    async def _get_consumer(self, request: web.Request, body: Any) -> web.Response:
        return _one_envelope(self.consumers.get(request.match_info["name"]))

    async def _post_consumer(self, request: web.Request, body: Any) -> web.Response:
        return web.json_response(self._upsert_consumer(body, creating=True), status=201)

    async def _put_consumer(self, request: web.Request, body: Any) -> web.Response:
        name = request.match_info["name"]
        if body.get("name") and body["name"] != name:
            raise _ConsoleError(400, "Consumer name in the URL doesn't match the one in the body.")
        body["name"] = name
        return web.json_response(self._upsert_consumer(body, creating=False))

    def _upsert_consumer(self, body: JSON, *, creating: bool) -> JSON:
        name = body.get("name")
        if not name or not name.strip():
            raise _ConsoleError(400, "name cannot be blank.")
        credentials = body.get("credentials") or []
        if not credentials:
            raise _ConsoleError(400, "credentials cannot be empty.")
        old = {c["type"]: c for c in self.consumers.get(name, {}).get("credentials", [])}
        merged = []
        for cred in credentials:
            if cred.get("type") != "key-auth":
                continue
            previous = old.get("key-auth", {})
            source = cred.get("source") or previous.get("source")
            if not source:
                raise _ConsoleError(400, "source cannot be blank.")
            key = cred.get("key") or previous.get("key")
            if source in ("HEADER", "QUERY") and not key:
                raise _ConsoleError(400, "key cannot be blank.")
            values = cred.get("values") or []
            if creating and not values:
                raise _ConsoleError(400, "value cannot be blank.")
            values = values or previous.get("values", [])
            for other_name, other in self.consumers.items():
                if other_name != name and set(values) & _credential_values(other):
                    raise _ConsoleError(500, f"Key auth credential already in use by consumer: {other_name}",
                                        _ILLEGAL_ARGUMENT)
            merged.append({"type": "key-auth", "source": source, "key": key if source != "BEARER" else None,
                           "values": list(values)})
        if not merged:
            self.consumers.pop(name, None)
            return {"name": name, "credentials": []}
        self.consumers[name] = {"name": name, "credentials": merged}
        return _clean_object(self.consumers[name])

    async def _delete_consumer(self, request: web.Request, body: Any) -> web.Response:
        name = request.match_info["name"]
        if any(name in allowed for allowed in [*self.route_allow.values(), *self.mcp_allow.values()]):
            raise _ConsoleError(500, f"Consumer {name} is still in use", _BUSINESS)
        self.consumers.pop(name, None)
        return web.Response(status=204)

    # ---- AI routes (one ConfigMap each: `version` is its resourceVersion)

    def _store_route(self, route: JSON) -> JSON:
        self._validate_route(route)
        route["version"] = self._next_version()
        self.ai_routes[route["name"]] = route
        self.route_allow[route["name"]] = list((route.get("authConfig") or {}).get("allowedConsumers") or [])
        return route

    def _validate_route(self, route: JSON) -> None:
        if not (route.get("name") or "").strip():
            raise _ConsoleError(400, "name cannot be blank.")
        upstreams = route.get("upstreams") or []
        if not upstreams:
            raise _ConsoleError(400, "upstreams cannot be empty.")
        if any(not u.get("provider") for u in upstreams):
            raise _ConsoleError(400, "upstream provider cannot be blank.")
        if len(upstreams) == 1:
            upstreams[0]["weight"] = 100
        elif any(u.get("weight") is None for u in upstreams):
            raise _ConsoleError(500, "weight", _NPE)
        elif sum(u["weight"] for u in upstreams) != 100:
            raise _ConsoleError(400, "The sum of upstream weights must be 100.")
        if (route.get("pathPredicate") or {}).get("matchType") not in (None, "PRE"):
            raise _ConsoleError(400, "Unknown matchType")
        if any(p.get("matchType") not in (None, "PRE", "EXACT") for p in route.get("modelPredicates") or []):
            raise _ConsoleError(400, "Unknown matchType")
        for upstream in upstreams:
            if upstream["provider"] not in self.providers:
                raise _ConsoleError(400, f"Unknown provider: {upstream['provider']}")

    def _replace_route_allow(self, name: str, route: JSON) -> None:
        """Write the data-plane allow list (REPLACE): the console does this before the ConfigMap."""
        self.route_allow[name] = list((route.get("authConfig") or {}).get("allowedConsumers") or [])

    async def _list_routes(self, request: web.Request, body: Any) -> web.Response:
        return _list_envelope(list(self.ai_routes.values()))

    async def _get_route(self, request: web.Request, body: Any) -> web.Response:
        return _one_envelope(self.ai_routes.get(request.match_info["name"]))

    async def _post_route(self, request: web.Request, body: Any) -> web.Response:
        self._validate_route(body)
        if body["name"] in self.ai_routes:
            # The internal Ingress and its allow list are rewritten before createConfigMap fails.
            self._replace_route_allow(body["name"], body)
            raise _ConsoleError(409, f"AI route {body['name']} already exists.")
        body.pop("version", None)
        return web.json_response(_clean(self._store_route(body)), status=201)

    async def _put_route(self, request: web.Request, body: Any) -> web.Response:
        name = request.match_info["name"]
        if body.get("name"):
            body["name"] = name  # the controller's inverted check: the URL name silently wins
        self._validate_route(body)
        current = self.ai_routes.get(name)
        if current is None:
            raise _ConsoleError(500, f"Failed to replace ConfigMap of AI route {name}: not found", _BUSINESS)
        stale = body.get("version") is not None and body["version"] != current["version"]
        if stale and not self.stale_put_applies:
            raise _ConsoleError(409, "The resource has been modified by someone else.")
        self._replace_route_allow(name, body)
        if stale:  # higress-console #744: the allow list is already rewritten when the 409 arrives
            raise _ConsoleError(409, "The resource has been modified by someone else.")
        body["version"] = self._next_version()
        self.ai_routes[name] = body
        return web.json_response(_clean(body))

    async def _delete_route(self, request: web.Request, body: Any) -> web.Response:
        name = request.match_info["name"]
        self.ai_routes.pop(name, None)
        self.route_allow.pop(name, None)
        return web.Response(status=204)

    # ---- LLM providers (one ai-proxy WasmPlugin: no version, create is an upsert)

    async def _list_providers(self, request: web.Request, body: Any) -> web.Response:
        return _list_envelope(list(self.providers.values()))

    async def _get_provider(self, request: web.Request, body: Any) -> web.Response:
        return _one_envelope(self.providers.get(request.match_info["name"]))

    async def _post_provider(self, request: web.Request, body: Any) -> web.Response:
        return web.json_response(self._upsert_provider(body), status=201)

    async def _put_provider(self, request: web.Request, body: Any) -> web.Response:
        if body.get("name"):
            body["name"] = request.match_info["name"]  # the same inverted check as for AI routes
        return web.json_response(self._upsert_provider(body))

    def _upsert_provider(self, body: JSON) -> JSON:
        name = body.get("name") or ""
        if not name.strip() or "/" in name:
            raise _ConsoleError(500, "Provider name is invalid.", _ILLEGAL_ARGUMENT)
        if not body.get("type"):
            raise _ConsoleError(500, "Provider type cannot be blank.", _ILLEGAL_ARGUMENT)
        body.setdefault("protocol", "openai/v1")
        self.providers[name] = body
        return _clean_object(body)

    async def _delete_provider(self, request: web.Request, body: Any) -> web.Response:
        self.providers.pop(request.match_info["name"], None)
        return web.Response(status=204)

    # ---- MCP servers (an internal Ingress each: no version; allow lists ADD/REMOVE/REPLACE)

    def _store_mcp(self, server: JSON) -> JSON:
        if not (server.get("name") or "").strip():
            raise _ConsoleError(400, "name cannot be blank.")
        name = server["name"]
        auth = server.pop("consumerAuthInfo", None)
        self.mcp_servers[name] = server
        if auth is not None:  # consumerAuthInfo REPLACEs the allow list; without it the list is kept
            self.mcp_auth_enabled[name] = bool(auth.get("enable"))
            self.mcp_allow[name] = list(auth.get("allowedConsumers") or [])
        else:
            self.mcp_auth_enabled.setdefault(name, False)
            self.mcp_allow.setdefault(name, [])
        return self._mcp_view(name, detail=True)

    def _mcp_view(self, name: str, *, detail: bool) -> JSON:
        server = dict(self.mcp_servers[name])
        if detail:  # the list endpoint builds servers from raw Ingresses, without the allow list
            server["consumerAuthInfo"] = {"type": "key-auth", "enable": self.mcp_auth_enabled[name],
                                          "allowedConsumers": list(self.mcp_allow[name])}
        return _clean_object(server)

    def _existing_mcp(self, name: str | None) -> str:
        if not name or name not in self.mcp_servers:
            raise _ConsoleError(500, f"MCP server {name} route not found.", _BUSINESS)
        return name

    async def _list_mcp(self, request: web.Request, body: Any) -> web.Response:
        wanted, kind = request.query.get("mcpServerName", ""), request.query.get("type")
        servers = [self._mcp_view(name, detail=False) for name, server in self.mcp_servers.items()
                   if wanted in name and (kind is None or server.get("type") == kind)]
        return _list_envelope(servers)

    async def _get_mcp(self, request: web.Request, body: Any) -> web.Response:
        name = request.match_info["name"]
        if name not in self.mcp_servers:
            raise _ConsoleError(502, f"McpServer {name} not found.")
        return web.json_response({"success": True, "data": self._mcp_view(name, detail=True)})

    async def _put_mcp(self, request: web.Request, body: Any) -> web.Response:
        return web.json_response(self._store_mcp(body))

    async def _delete_mcp(self, request: web.Request, body: Any) -> web.Response:
        name = request.match_info["name"]
        self.mcp_servers.pop(name, None)
        self.mcp_allow.pop(name, None)
        self.mcp_auth_enabled.pop(name, None)
        return web.Response(status=204)

    async def _list_mcp_consumers(self, request: web.Request, body: Any) -> web.Response:
        if not request.query.get("mcpServerName"):
            raise _ConsoleError(400, "mcpServerName cannot be blank.")
        name = self._existing_mcp(request.query["mcpServerName"])
        wanted = request.query.get("consumerName", "")
        items = [{"mcpServerName": f"mcp-server-{name}.internal", "consumerName": c}
                 for c in self.mcp_allow[name] if wanted in c]  # a substring match, as the console does
        return _list_envelope(items)

    async def _add_mcp_consumers(self, request: web.Request, body: Any) -> web.Response:
        name = self._existing_mcp(body.get("mcpServerName"))
        allowed = self.mcp_allow[name]
        allowed.extend(c for c in body.get("consumers") or [] if c not in allowed)
        return web.Response(status=204)

    async def _remove_mcp_consumers(self, request: web.Request, body: Any) -> web.Response:
        name = self._existing_mcp(body.get("mcpServerName"))
        gone = set(body.get("consumers") or [])
        self.mcp_allow[name] = [c for c in self.mcp_allow[name] if c not in gone]
        return web.Response(status=204)


def _credential_values(consumer: JSON) -> set[str]:
    return {v for cred in consumer.get("credentials", []) for v in cred.get("values") or []}


def _one_envelope(item: JSON | None) -> web.Response:
    if item is None:
        return web.Response(status=404)  # the real console: 404 with an empty body
    return web.json_response({"success": True, "data": _clean(item)})


def _list_envelope(items: list[JSON]) -> web.Response:
    return web.json_response({"success": True, "data": _clean(items), "total": len(items)})
