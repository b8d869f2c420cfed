"""The command grammar: which messages are commands, and how a command line splits into words.

A command is ``!noun verb args…`` at the start of a message, or the same after a mention of the bot,
because Team Leader agents address the bot by name in busy team rooms: ``@hiclaw-bot: !worker wake
alice``, ``HiClaw: !worker wake alice`` (the display-name form most clients type), or an HTML pill
``<a href="https://matrix.to/#/@hiclaw-bot:…">…</a>`` in ``formatted_body``. A reply's quoted
fallback (``> <@alice:…> …``) is dropped first, so answering a message with a command works.

Splitting is shell-like (``"two words"``, ``'single'``, ``\\"`` escapes, and the curly quotes phone
keyboards substitute), but unlike :func:`shlex.split` it never raises: a message is typed by a
person, and every mistake must come back as a usage answer, not as an exception. Everything after a
bare ``--`` is raw argv, split the same way but never read as options
(``!worker exec alice -- ls -la``).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

PREFIX = "!"

_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u201d": "\u201d", "\u2018": "\u2019", "\u2019": "\u2019",
           "\u201e": "\u201c"}
"""Opening quote → the character that closes it (phone keyboards type curly quotes)."""
_MATRIX_TO = "https://matrix.to/#/"
_SEPARATORS = ":,;"
MAX_MESSAGE_CHARS = 8 * 1024
"""A message body longer than this is never read as a command (the cap comes before any parsing).
A command line is short; a Matrix event can be 64 KiB, and every message in every room is looked at."""
MAX_WORDS = 256
"""A command line of more words than this is refused before it is split (counted by whitespace)."""
_SPECIAL = frozenset(_QUOTES) | {"\\"}
_PILL_SCAN = 4096
"""How much of ``formatted_body`` (after a reply's quote) may hold the leading pill."""


@dataclass(frozen=True)
class Token:
    """One word of a command line; ``quoted`` words are never read as ``--options``."""

    text: str
    quoted: bool = False


@dataclass(frozen=True)
class Invocation:
    """A command line split into words, plus the raw argv after ``--`` (None when there is no ``--``)."""

    text: str
    """The command line as typed, without the leading ``!`` (what a confirmation stores and re-runs)."""
    words: tuple[Token, ...]
    raw: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GrammarError:
    """The line could not be split; ``message`` says why, in words for the sender."""

    message: str
    text: str


@dataclass(frozen=True)
class BotIdentity:
    """How people may address the bot: its user id and display name."""

    user_id: str
    display_name: str | None = None

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]

    def names(self, extra: Iterable[str] = ()) -> list[str]:
        """Every spelling of a mention, longest first (so ``@bot:server`` wins over ``@bot``)."""
        found = {self.user_id, f"@{self.localpart}", self.localpart, *extra}
        if self.display_name:
            found.add(self.display_name)
        return sorted((n for n in found if n), key=len, reverse=True)


def strip_reply_fallback(body: str) -> str:
    """Drop the ``> quoted`` lines a client puts above the text of a reply."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith(">"):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    return "\n".join(lines[index:]).lstrip("\n")


def _pill_text(formatted_body: str | None, bot: BotIdentity) -> str | None:
    """The visible text of a leading pill that links to the bot, if the HTML starts with one."""
    if not formatted_body:
        return None
    pill = leading_pill(strip_mx_reply(formatted_body)[:_PILL_SCAN])
    if pill is None or unquote(pill[0]) != bot.user_id:
        return None
    return html.unescape(strip_tags(pill[1])).strip()


def leading_pill(fragment: str) -> tuple[str, str] | None:
    """``(target, inner HTML)`` of the ``<a href="https://matrix.to/#/TARGET…">…</a>`` that starts
    ``fragment``, or None.

    Written as single forward scans (``str.find``), not a regular expression: this runs on every
    message of every room, and the pattern it replaces backtracked quadratically on an unclosed tag.
    """
    text = fragment.lstrip()
    if text[:2].casefold() != "<a" or not text[2:3].isspace():
        return None
    close = text.find(">")
    if close < 0:
        return None
    tag = text[:close]
    at = tag.casefold().find("href=")
    if at < 0 or tag[at + 5:at + 6] not in ('"', "'"):
        return None
    start = at + 6
    ends = [i for i in (tag.find('"', start), tag.find("'", start)) if i >= 0]
    if not ends:
        return None
    href = tag[start:min(ends)]
    if not href.startswith(_MATRIX_TO):
        return None
    target = href[len(_MATRIX_TO):].split("?", 1)[0]
    if not target:
        return None
    end = text.casefold().find("</a>", close)
    if end < 0:
        return None
    return target, text[close + 1:end]


def strip_tags(fragment: str) -> str:
    """The text of an HTML fragment: every ``<…>`` dropped (an unclosed ``<`` keeps the rest), one pass."""
    out: list[str] = []
    index = 0
    while index < len(fragment):
        start = fragment.find("<", index)
        if start < 0:
            out.append(fragment[index:])
            break
        end = fragment.find(">", start)
        if end < 0:
            out.append(fragment[index:])
            break
        out.append(fragment[index:start])
        index = end + 1
    return "".join(out)


def strip_mx_reply(formatted_body: str) -> str:
    """Drop the ``<mx-reply>`` block of a reply's HTML."""
    end = formatted_body.find("</mx-reply>")
    return formatted_body[end + len("</mx-reply>"):] if end >= 0 else formatted_body


def command_text(body: str, bot: BotIdentity, formatted_body: str | None = None) -> str | None:
    """The command line (without ``!``) if the message is a command for the bot, else None.

    Only the first :data:`MAX_MESSAGE_CHARS` characters are looked at; the dispatcher refuses a
    command whose message is longer.
    """
    text = strip_reply_fallback(body[:MAX_MESSAGE_CHARS + 1]).lstrip()
    if text.startswith(PREFIX):
        return text[len(PREFIX):]
    pill = _pill_text(formatted_body, bot)
    lowered = text.casefold()
    for name in bot.names([pill] if pill else []):
        if not lowered.startswith(name.casefold()):
            continue
        rest = text[len(name):]
        if rest[:1] not in _SEPARATORS and not rest[:1].isspace():
            continue  # "hiclaw-bots" is not a mention of "hiclaw-bot"
        rest = rest.lstrip(_SEPARATORS).lstrip()
        if rest.startswith(PREFIX):
            return rest[len(PREFIX):]
        return None
    return None


def tokenize(text: str) -> list[Token] | GrammarError:
    """Split like a shell, without ever raising: an open quote is reported, a lone ``\\`` is kept."""
    if _SPECIAL.isdisjoint(text):  # no quotes, no escapes: whitespace alone splits (the common case)
        return [Token(word) for word in text.split()]
    tokens: list[Token] = []
    current: list[str] = []
    in_word = quoted = False
    closing: str | None = None
    index = 0
    while index < len(text):
        char = text[index]
        index += 1
        if closing is not None:
            if char == closing:
                closing = None
            elif char == "\\" and closing == '"' and index < len(text) and text[index] in '"\\':
                current.append(text[index])
                index += 1
            else:
                current.append(char)
        elif char.isspace():
            if in_word:
                tokens.append(Token("".join(current), quoted))
                current, in_word, quoted = [], False, False
        elif char in _QUOTES:
            closing, in_word, quoted = _QUOTES[char], True, True
        elif char == "\\" and index < len(text):
            current.append(text[index])
            index += 1
            in_word = True
        else:
            current.append(char)
            in_word = True
    if closing is not None:
        return GrammarError(f"a quote is not closed: add the missing {closing}", text)
    if in_word:
        tokens.append(Token("".join(current), quoted))
    return tokens


def parse(text: str) -> Invocation | GrammarError:
    """Split a command line (after the ``!``) into words and raw argv."""
    if len(text.split(maxsplit=MAX_WORDS)) > MAX_WORDS:
        return GrammarError(f"a command has at most {MAX_WORDS} words", text)
    tokens = tokenize(text)
    if isinstance(tokens, GrammarError):
        return tokens
    for position, token in enumerate(tokens):
        if token.text == "--" and not token.quoted:
            raw = tuple(t.text for t in tokens[position + 1:])
            return Invocation(text.strip(), tuple(tokens[:position]), raw)
    return Invocation(text.strip(), tuple(tokens))
