"""Message shapes: notices, threads and replies, edits, tables, durations."""

from __future__ import annotations

import pytest

from hiclaw_bot.chat.replies import (
    HTML_FORMAT,
    REPLY_KEY,
    Reply,
    code_spans,
    duration,
    edit,
    notice,
    relation_to,
    spoken_duration,
    table,
)


def test_reply_in_the_main_timeline_is_a_rich_reply() -> None:
    assert relation_to("$cmd", {"body": "!help"}) == {"m.in_reply_to": {"event_id": "$cmd"}}


def test_reply_to_a_command_in_a_thread_goes_to_the_threads_root() -> None:
    content = {"body": "!help", "m.relates_to": {"rel_type": "m.thread", "event_id": "$root",
                                                  "m.in_reply_to": {"event_id": "$other"}}}
    assert relation_to("$cmd", content) == {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
                                            "m.in_reply_to": {"event_id": "$cmd"}}


@pytest.mark.parametrize("rel_type", ["m.annotation", "m.reference", "m.replace"])
def test_an_event_with_another_relation_never_becomes_a_thread_root(rel_type: str) -> None:
    content = {"m.relates_to": {"rel_type": rel_type, "event_id": "$x"}}
    assert relation_to("$cmd", content) == {"m.in_reply_to": {"event_id": "$cmd"}}


def test_notice_content() -> None:
    content = notice(Reply("plain", "<b>html</b>"), command_event_id="$cmd", final=True,
                     relates_to={"m.in_reply_to": {"event_id": "$cmd"}})
    assert content == {
        "msgtype": "m.notice", "body": "plain", "format": HTML_FORMAT, "formatted_body": "<b>html</b>",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$cmd"}}, REPLY_KEY: {"command": "$cmd", "final": True},
    }
    assert "format" not in notice(Reply("x"), command_event_id=None, final=False)


def test_edit_replaces_the_original_without_relations_in_the_new_content() -> None:
    content = edit("$orig", Reply("new", "<p>new</p>"), command_event_id="$cmd")
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$orig"}
    assert content["body"] == "* new"
    assert content["formatted_body"] == "* <p>new</p>"
    assert content["msgtype"] == "m.notice"
    new = content["m.new_content"]
    assert new == {"msgtype": "m.notice", "body": "new", "format": HTML_FORMAT, "formatted_body": "<p>new</p>",
                   REPLY_KEY: {"command": "$cmd", "final": False}}


def test_table_plain_and_html() -> None:
    reply = table(["op", "state"], [["1", "running"], ["12", "<failed>"]], title="Ops:")
    assert reply.text == "Ops:\nop  state\n1   running\n12  <failed>"
    assert reply.html is not None
    assert "<th>op</th>" in reply.html
    assert "<td>&lt;failed&gt;</td>" in reply.html
    assert "<failed>" not in reply.html


def test_code_spans_escape_everything_else() -> None:
    assert code_spans("run `!op retry 3` <now>") == "run <code>!op retry 3</code> &lt;now&gt;"
    assert code_spans("odd ` tick") == "odd ` tick"
    assert Reply.of("a\nb").html == "a<br/>b"


@pytest.mark.parametrize(("seconds", "short", "spoken"), [
    (0.0123, "12 ms", "0 seconds"),
    (1, "1.0 s", "1 second"),
    (42.5, "42.5 s", "42 seconds"),
    (60, "1 min 0 s", "1 minute"),
    (725, "12 min 5 s", "12 minutes"),
    (7800, "2 h 10 min", "2 hours"),
    (200000, "55 h 33 min", "2 days"),
])
def test_durations(seconds: float, short: str, spoken: str) -> None:
    assert duration(seconds) == short
    assert spoken_duration(seconds) == spoken
