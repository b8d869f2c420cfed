"""Typed arguments: binding words to a command's declared arguments, and the errors people see."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hiclaw_bot.chat.arguments import (
    INT,
    NAME,
    PAIR,
    TEXT,
    Arg,
    Args,
    Choice,
    Integer,
    ListOf,
    UsageError,
    bind,
    flag,
    option,
    positional,
)
from hiclaw_bot.chat.grammar import Token, tokenize

SPEC = [
    positional("name", NAME),
    option("model", Choice("qwen-max", "gpt-4o")),
    option("replicas", Integer(0, 5), default=1),
    option("members", ListOf(NAME)),
    option("env", PAIR, many=True),
    flag("force"),
]


def words(line: str) -> list[Token]:
    tokens = tokenize(line)
    assert isinstance(tokens, list)
    return tokens


def values(spec: list[Arg], line: str) -> dict[str, Any]:
    return dict(bind(spec, words(line)).values)


def test_positionals_options_and_flags_in_any_order() -> None:
    assert values(SPEC, "--force alice --model=gpt-4o --env A=1 --members bob,carol --env B=x=y") == {
        "name": "alice", "model": "gpt-4o", "replicas": 1, "members": ["bob", "carol"],
        "env": {"A": "1", "B": "x=y"}, "force": True,
    }


def test_defaults_when_not_given() -> None:
    assert values(SPEC, "alice") == {"name": "alice", "model": None, "replicas": 1, "members": None, "env": {},
                                     "force": False}


def test_flag_with_explicit_value() -> None:
    assert values(SPEC, "alice --force=no")["force"] is False


def test_quoted_option_lookalike_is_a_value() -> None:
    spec = [positional("text", TEXT)]
    assert values(spec, '"--force"') == {"text": "--force"}


def test_greedy_positional_takes_the_rest() -> None:
    spec = [positional("first", NAME), positional("rest", NAME, many=True, required=False)]
    assert values(spec, "a b c") == {"first": "a", "rest": ["b", "c"]}
    assert values(spec, "a") == {"first": "a", "rest": []}


@pytest.mark.parametrize(("line", "message"), [
    ("", "missing NAME"),
    ("Alice", "NAME 'Alice': names use lowercase"),
    ("alice bob", "unexpected argument 'bob'"),
    ("alice --modle qwen-max", "unknown option --modle; did you mean --model?"),
    ("alice --model", "--model needs a value"),
    ("alice --model gpt4", "did you mean gpt-4o?"),
    ("alice --replicas 9", "must be at most 5"),
    ("alice --replicas many", "expected a whole number"),
    ("alice --model qwen-max --model gpt-4o", "--model is given twice"),
    ("alice --env novalue", "expected KEY=VALUE"),
    ("alice --members a,B", "names use lowercase"),
    ("alice --force=maybe", "expected true or false"),
])
def test_usage_errors_say_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(UsageError, match=None) as caught:
        bind(SPEC, words(line))
    assert message in str(caught.value)


def test_long_bad_values_are_shortened() -> None:
    with pytest.raises(UsageError) as caught:
        bind([positional("n", INT)], words("x" * 500))
    assert len(str(caught.value)) < 120


@pytest.mark.parametrize("name", ["a", "alice", "worker-1", "0x", "a" * 63])
def test_valid_names(name: str) -> None:
    assert NAME.convert(name) == name


@pytest.mark.parametrize("name", ["", "-a", "Alice", "a_b", "a.b", "a" * 64, "ünï", "a b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValueError, match="names use"):
        NAME.convert(name)


def test_integer_accepts_a_hash_prefix() -> None:
    assert INT.convert("#42") == 42


def test_usage_strings() -> None:
    assert [a.usage() for a in SPEC] == [
        "NAME", "[--model qwen-max|gpt-4o]", "[--replicas N]", "[--members NAME,…]", "[--env KEY=VALUE …]",
        "[--force]",
    ]


def test_typed_getters() -> None:
    args = Args({"n": 3, "s": "x", "none": None})
    assert args.get("n", int) == 3
    assert args.optional("none", str) is None
    with pytest.raises(TypeError):
        args.get("s", int)


@given(st.lists(st.text(max_size=12), max_size=6))
def test_binding_raises_nothing_but_usage_errors(texts: list[str]) -> None:
    try:
        bind(SPEC, [Token(t) for t in texts])
    except UsageError as exc:
        message = str(exc)
    else:
        message = "bound"
    assert message
