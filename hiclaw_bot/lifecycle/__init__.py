"""Lifecycle automation: activity, idle auto-sleep, wake on mention and the drift reconciler.

Everything here acts through engine operations (``worker.sleep``, ``worker.wake``,
``worker.update``), so automation is as durable, serialised and auditable as a person's command.
The orphan sweep is a flow (:mod:`hiclaw_bot.flows.gc`) started by ``!gc``.
"""

from hiclaw_bot.lifecycle.idle import IdleSweep
from hiclaw_bot.lifecycle.reconcile import Finding, ReconcileReport, plan
from hiclaw_bot.lifecycle.rooms import SeenMessage
from hiclaw_bot.lifecycle.service import Lifecycle

__all__ = ["Finding", "IdleSweep", "Lifecycle", "ReconcileReport", "SeenMessage", "plan"]
