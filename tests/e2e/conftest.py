"""End-to-end fixtures: the chat test accounts and helpers, reused (the real worker image is
``tests/fixtures/worker_image.py``'s ``worker_image``)."""

from __future__ import annotations

from tests.integration.chat.conftest import setup

__all__ = ["setup"]
