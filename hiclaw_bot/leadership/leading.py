"""Running the bot only while leading: wait (answering probes), work, stop in time once the Lease is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from hiclaw_bot.config import HaConfig
from hiclaw_bot.leadership import EXIT_LEADERSHIP_LOST, LeadershipLost
from hiclaw_bot.leadership.elector import LeaseElector, LeaseSettings, coordination_api, default_identity

log = logging.getLogger("hiclaw_bot.leadership")


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
    except asyncio.CancelledError:  # a clean stop (SIGTERM): keep renewing until the work has wound down
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
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

    Losing the Lease raises :class:`LeadershipLost`; ``hiclaw-bot run`` then exits with
    :data:`EXIT_LEADERSHIP_LOST`, so that Kubernetes restarts it as a standby.
    """
    settings = LeaseSettings(ha.namespace, ha.lease_name, ha.identity or default_identity(), ha.lease_duration,
                             ha.renew_deadline, ha.retry_period)
    async with coordination_api(kubeconfig=str(ha.kubeconfig) if ha.kubeconfig else None, context=ha.context,
                                in_cluster=ha.in_cluster) as api:
        await while_leading(LeaseElector(api, settings), work, standby_listen=standby_listen)
