"""Which events ``hiclaw-bot say`` takes as the answer: the bot's marked replies, or, with
``--room``, a worker's reply to the message."""

from __future__ import annotations

from hiclaw_bot.chat.replies import REPLY_KEY
from hiclaw_bot.chat.say import _answer


def test_a_workers_reply_to_the_message_is_the_whole_answer() -> None:
    event = {"sender": "@lead:hs", "content": {"msgtype": "m.text", "body": "@bob:hs: hello",
                                                 "m.relates_to": {"m.in_reply_to": {"event_id": "$asked"}}}}
    answer = _answer("$reply", event, "$asked", set(), 0.0)
    assert answer is not None
    assert (answer.final, answer.sender, answer.text) == (True, "@lead:hs", "@bob:hs: hello")
    assert _answer("$reply", event, "$other", set(), 0.0) is None, "a reply to another message is not the answer"


def test_the_bots_progress_is_not_final() -> None:
    event = {"sender": "@bot:hs", "content": {"msgtype": "m.notice", "body": "⏳",
                                                REPLY_KEY: {"command": "$asked", "final": False}}}
    answer = _answer("$p", event, "$asked", set(), 0.0)
    assert answer is not None
    assert not answer.final
