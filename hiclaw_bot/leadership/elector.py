"""The Lease elector: acquire, renew and release one ``coordination.k8s.io/v1`` Lease.

The safety argument is in the package docstring (:mod:`hiclaw_bot.leadership`).
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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientError
from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException

from hiclaw_bot.leadership import LeadershipLost

log = logging.getLogger("hiclaw_bot.leadership")


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

    ``api`` is a ``CoordinationV1Api``. Every duration is measured on this process's monotonic
    clock; the times written into the Lease are only for people reading it.
    """

    def __init__(self, api: Any, settings: LeaseSettings) -> None:
        self.api = api
        self.settings = settings
        self._clock = time.monotonic
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
        # A leader's budget is what is left before its deadline; a candidate's, a whole renew_deadline.
        timeout = max(self._deadline() - sent_at, 0.001)
        try:
            lease = await self._read(timeout)
            if lease is None:
                self.holder = None
                await self._create(self._spec(None), timeout)
                return self._won(sent_at, transitioned=True)
            spec = lease.get("spec") or {}
            version = lease["metadata"]["resourceVersion"]
            if version != self._observed_version:  # counted from when the answer came: the later, the safer
                self._observed_version, self._observed_at = version, self._clock()
            holder = spec.get("holderIdentity") or None
            self.holder = holder
            ours = holder == settings.identity
            duration = spec.get("leaseDurationSeconds") or settings.lease_duration
            if holder is not None and not ours and self._clock() < self._observed_at + duration:
                return False  # held by another, and not yet expired on our clock
            await self._replace({**lease, "spec": self._spec(spec if ours else {**spec, "acquireTime": None})},
                                timeout)
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

    def _spec(self, current: dict[str, Any] | None) -> dict[str, Any]:
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
