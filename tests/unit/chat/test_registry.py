"""The registry: lookup, aliases and collisions, "did you mean", and the generated help."""

from __future__ import annotations

import pytest

from hiclaw_bot.chat import NAME, Permission, Registry, Reply, default_registry, positional
from hiclaw_bot.chat.command import TargetSpec
from hiclaw_bot.chat.context import CommandContext
from hiclaw_bot.chat.grammar import Token
from hiclaw_bot.chat.registry import Found, Unknown, unknown_reply


async def nothing(ctx: CommandContext) -> Reply | None:
    return None


def tokens(line: str) -> list[Token]:
    return [Token(w) for w in line.split()]


@pytest.fixture
def registry() -> Registry:
    registry = default_registry()
    registry.command("worker", "wake", summary="Start a sleeping worker", handler=nothing,
                     permission=Permission.OPERATE, args=[positional("name", NAME, "the worker")],
                     target=TargetSpec("worker", "name"), aliases=("worker up",))
    registry.command("gc", summary="Collect garbage", handler=nothing, permission=Permission.MANAGE)
    return registry


def test_two_word_commands_win_over_one_word(registry: Registry) -> None:
    found = registry.resolve(tokens("worker wake alice"))
    assert isinstance(found, Found)
    assert found.command.name == "worker wake"
    assert [w.text for w in found.words] == ["alice"]
    gc = registry.resolve(tokens("gc now"))
    assert isinstance(gc, Found)
    assert gc.command.name == "gc"


def test_aliases_and_case(registry: Registry) -> None:
    for line in ("worker up alice", "WORKER Wake alice", "h", "?", "ops", "op ls"):
        assert isinstance(registry.resolve(tokens(line)), Found), line


def test_permission_is_declared_at_registration(registry: Registry) -> None:
    command = registry.get("worker wake")
    assert command is not None
    assert command.permission is Permission.OPERATE
    custom = registry.command("frob", summary="?", handler=nothing, permission=Permission.MANAGE)
    assert custom.permission is Permission.MANAGE


def test_an_operation_kind_answers_to_the_command_its_words_name(registry: Registry) -> None:
    """``!op retry/abort`` need what the starting command needs: found from the kind, with no table."""
    starter = registry.starter("worker.wake")
    assert starter is not None
    assert starter.name == "worker wake"
    assert registry.starter("worker.repair") is None  # the bot's own: answered to as an admin's
    assert registry.starter("gc.sweep") is None


@pytest.mark.parametrize("phrase", ["worker wake", "worker up", "h", "op list"])
def test_collisions_are_refused(registry: Registry, phrase: str) -> None:
    noun, _, verb = phrase.partition(" ")
    with pytest.raises(ValueError, match="already"):
        registry.command(noun, verb or None, summary="dup", handler=nothing, permission=Permission.MEMBER)


def test_declaration_mistakes_are_refused(registry: Registry) -> None:
    with pytest.raises(ValueError, match="unique"):
        registry.command("a", "b", summary="", handler=nothing, permission=Permission.MEMBER,
                         args=[positional("x"), positional("x")])
    with pytest.raises(ValueError, match="last positional"):
        registry.command("a", "c", summary="", handler=nothing, permission=Permission.MEMBER,
                         args=[positional("x", many=True), positional("y")])
    with pytest.raises(ValueError, match="target"):
        registry.command("a", "d", summary="", handler=nothing, permission=Permission.MEMBER,
                         target=TargetSpec("worker", "name"))
    with pytest.raises(ValueError, match="one or two words"):
        registry.command("a", "e", summary="", handler=nothing, permission=Permission.MEMBER,
                         aliases=("x y z",))


def test_did_you_mean(registry: Registry) -> None:
    unknown = registry.resolve(tokens("worker wkae alice"))
    assert isinstance(unknown, Unknown)
    assert "worker wake" in unknown.suggestions
    assert "`!worker wake`" in unknown_reply(unknown).text
    typo = registry.resolve(tokens("hlep"))
    assert isinstance(typo, Unknown)
    assert "help" in typo.suggestions


def test_a_bare_noun_lists_its_commands(registry: Registry) -> None:
    unknown = registry.resolve(tokens("worker"))
    assert isinstance(unknown, Unknown)
    reply = unknown_reply(unknown)
    assert "!worker wake" in reply.text
    assert "needs a subcommand" in reply.text


def test_an_empty_command_gets_an_answer(registry: Registry) -> None:
    unknown = registry.resolve([])
    assert isinstance(unknown, Unknown)
    assert "!help" in unknown_reply(unknown).text


def test_overview_lists_every_command(registry: Registry) -> None:
    reply = registry.overview()
    for command in registry:
        assert f"!{command.name}" in reply.text
        assert command.summary in (reply.html or "")
    assert "<table>" in (reply.html or "")


def test_command_help(registry: Registry) -> None:
    command = registry.get("op abort")
    assert command is not None
    text = command.help().text
    assert "!op abort N" in text
    assert "confirm" in text
    assert "Who:" in text
    wake = registry.get("worker wake")
    assert wake is not None
    assert "Also: `!worker up`" in wake.help().text
    assert "NAME: the worker" in wake.help().text
