"""Clients for the external systems: one module per system, no business logic.

Each client raises the error tree of :mod:`hiclaw_bot.clients.errors`; the engine classifies
those errors (retry, fail, or "already gone") by their ``transient`` and ``not_found`` flags
without importing this package.
"""
