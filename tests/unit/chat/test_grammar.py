"""The grammar: which messages are commands for the bot, and how a line splits into words."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hiclaw_bot.chat.grammar import (
    BotIdentity,
    GrammarError,
    Invocation,
    Token,
    command_text,
    parse,
    strip_reply_fallback,
    tokenize,
)

BOT = BotIdentity("@hiclaw-bot:example.org", "HiClaw")
PILL = '<a href="https://matrix.to/#/@hiclaw-bot:example.org">{}</a>: !worker wake alice'


@pytest.mark.parametrize(("body", "expected"), [
    ("!help", "help"),
    ("  !worker wake alice", "worker wake alice"),
    ("@hiclaw-bot:example.org: !worker wake alice", "worker wake alice"),
    ("@hiclaw-bot: !worker wake alice", "worker wake alice"),
    ("hiclaw-bot, !worker wake alice", "worker wake alice"),
    ("HiClaw: !worker wake alice", "worker wake alice"),
    ("hiclaw !help", "help"),
    ("hiclaw: !help", "help"),  # display names are matched case-insensitively
    ("HiClaw:!op list", "op list"),
    ("> <@alice:example.org> earlier words\n> more\n\n!op list", "op list"),
    ("hello there", None),
    ("HiClaw: how are you?", None),
    ("hiclaw-bots: !help", None),
    ("@other:example.org: !help", None),
    ("", None),
])
def test_command_text(body: str, expected: str | None) -> None:
    assert command_text(body, BOT) == expected


def test_pill_mention_with_any_visible_text() -> None:
    body = "the bot: !worker wake alice"
    assert command_text(body, BOT, PILL.format("the bot")) == "worker wake alice"
    encoded = PILL.replace("@hiclaw-bot", "%40hiclaw-bot").format("the bot")
    assert command_text(body, BOT, encoded) == "worker wake alice"


def test_pill_to_someone_else_is_not_a_mention_of_the_bot() -> None:
    html = '<a href="https://matrix.to/#/@alice:example.org">Al</a>: !worker wake alice'
    assert command_text("Al: !worker wake alice", BOT, html) is None


def test_reply_fallback_is_dropped() -> None:
    assert strip_reply_fallback("> <@a:b> x\n> y\n\nhi") == "hi"
    assert strip_reply_fallback("no quote") == "no quote"


@pytest.mark.parametrize(("line", "words"), [
    ("worker create alice", ["worker", "create", "alice"]),
    ('worker update alice --env "A=two words"', ["worker", "update", "alice", "--env", "A=two words"]),
    ("say 'it''s'", ["say", "its"]),
    (r'say "a \"quoted\" word"', ["say", 'a "quoted" word']),
    (r"say a\ b", ["say", "a b"]),
    ("say \u201csmart quotes\u201d", ["say", "smart quotes"]),
    ('say ""', ["say", ""]),
    ("trailing\\", ["trailing\\"]),
    ("  spaced\t\nout  ", ["spaced", "out"]),
])
def test_tokenize(line: str, words: list[str]) -> None:
    tokens = tokenize(line)
    assert isinstance(tokens, list)
    assert [t.text for t in tokens] == words


def test_quoted_words_are_marked() -> None:
    assert tokenize('a "--b"') == [Token("a"), Token("--b", quoted=True)]


def test_an_open_quote_is_an_error_not_an_exception() -> None:
    result = tokenize('worker create "alice')
    assert isinstance(result, GrammarError)
    assert '"' in result.message


def test_raw_argv_after_double_dash() -> None:
    parsed = parse("worker exec alice -- ls -la --color")
    assert isinstance(parsed, Invocation)
    assert [w.text for w in parsed.words] == ["worker", "exec", "alice"]
    assert parsed.raw == ("ls", "-la", "--color")
    assert parse("op list").raw is None  # type: ignore[union-attr]
    quoted = parse('say "--" x')
    assert isinstance(quoted, Invocation)
    assert quoted.raw is None


@given(st.text())
def test_parsing_never_raises(line: str) -> None:
    result = parse(line)
    assert isinstance(result, Invocation | GrammarError)


@given(st.text(), st.one_of(st.none(), st.text()))
def test_finding_commands_never_raises(body: str, html: str | None) -> None:
    result = command_text(body, BOT, html)
    assert result is None or isinstance(result, str)


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1), max_size=6))
def test_quoting_round_trips(words: list[str]) -> None:
    line = " ".join('"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in words)
    tokens = tokenize(line)
    assert isinstance(tokens, list)
    assert [t.text for t in tokens] == words
