"""Shared pieces of the chat unit tests: a config that is never contacted, and an outbox that records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from hiclaw_bot.chat.replies import JsonDict, SendFailed
from hiclaw_bot.config import Config

ADMIN = "@root:example.org"
BOT = "@hiclaw-bot:example.org"


def make_config(**matrix: Any) -> Config:
    return Config.model_validate({
        "matrix": {"homeserver": "http://127.0.0.1:9", "server_name": "example.org",
                   "bot": {"password": "not-used"}, "admins": [ADMIN],
                   "registration": {"mode": "token", "token": "not-used"}, **matrix},
        "storage": {"kind": "local", "directory": "objects"},
        "quotas": {"teams": {"red": {"max_workers": 3}}},
    })


@pytest.fixture
def config() -> Config:
    return make_config()


@dataclass
class Sent:
    room_id: str
    content: JsonDict
    txn_id: str
    event_id: str
    at: float


@dataclass
class RecordingOutbox:
    """Keeps every message; a send repeated with the same txn id returns the first event id (as Synapse does)."""

    now: Any = None
    sent: list[Sent] = field(default_factory=list)
    fail_next: int = 0

    async def send(self, room_id: str, content: JsonDict, *, txn_id: str) -> str:
        if self.fail_next:
            self.fail_next -= 1
            raise SendFailed("the network is down")
        for earlier in self.sent:
            if earlier.txn_id == txn_id:
                return earlier.event_id
        event_id = f"$sent{len(self.sent) + 1}"
        self.sent.append(Sent(room_id, content, txn_id, event_id, self.now() if self.now else 0.0))
        return event_id

    def bodies(self) -> list[str]:
        return [s.content["body"] for s in self.sent]


@pytest.fixture
def outbox() -> RecordingOutbox:
    return RecordingOutbox()
