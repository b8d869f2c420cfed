"""The pure parts of the human flows: the address parser, rooms by level, the send threshold."""

from __future__ import annotations

from email.headerregistry import Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hiclaw_bot.chat.arguments import ArgError
from hiclaw_bot.chat.humans import Email
from hiclaw_bot.clients.mail import MailOutcome
from hiclaw_bot.config import MailConfig
from hiclaw_bot.flows.human import InvalidEmail, mailer_from_config, parse_email
from hiclaw_bot.flows.human_steps import desired_rooms, send_threshold, talks_to, welcome_text
from storage import Team, Worker


@pytest.mark.parametrize("text", ["bob@example.org", "a.b+tag@mail.example.co", "x@localhost", "A_1@B-2.org"])
def test_plain_addresses_pass_unchanged(text: str) -> None:
    assert parse_email(text) == text


@pytest.mark.parametrize("text", [
    "", "bob", "@example.org", "bob@", "bob@@example.org", "a@b@c", "Bob <bob@example.org>", "bob@example.org,x@y",
    "bo b@example.org", '"b o"@example.org', "bob@[127.0.0.1]", "bob@exa_mple.org", "bob@-example.org",
    "bob@example..org", "bob.@example.org", "bob@example.org\n", "bob@example.org\r\nBcc: eve@evil.org",
    "bøb@example.org", "a" * 250 + "@example.org",
])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(InvalidEmail):
        parse_email(text)
    with pytest.raises(ArgError):
        Email().convert(text)


@given(st.text(max_size=80))
def test_what_passes_is_one_address_the_standard_parser_reads_back(text: str) -> None:
    try:
        parsed = parse_email(text)
    except InvalidEmail:
        return
    address = Address(addr_spec=parsed)
    assert address.addr_spec == parsed == text
    assert parsed.count("@") == 1
    assert not any(c.isspace() or c in ',<>"' for c in parsed)


@given(st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]@[a-z0-9]{1,10}(\.[a-z]{2,6}){1,2}", fullmatch=True))
def test_ordinary_addresses_are_accepted(text: str) -> None:
    if ".." in text.split("@")[0]:
        return
    assert parse_email(text) == text


def team(name: str, room: str | None) -> Team:
    return Team(name, f"{name}-lead", room, None, {}, "Active", None, 0.0, 0.0)


def worker(name: str, team_name: str | None, room: str | None) -> Worker:
    return Worker(name=name, team=team_name, role="worker", backend="process", image=None, model=None, spec={},
                  spec_hash=None, state="Running", previous_state=None, desired_state="Running",
                  observed_state=None, user_id=None, room_id=room, idle_timeout_s=None, last_active_at=None,
                  created_at=0.0, updated_at=0.0)


TEAMS = [team("red", "!red"), team("blue", "!blue"), team("new", None)]
WORKERS = [worker("r1", "red", "!r1"), worker("b1", "blue", "!b1"), worker("solo", None, "!solo"),
           worker("r2", "red", None)]


def test_rooms_by_level() -> None:
    assert desired_rooms("admin", [], TEAMS, WORKERS) == {
        "!red": False, "!blue": False, "!r1": False, "!b1": False, "!solo": False}
    assert desired_rooms("team", ["red"], TEAMS, WORKERS) == {"!red": False, "!r1": False}
    assert desired_rooms("viewer", ["red", "blue"], TEAMS, WORKERS) == {"!red": True, "!blue": True}
    assert desired_rooms("team", [], TEAMS, WORKERS) == {}, "a teamless worker is in nobody's team"
    assert desired_rooms("viewer", ["new"], TEAMS, WORKERS) == {}, "a team without a room yet grants nothing"


@pytest.mark.parametrize(("levels", "threshold"), [
    ({}, 0),
    ({"events_default": 0, "events": {"m.room.name": 50}}, 0),
    ({"events_default": 10, "events": {"m.reaction": 5}}, 5),
    ({"events_default": True, "events": {"m.x": "high"}}, 0),
])
def test_send_threshold_is_the_lowest_level_that_sends_anything(levels: dict[str, object], threshold: int) -> None:
    assert send_threshold(levels) == threshold


def test_welcome_text_says_whether_the_password_is_new() -> None:
    fresh = welcome_text("@bob:x", "https://matrix.x", "s3cret-pw", 2)
    assert "Password: s3cret-pw" in fresh
    assert "2 room(s)" in fresh
    adopted = welcome_text("@bob:x", "https://matrix.x", None, 0)
    assert "Password: unchanged" in adopted


async def test_mail_switched_off_sends_nothing() -> None:
    mailer = mailer_from_config(MailConfig())
    assert await mailer.send_welcome("bob@example.org", "hi", "text") is MailOutcome.DISABLED
    tls = mailer_from_config(MailConfig(enabled=True, host="smtp.example.org", port=465, security="tls"))
    assert getattr(tls, "security", None) == "ssl"


def test_per_worker_access_adds_rooms_for_a_team_human_only() -> None:
    assert desired_rooms("team", ["red"], TEAMS, WORKERS, ["solo"]) == {"!red": False, "!r1": False, "!solo": False}
    assert desired_rooms("viewer", [], TEAMS, WORKERS, ["solo"]) == {}, "a viewer talks to no worker"


def test_who_talks_to_a_worker() -> None:
    assert talks_to("admin", [], [], "solo", None)
    assert talks_to("team", ["red"], [], "r1", "red")
    assert not talks_to("team", ["red"], [], "b1", "blue"), "another team's worker"
    assert talks_to("team", [], ["b1"], "b1", "blue"), "named with --workers"
    assert not talks_to("team", ["red"], [], "solo", None), "a teamless worker is in nobody's team"
    assert not talks_to("viewer", ["red"], ["r1"], "r1", "red"), "viewers read only"
