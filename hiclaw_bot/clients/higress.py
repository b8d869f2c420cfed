"""Client for the Higress console: gateway consumers and their authorization on AI routes and MCP servers.

The console is not a plain CRUD API, and the HiClaw and AgentTeams clients lost updates by treating
it as one (``shared/reference/higress-console.md`` §1, §8). What this client does about it:

* **Create is an upsert.** ``POST /v1/consumers`` never answers "exists"; its 409 is a lost write on
  the shared WasmPlugin. So :meth:`HigressClient.ensure_consumer` always verifies with a GET.
* **Allow lists are replaced whole.** Authorizing means GET the AI route, edit
  ``authConfig.allowedConsumers``, PUT it back with the ``version`` read. Writers in this process
  are serialised per route, and the changes queued while a PUT is in flight are *batched* into the
  next one: 50 concurrent authorizations cost two PUTs, not fifty, and cannot overwrite each other.
* **A 409 may have been applied anyway** (console bug #744: the data-plane list is rewritten before
  the version check fails). So every 409 is followed by a fresh GET and another PUT until the console
  shows our list; giving up would leave the data plane in a stale writer's state.
* **The session cookie never expires by time**; a 401 means the password or the console's secret
  changed. The client logs in again once (initialising a fresh console first) and repeats the call.

Secrets (the console password, gateway keys) never reach a log line, an exception or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from hiclaw_bot.clients._higress_session import SYSTEM, ConsoleSession, HigressStats
from hiclaw_bot.clients.errors import (
    ConflictError,
    NotFoundError,
    TransientClientError,
)
from hiclaw_bot.timing import SYSTEM_CLOCK, Backoff, Clock

__all__ = ["AiRoute", "ConsumerInUseError", "HigressClient", "HigressStats", "Targets"]

logger = logging.getLogger(__name__)

Targets = Literal["all"] | Sequence[str]
"""Which AI routes or MCP servers a call applies to: every one the console lists, or these names."""


class ConsumerInUseError(ConflictError):
    """The console refuses to delete a consumer that an allow list still names: deauthorize first."""


@dataclass(frozen=True)
class AiRoute:
    """What the bot needs to know of an AI route."""

    name: str
    version: str | None
    auth_enabled: bool
    allowed_consumers: tuple[str, ...]
    models: tuple[str, ...] | None = None
    """The model names the route serves (``qwen-*`` for a prefix), or None when it serves any:
    from its ``modelPredicates`` and the names its upstreams' ``modelMapping`` maps."""


@dataclass
class _Change:
    consumer: str
    add: bool
    done: asyncio.Future[None]


class _RouteQueue:
    """The changes waiting for one AI route, and the lock that makes one writer at a time."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.pending: list[_Change] = []


class HigressClient(ConsoleSession):
    """An aiohttp client for one Higress console. Use as ``async with HigressClient(...) as gw``."""

    def __init__(self, url: str, username: str, password: str, *, timeout: float = 10.0,
                 max_attempts: int = 8, backoff: float = 0.05, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(url, username, password, timeout=timeout)
        self._max_attempts = max_attempts
        self._backoff = Backoff(first=backoff, cap=1.0, jitter=0.25)
        """Between two rounds of a write the console lost: short, the console answers at once."""
        self._clock = clock
        self._routes: dict[str, _RouteQueue] = {}

    # ---- consumers

    async def ensure_consumer(self, name: str, key: str) -> None:
        """Create or update consumer ``name`` with bearer ``key``, and verify that the console holds it."""
        body = {"name": name, "credentials": [{"type": "key-auth", "source": "BEARER", "values": [key]}]}
        for attempt in range(1, self._max_attempts + 1):
            # A 409 is a concurrent write to the shared WasmPlugin: ours may be lost, the GET decides.
            with contextlib.suppress(ConflictError):
                await self._call("POST", "/v1/consumers", payload=body, secrets=(key,))
            with contextlib.suppress(NotFoundError):
                if key in await self._consumer_keys(name):
                    return
            if attempt < self._max_attempts:
                self.stats.retries += 1
                await self._sleep(attempt)
        raise ConflictError(SYSTEM, f"consumer {name} does not hold its key after {self._max_attempts} writes")

    async def _consumer_keys(self, name: str) -> set[str]:
        data = await self._get_data(f"/v1/consumers/{quote(name, safe='')}")
        return {v for cred in data.get("credentials") or [] for v in cred.get("values") or []}

    async def delete_consumer(self, name: str) -> None:
        """Delete consumer ``name``; a missing one is success. Deauthorize it everywhere first."""
        try:
            await self._call("DELETE", f"/v1/consumers/{quote(name, safe='')}")
        except TransientClientError as exc:
            if exc.status == 500 and "still in use" in exc.message:
                raise ConsumerInUseError(SYSTEM, exc.message, status=500) from None
            raise
        logger.info("Higress consumer %s deleted", name)

    async def list_consumers(self) -> list[str]:
        return [c["name"] for c in await self._get_data("/v1/consumers") or []]

    # ---- AI routes

    async def list_ai_routes(self) -> list[AiRoute]:
        return [_ai_route(r) for r in await self._get_data("/v1/ai/routes") or []]

    async def route_allow_lists(self) -> dict[str, tuple[str, ...]]:
        """Every AI route's allowed consumers, as the console shows them (for the orphan sweep)."""
        return {r.name: r.allowed_consumers for r in await self.list_ai_routes()}

    async def authorize(self, consumer: str, routes: Targets = "all") -> list[str]:
        """Add ``consumer`` to the allow list of ``routes``; returns the route names."""
        names = await self._ai_route_names(routes)
        await _all(self._change(name, consumer, add=True) for name in names)
        logger.info("Higress consumer %s authorized on AI routes %s", consumer, names)
        return names

    async def deauthorize(self, consumer: str, routes: Targets = "all") -> list[str]:
        """Remove ``consumer`` from the allow list of ``routes``; a missing route counts as done."""
        names = await self._ai_route_names(routes)
        await _all(self._change(name, consumer, add=False) for name in names)
        logger.info("Higress consumer %s deauthorized on AI routes %s", consumer, names)
        return names

    async def served_models(self, routes: Targets = "all") -> list[str] | None:
        """The models ``routes`` serve together, sorted, or None when one of them serves any (or
        there is no such route: nothing to go by)."""
        wanted = _explicit(routes)
        found = [r for r in await self.list_ai_routes() if wanted is None or r.name in wanted]
        if not found:
            return None
        served: set[str] = set()
        for route in found:
            if route.models is None:
                return None
            served.update(route.models)
        return sorted(served)

    async def _ai_route_names(self, routes: Targets) -> list[str]:
        wanted = _explicit(routes)
        return [r.name for r in await self.list_ai_routes()] if wanted is None else wanted

    async def _change(self, route: str, consumer: str, *, add: bool) -> None:
        """Queue one change; whoever holds the route's lock next writes every queued change at once."""
        queue = self._routes.setdefault(route, _RouteQueue())
        change = _Change(consumer, add, asyncio.get_running_loop().create_future())
        queue.pending.append(change)
        try:
            async with queue.lock:
                if not change.done.done():
                    batch, queue.pending = queue.pending, []
                    await self._write_batch(route, queue, batch, change)
            await change.done
        except NotFoundError:
            if add:
                raise  # removing a consumer from a route that is gone is success
        except asyncio.CancelledError:
            change.done.cancel()
            if change in queue.pending:
                queue.pending.remove(change)
            raise

    async def _write_batch(self, route: str, queue: _RouteQueue, batch: list[_Change], own: _Change) -> None:
        others = [c for c in batch if c is not own]
        try:
            await self._write_route(route, batch)
        except asyncio.CancelledError:
            queue.pending.extend(c for c in others if not c.done.done())  # the next lock holder writes them
            raise
        except BaseException as exc:
            for change in others:
                if not change.done.done():
                    change.done.set_exception(exc)
            raise
        for change in batch:
            if not change.done.done():
                change.done.set_result(None)

    async def _write_route(self, route: str, batch: list[_Change]) -> None:
        """GET, edit the allow list, PUT with the version read; on 409 or a lost answer, start over."""
        path = f"/v1/ai/routes/{quote(route, safe='')}"
        for attempt in range(1, self._max_attempts + 1):
            try:
                data = await self._get_data(path)
                auth = data.setdefault("authConfig", {})
                current = list(auth.get("allowedConsumers") or [])
                desired = _edited(current, batch)
                if desired == current:
                    return
                auth["allowedConsumers"] = desired
                if not auth.get("enabled"):
                    logger.warning("AI route %s has key-auth disabled: its allow list has no effect", route)
                self.stats.puts += 1
                written = _ai_route(await self._call("PUT", path, payload=data)).allowed_consumers
                if _edited(written, batch) == list(written):  # every queued change is in what was stored
                    return
            except ConflictError:
                self.stats.conflicts += 1  # perhaps applied to the data plane already (#744): write again
            except TransientClientError:
                if attempt == self._max_attempts:
                    raise
            if attempt < self._max_attempts:
                self.stats.retries += 1
                await self._sleep(attempt)
        raise ConflictError(SYSTEM, f"AI route {route}: still conflicting after {self._max_attempts} writes",
                            status=409)

    # ---- MCP servers

    async def list_mcp_servers(self) -> list[str]:
        return [s["name"] for s in await self._get_data("/v1/mcpServer") or []]

    async def mcp_allow_lists(self, servers: Targets = "all") -> dict[str, tuple[str, ...]]:
        """The consumers allowed on each MCP server (the list endpoint omits them; this asks per server)."""
        names = await self._mcp_names(servers)
        result: dict[str, tuple[str, ...]] = {}
        for name in names:
            items = await self._get_data("/v1/mcpServer/consumers", params={"mcpServerName": name}) or []
            result[name] = tuple(i["consumerName"] for i in items)
        return result

    async def authorize_mcp(self, consumer: str, servers: Targets = "all") -> list[str]:
        """Allow ``consumer`` on MCP ``servers`` (the console merges: no version, no lost update)."""
        names = await self._mcp_names(servers)
        for name in names:
            body = {"mcpServerName": name, "consumers": [consumer]}
            await self._call("PUT", "/v1/mcpServer/consumers", payload=body)
        logger.info("Higress consumer %s authorized on MCP servers %s", consumer, names)
        return names

    async def deauthorize_mcp(self, consumer: str, servers: Targets = "all") -> list[str]:
        """Remove ``consumer`` from MCP ``servers``; servers that no longer exist are skipped."""
        existing = await self.list_mcp_servers()
        wanted = _explicit(servers)
        names = [n for n in existing if wanted is None or n in wanted]
        for name in names:
            body = {"mcpServerName": name, "consumers": [consumer]}
            await self._call("DELETE", "/v1/mcpServer/consumers", payload=body)
        logger.info("Higress consumer %s deauthorized on MCP servers %s", consumer, names)
        return names

    async def _mcp_names(self, servers: Targets) -> list[str]:
        existing = await self.list_mcp_servers()
        wanted = _explicit(servers)
        if wanted is None:
            return existing
        missing = sorted(set(wanted) - set(existing))
        if missing:
            raise NotFoundError(SYSTEM, f"MCP servers not found: {', '.join(missing)}", status=404)
        return wanted

    # ---- pacing

    async def _sleep(self, attempt: int) -> None:
        await self._clock.sleep(self._backoff.delay(attempt))


async def _all(calls: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the calls concurrently and let each finish; then raise the first failure, unwrapped."""
    for result in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def _explicit(targets: Targets) -> list[str] | None:
    """``None`` for "all", else the names (a lone name string is refused, not split into letters)."""
    if isinstance(targets, str):
        if targets != "all":
            raise TypeError(f"targets must be 'all' or a sequence of names, not {targets!r}")
        return None
    return list(targets)


def _edited(current: Sequence[str], batch: Sequence[_Change]) -> list[str]:
    """``current`` with the batch applied in order; adds keep the list's order and never duplicate."""
    result = list(current)
    for change in batch:
        if change.add and change.consumer not in result:
            result.append(change.consumer)
        elif not change.add and change.consumer in result:
            result.remove(change.consumer)
    return result


def _ai_route(data: Any) -> AiRoute:
    auth = (data.get("authConfig") if isinstance(data, dict) else None) or {}
    return AiRoute(name=data["name"], version=data.get("version"), auth_enabled=bool(auth.get("enabled")),
                   allowed_consumers=tuple(auth.get("allowedConsumers") or ()), models=_route_models(data))


def _route_models(data: Any) -> tuple[str, ...] | None:
    """What a route's ``modelPredicates`` (EXACT: a name, PRE: a prefix) and its upstreams'
    ``modelMapping`` keys (``*`` maps any name) say it serves; None when nothing narrows it (or a
    predicate we cannot read, such as a REGEX the console refuses anyway, leaves it open)."""
    names: set[str] = set()
    for predicate in data.get("modelPredicates") or []:
        value, kind = str(predicate.get("matchValue") or ""), predicate.get("matchType")
        if not value or kind not in ("EXACT", "PRE"):
            return None
        names.add(value if kind == "EXACT" else f"{value}*")
    if names:
        return tuple(sorted(names))  # the predicates decide which requests reach the route at all
    for upstream in data.get("upstreams") or []:
        mapping = upstream.get("modelMapping") or {}
        if not mapping or "*" in mapping:
            return None
        names.update(str(key) for key in mapping)
    return tuple(sorted(names)) or None
