"""End-to-end fixtures: the chat test accounts and helpers, reused."""

from tests.integration.chat.conftest import setup

__all__ = ["setup"]
