"""Whose Matrix account a worker name maps to: a worker only ever gets an account this bot registered.

A worker ``alice`` logs in as ``@alice:<server>``, and the account step takes an existing account
back (a password reset) when our password no longer opens it. That is how a deleted worker comes
back; without a guard it is also how a chat user would take over the bot's own account, an admin's,
a human's, or anyone's registered outside the bot. Two checks close it:

* :func:`refusal`, before any call (chat, API, team create): the name is refused when it is the bot,
  an admin, a human we manage, or an account that exists on the homeserver and is not ours.
* :func:`registered_by_us`, inside the account step, before a reset: the engine writes an
  ``intended`` ledger row before every ``do()``, so a row's mere presence proves nothing. A row
  proves we made the account only when a finished account step filled in its ``external_id``,
  under this worker's subject.
"""

from __future__ import annotations

from hiclaw_bot.flows import names
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import UserId
from storage import Store

ACCOUNT = "matrix_user"


def worker_subject(worker: str) -> str:
    return f"worker:{worker}"


def reserved(services: Services, user_id: UserId) -> str | None:
    """Why ``user_id`` may never be a worker's account (the bot's own, an admin's), else None."""
    if user_id == services.bot_user_id:
        return f"{user_id} is the bot's own account"
    if user_id in services.config.matrix.admins:
        return f"{user_id} is an admin's account"
    return None


async def registered_by_us(store: Store, worker: str, user_id: UserId) -> bool:
    """Whether our ledger shows a finished account step that made ``user_id`` for ``worker``.

    ``intended`` alone (written before the call) is not proof; the ``external_id`` is set only when
    the step's result was committed, and kept through later ``intended``/``deleted`` moves.
    """
    row = await store.ledger.get(ACCOUNT, user_id)
    return row is not None and row.external_id == user_id and row.owner == worker_subject(worker)


async def managed_human(store: Store, user_id: UserId) -> bool:
    return await store.humans.by_user_id(user_id) is not None


async def refusal(services: Services, store: Store, worker: str) -> str | None:
    """Why ``worker`` may not be created (its account is not ours to use), in words; None when it may.

    Asks the homeserver (Synapse admin API) whether the account exists; a server that will not say
    leaves the decision to the account step's own check.
    """
    user_id = names.user_id(worker, services.domain)
    why = reserved(services, user_id)
    if why is None and await managed_human(store, user_id):
        why = f"{user_id} belongs to a human this bot manages"
    if why is None and not await registered_by_us(store, worker, user_id) \
            and await services.matrix.user_exists(user_id):
        why = f"{user_id} is an existing account this bot did not register"
    if why is None:
        return None
    return f"the worker name `{worker}` cannot be used: {why}; choose another name"
