"""Leader election on a ``coordination.k8s.io/v1`` Lease, so that only one replica of the bot acts.

The bot's state is one SQLite file, and SQLite wants one writer. With ``ha.enabled`` a process
first becomes the holder of a Lease and only then opens the database and starts the engine; a
second replica waits as a hot standby. When the holder stops renewing (killed, partitioned,
hung), the Lease expires and the standby takes over, resuming the operations the engine left
unfinished. When a holder loses the Lease it stops everything and the process exits non-zero,
so Kubernetes restarts it as a standby.

Why not ``kubernetes.aio.leaderelection`` (kubernetes 37.0.1): its leader measures the renew
deadline from the start of each round of attempts rather than from its last successful renewal,
and its API calls have no timeout, so one hung request keeps an old leader acting after the
Lease has expired for everyone else; its periods must be whole seconds of at least one; it
stamps local naive time with ``Z``; it logs a traceback for every lost race; and it never
releases the Lease on a clean shutdown, so every rollout waits a full lease duration. The loop
below is small, uses the same ``CoordinationV1Api`` calls, and keeps the safety argument checkable:

* every write is a ``replace`` guarded by the ``resourceVersion`` just read (or a ``create``),
  so of two candidates racing for an expired Lease exactly one wins (the other gets 409);
* a standby trusts no clock but its own: it takes over only when the Lease has not changed
  (same ``resourceVersion``) for ``lease_duration`` since it first saw that version;
* the leader counts ``renew_deadline`` from the moment it *sent* its last successful renewal,
  bounds every request by what is left of it, and gives up leadership when it runs out; as
  ``renew_deadline < lease_duration`` it stops acting before any standby may start;
* after giving up, whatever the work still does must finish within ``lease_duration -
  renew_deadline``; past that the process exits at once (the engine's checkpoints make a hard
  exit safe: it is the same as a crash, which the crash tests cover).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientError, web
from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException

from hiclaw_bot.config import HaConfig

log = logging.getLogger("hiclaw_bot.leadership")

EXIT_LEADERSHIP_LOST = 3
"""The process exit status after losing the Lease (``hiclaw-bot run`` and the overrun exit)."""


class LeadershipLost(Exception):
    """This process no longer holds the Lease: it must stop acting now."""


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    name: str
    identity: str
    lease_duration: float
    renew_deadline: float
    retry_period: float

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")


def default_identity() -> str:
    """``POD_NAME`` in a cluster (set from the downward API); elsewhere host and process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def _now() -> str:
    """A ``MicroTime`` for ``acquireTime``/``renewTime``: for people reading the Lease, not for us."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Acquire, renew and release one Lease for one identity.

    ``api`` is a ``CoordinationV1Api``; ``clock`` a monotonic clock (seconds), injectable for tests.
    """

    def __init__(self, api: Any, settings: LeaseSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.settings = settings
        self._clock = clock
        self._observed_version: str | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None  # when the last successful write was sent
        self.holder: str | None = None
        """The holder seen on the last read (``None``: nobody or unknown)."""

    @property
    def is_leader(self) -> bool:
        renewed = self._renewed_at
        return renewed is not None and self._clock() < renewed + self.settings.renew_deadline

    async def acquire(self) -> None:
        """Return once this identity holds the Lease; wait (as a standby) as long as it takes."""
        while True:
            if await self.try_acquire_or_renew():
                return
            await asyncio.sleep(self._jittered(self.settings.retry_period))

    async def hold(self) -> None:
        """Keep renewing; raise :class:`LeadershipLost` when the Lease is gone or cannot be renewed in time."""
        settings = self.settings
        while True:
            await asyncio.sleep(settings.retry_period)
            while True:
                remaining = self._deadline() - self._clock()
                if remaining <= 0:
                    raise LeadershipLost(f"could not renew lease {settings.name} within "
                                         f"{settings.renew_deadline:g} s")
                try:
                    renewed = await asyncio.wait_for(self.try_acquire_or_renew(), remaining)
                except TimeoutError:
                    continue  # the deadline check above ends it
                if renewed:
                    break
                if self.holder is not None and self.holder != settings.identity:
                    raise LeadershipLost(f"lease {settings.name} is now held by {self.holder}")
                await asyncio.sleep(min(settings.retry_period / 2, max(remaining, 0.0)))

    async def release(self) -> None:
        """Give the Lease up (on a clean stop), so a standby need not wait for it to expire."""
        if not self.is_leader:
            return
        self._renewed_at = None
        with contextlib.suppress(ApiException, TimeoutError, OSError, ClientError):
            lease = await self._read(self.settings.retry_period)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.settings.identity:
                return
            spec = {**lease["spec"], "leaseDurationSeconds": 1, "renewTime": _now()}
            spec.pop("holderIdentity", None)
            await self._replace({**lease, "spec": spec}, self.settings.retry_period)
            log.info("released lease %s", self.settings.name)

    async def try_acquire_or_renew(self) -> bool:
        """One attempt: read the Lease, and take or renew it if it is ours or has expired."""
        settings = self.settings
        sent_at = self._clock()
        timeout = settings.retry_period if self._renewed_at is None else max(self._deadline() - sent_at, 0.001)
        try:
            lease = await self._read(timeout)
            if lease is None:
                self.holder = None
                await self._create(self._spec(None, sent_at), timeout)
                return self._won(sent_at, transitioned=True)
            spec = lease.get("spec") or {}
            version = lease["metadata"]["resourceVersion"]
            if version != self._observed_version:
                self._observed_version, self._observed_at = version, sent_at
            holder = spec.get("holderIdentity") or None
            self.holder = holder
            ours = holder == settings.identity
            duration = spec.get("leaseDurationSeconds") or settings.lease_duration
            if holder is not None and not ours and sent_at < self._observed_at + duration:
                return False  # held by another, and not yet expired on our clock
            await self._replace({**lease, "spec": self._spec(spec if ours else {**spec, "acquireTime": None},
                                                             sent_at)}, timeout)
            return self._won(sent_at, transitioned=not ours)
        except ApiException as exc:
            if exc.status != 409:  # 409: another candidate wrote first; anything else: try again later
                log.warning("lease %s: %s %s", settings.name, exc.status, exc.reason)
            return False
        except (TimeoutError, OSError, ClientError) as exc:
            log.warning("lease %s: %s", settings.name, type(exc).__name__)
            return False

    # -- internals ------------------------------------------------------------------------------

    def _deadline(self) -> float:
        return (self._renewed_at if self._renewed_at is not None else self._clock()) + self.settings.renew_deadline

    def _won(self, sent_at: float, *, transitioned: bool) -> bool:
        if transitioned:
            log.info("%s now holds lease %s", self.settings.identity, self.settings.name)
        self._renewed_at = sent_at
        self.holder = self.settings.identity
        return True

    def _spec(self, current: dict[str, Any] | None, sent_at: float) -> dict[str, Any]:
        settings = self.settings
        current = current or {}
        taking_over = current.get("holderIdentity") != settings.identity
        now = _now()
        spec = {**current, "holderIdentity": settings.identity,
                "leaseDurationSeconds": math.ceil(settings.lease_duration), "renewTime": now,
                "acquireTime": current.get("acquireTime") or now,
                "leaseTransitions": (current.get("leaseTransitions") or 0) + (1 if taking_over and current else 0)}
        return {key: value for key, value in spec.items() if value is not None}

    async def _read(self, budget: float) -> dict[str, Any] | None:
        try:
            lease = await asyncio.wait_for(self.api.read_namespaced_lease(
                self.settings.name, self.settings.namespace, _request_timeout=budget), budget)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        plain: dict[str, Any] = self.api.api_client.sanitize_for_serialization(lease)
        return plain

    async def _create(self, spec: dict[str, Any], budget: float) -> None:
        body = client.V1Lease.model_validate({"metadata": {"name": self.settings.name}, "spec": spec})
        await asyncio.wait_for(self.api.create_namespaced_lease(self.settings.namespace, body,
                                                                _request_timeout=budget), budget)

    async def _replace(self, lease: dict[str, Any], budget: float) -> None:
        """PUT with the ``resourceVersion`` of the read: a concurrent writer makes this a 409."""
        body = client.V1Lease.model_validate(lease)
        await asyncio.wait_for(self.api.replace_namespaced_lease(
            self.settings.name, self.settings.namespace, body, _request_timeout=budget), budget)

    @staticmethod
    def _jittered(period: float) -> float:
        return period * (1 + 0.2 * random.random())  # spreading retries, not a secret


def _exit_now() -> None:
    """The last resort when work outlives the Lease: the process must not act beside a new leader."""
    log.critical("work did not stop before the lease could expire; exiting now")
    logging.shutdown()
    os._exit(EXIT_LEADERSHIP_LOST)


async def while_leading(elector: LeaseElector, work: Callable[[], Awaitable[None]], *,
                        standby_listen: str | None = None, on_overrun: Callable[[], None] = _exit_now) -> None:
    """Wait to lead (answering probes on ``standby_listen`` meanwhile), then run ``work`` while renewing.

    ``work`` returning (or raising) ends the leadership cleanly: the Lease is released. Losing
    the Lease cancels ``work``, waits at most ``lease_duration - renew_deadline`` for it to wind
    down (``on_overrun`` if it does not) and raises :class:`LeadershipLost`.
    """
    async with standby_probes(standby_listen):
        log.info("%s waits for lease %s/%s", elector.settings.identity, elector.settings.namespace,
                 elector.settings.name)
        await elector.acquire()
    job = asyncio.ensure_future(work())
    keeper = asyncio.ensure_future(elector.hold())
    try:
        await asyncio.wait({job, keeper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        job.cancel()
        keeper.cancel()
        await asyncio.gather(job, keeper, return_exceptions=True)
        await elector.release()
        raise
    if job.done():
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        await elector.release()
        job.result()
        return
    lost = keeper.exception() or LeadershipLost("the lease keeper stopped")
    log.error("leadership lost: %s; stopping", lost)
    job.cancel()
    settings = elector.settings
    _, pending = await asyncio.wait({job}, timeout=settings.lease_duration - settings.renew_deadline)
    if pending:
        on_overrun()
    raise lost if isinstance(lost, LeadershipLost) else LeadershipLost(str(lost))


@contextlib.asynccontextmanager
async def coordination_api(*, kubeconfig: str | None, context: str | None, in_cluster: bool) -> AsyncIterator[Any]:
    """A ``CoordinationV1Api`` on its own API client (the backend's may point at another cluster)."""
    configuration = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration)
    api_client = client.ApiClient(configuration=configuration)
    try:
        yield client.CoordinationV1Api(api_client)
    finally:
        await api_client.close()  # type: ignore[no-untyped-call]


@contextlib.asynccontextmanager
async def standby_probes(listen: str | None) -> AsyncIterator[None]:
    """While waiting to lead, answer the kubelet: alive (``/healthz`` 200) but not ready (``/readyz`` 503).

    Without it a standby would fail its liveness probe and be restarted forever. The port is
    freed before the bot starts, so the bot's own HTTP API can take it.
    """
    if listen is None:
        yield
        return

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "standby"})

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"status": "standby", "ready": False}, status=503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def serve_while_leading(ha: HaConfig, work: Callable[[], Awaitable[None]], *,
                              standby_listen: str | None) -> None:
    """``hiclaw-bot run`` with ``ha.enabled``: the bot (``work``) runs only while this process leads.

    Losing the Lease ends the process with :data:`EXIT_LEADERSHIP_LOST`, so that Kubernetes
    restarts it as a standby instead of leaving a former leader running.
    """
    settings = LeaseSettings(ha.namespace, ha.lease_name, ha.identity or default_identity(), ha.lease_duration,
                             ha.renew_deadline, ha.retry_period)
    async with coordination_api(kubeconfig=str(ha.kubeconfig) if ha.kubeconfig else None, context=ha.context,
                                in_cluster=ha.in_cluster) as api:
        try:
            await while_leading(LeaseElector(api, settings), work, standby_listen=standby_listen)
        except LeadershipLost:
            raise SystemExit(EXIT_LEADERSHIP_LOST) from None
