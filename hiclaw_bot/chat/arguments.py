"""Typed command arguments: what a command accepts, how words become values, how usage is shown.

A command declares its arguments once (``positional("name", NAME)``, ``option("model", TEXT)``,
``flag("force")``) and gets three things from that one declaration: binding of the words people type
(positionals by order, ``--opt value`` or ``--opt=value`` in any position, repeatable options),
checked values (a worker name is validated here, before any handler or external call sees it), and
the usage line of ``!help``. Handlers read values through :class:`Args`, whose getters are typed,
so a handler never sees a raw string where it expects an int.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hiclaw_bot.chat.grammar import Token

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})

T = TypeVar("T")


class ArgError(ValueError):
    """A word is not a valid value; the message completes "NAME 'x': …"."""


class UsageError(Exception):
    """The words do not fit the command; the message is for the sender."""


class ArgType:
    """How one word becomes a value; ``metavar`` names it in usage lines."""

    metavar = "TEXT"

    def convert(self, text: str) -> Any:
        return text


class Name(ArgType):
    """An identifier of a worker, team or human: ``^[a-z0-9][a-z0-9-]{0,62}$``."""

    metavar = "NAME"

    def convert(self, text: str) -> str:
        if not NAME_PATTERN.match(text):
            raise ArgError("names use lowercase letters, digits and '-', start with a letter or digit, "
                           "and have at most 63 characters")
        return text


@dataclass(frozen=True)
class Integer(ArgType):
    minimum: int | None = None
    maximum: int | None = None
    metavar: str = "N"

    def convert(self, text: str) -> int:
        try:
            value = int(text.strip().lstrip("#"))
        except ValueError:
            raise ArgError("expected a whole number") from None
        if self.minimum is not None and value < self.minimum:
            raise ArgError(f"must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ArgError(f"must be at most {self.maximum}")
        return value


class Choice(ArgType):
    def __init__(self, *choices: str) -> None:
        if not choices:
            raise ValueError("a Choice needs at least one choice")
        self.choices = choices
        self.metavar = "|".join(choices)

    def convert(self, text: str) -> str:
        if text in self.choices:
            return text
        close = difflib.get_close_matches(text, self.choices, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ArgError(f"expected one of {', '.join(self.choices)}{hint}")


class ListOf(ArgType):
    """A comma-separated list, ``a,b,c``; each item converted by ``item``."""

    def __init__(self, item: ArgType) -> None:
        self.item = item
        self.metavar = f"{item.metavar},…"

    def convert(self, text: str) -> list[Any]:
        return [self.item.convert(part.strip()) for part in text.split(",") if part.strip()]


class KeyValue(ArgType):
    """``KEY=VALUE``; repeated (``many=True``) they build a dict."""

    metavar = "KEY=VALUE"

    def convert(self, text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not _KEY_PATTERN.match(key):
            raise ArgError("expected KEY=VALUE, the key made of letters, digits, '_', '.' or '-'")
        return key, value


class Boolean(ArgType):
    metavar = "BOOL"

    def convert(self, text: str) -> bool:
        lowered = text.casefold()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ArgError("expected true or false")


TEXT = ArgType()
NAME = Name()
INT = Integer()
BOOL = Boolean()
PAIR = KeyValue()


@dataclass(frozen=True)
class Arg:
    """One argument of a command; build it with :func:`positional`, :func:`option` or :func:`flag`."""

    name: str
    type: ArgType = TEXT
    help: str = ""
    required: bool = False
    default: Any = None
    option: bool = False
    """Given as ``--name VALUE`` (or ``--name`` alone for a boolean flag) rather than by position."""
    many: bool = False
    """Positional: takes every remaining word. Option: may be repeated. Values gather in a list, or a
    dict for ``KEY=VALUE``."""

    @property
    def spelling(self) -> str:
        return f"--{self.name.replace('_', '-')}"

    @property
    def is_flag(self) -> bool:
        return self.option and isinstance(self.type, Boolean)

    def usage(self) -> str:
        if self.is_flag:
            text = self.spelling
        elif self.option:
            text = f"{self.spelling} {self.type.metavar}"
        else:
            text = self.type.metavar if self.type is not TEXT else self.name.upper()
        if self.many:
            text += " …"
        return text if self.required else f"[{text}]"

    def empty(self) -> Any:
        """The value when the argument is not given."""
        if self.is_flag:
            return bool(self.default)
        if self.many:
            return {} if isinstance(self.type, KeyValue) else []
        return self.default


def positional(name: str, type: ArgType = TEXT, help: str = "", *, required: bool = True,
               default: Any = None, many: bool = False) -> Arg:
    return Arg(name, type, help, required, default, option=False, many=many)


def option(name: str, type: ArgType = TEXT, help: str = "", *, required: bool = False,
           default: Any = None, many: bool = False) -> Arg:
    return Arg(name, type, help, required, default, option=True, many=many)


def flag(name: str, help: str = "") -> Arg:
    return Arg(name, BOOL, help, required=False, default=False, option=True)


@dataclass(frozen=True)
class Args:
    """Bound argument values, read with typed getters: ``args.get("count", int)``."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, kind: type[T]) -> T:
        """The value of ``key``, which must be present and of type ``kind``."""
        value = self.values[key]
        if not isinstance(value, kind):
            raise TypeError(f"argument {key} is {type(value).__name__}, not {kind.__name__}")
        return value

    def optional(self, key: str, kind: type[T]) -> T | None:
        """The value of ``key`` if it was given (None otherwise)."""
        value = self.values.get(key)
        return None if value is None else self.get(key, kind)


def bind(spec: Sequence[Arg], words: Sequence[Token]) -> Args:
    """Match typed words to the declared arguments; raise :class:`UsageError` saying what is wrong."""
    options = {arg.name.replace("_", "-"): arg for arg in spec if arg.option}
    positionals = [arg for arg in spec if not arg.option]
    given: dict[str, list[Any]] = {}
    loose: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.quoted or not word.text.startswith("--") or len(word.text) == 2:
            loose.append(word.text)
            continue
        spelled, has_value, value = word.text[2:].partition("=")
        arg = options.get(spelled)
        if arg is None:
            close = difflib.get_close_matches(spelled, list(options), n=1)
            hint = f"; did you mean --{close[0]}?" if close else ""
            raise UsageError(f"unknown option --{spelled}{hint}")
        if arg.name in given and not arg.many:
            raise UsageError(f"{arg.spelling} is given twice")
        if not has_value:
            if arg.is_flag:
                value = "true"
            elif index < len(words):
                value = words[index].text
                index += 1
            else:
                raise UsageError(f"{arg.spelling} needs a value ({arg.type.metavar})")
        given.setdefault(arg.name, []).append(_convert(arg, value))
    for arg in positionals:
        if not loose:
            break
        taken, loose = (loose, []) if arg.many else (loose[:1], loose[1:])
        given[arg.name] = [_convert(arg, text) for text in taken]
    if loose:
        raise UsageError(f"unexpected argument {loose[0]!r}")
    values: dict[str, Any] = {}
    for arg in spec:
        if arg.name not in given:
            if arg.required:
                raise UsageError(f"missing {arg.spelling if arg.option else arg.usage()}")
            values[arg.name] = arg.empty()
        elif not arg.many:
            values[arg.name] = given[arg.name][0]
        elif isinstance(arg.type, KeyValue):
            values[arg.name] = dict(given[arg.name])
        else:
            values[arg.name] = given[arg.name]
    return Args(values)


def _convert(arg: Arg, text: str) -> Any:
    try:
        return arg.type.convert(text)
    except ArgError as exc:
        label = arg.spelling if arg.option else arg.type.metavar
        shown = text if len(text) <= 40 else text[:37] + "…"
        raise UsageError(f"{label} {shown!r}: {exc}") from None
