"""The pure rules of the chat boundary: worker env names, API tokens, log tails, the pill parse."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from backends.envrules import denied_by
from backends.process_files import last_lines
from hiclaw_bot.chat.grammar import MAX_MESSAGE_CHARS, BotIdentity, command_text, leading_pill, strip_tags
from hiclaw_bot.config import ApiConfig, WorkerEnvConfig
from hiclaw_bot.flows.worker_env import refusal

RULES = WorkerEnvConfig()
BOT = BotIdentity("@hiclaw-bot:example.org", "HiClaw")


@pytest.mark.parametrize("name", [
    "PYTHONWARNINGS", "PYTHONPATH", "pythonstartup", "LD_PRELOAD", "LD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES",
    "NODE_OPTIONS", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "PERL5OPT", "PERL5LIB", "RUBYOPT",
    "BASH_ENV", "ENV", "ZDOTDIR", "PROMPT_COMMAND", "IFS", "SHELLOPTS", "BROWSER", "EDITOR", "VISUAL", "PAGER",
    "PATH", "HOME", "HICLAW_WORKER_NAME", "HICLAW_FS_DIR", "GIT_SSH_COMMAND", "GLIBC_TUNABLES", "LESSOPEN",
])
def test_the_env_rule_refuses_interpreter_loader_and_shell_variables(name: str) -> None:
    why = refusal({name: "x"}, RULES)
    assert why is not None
    assert f"`{name}`" in why


@pytest.mark.parametrize("name", ["GREETING", "OPENAI_BASE_URL", "MY_FEATURE_FLAG", "LOG_LEVEL", "TZ", "LANG"])
def test_the_env_rule_lets_ordinary_variables_through(name: str) -> None:
    assert refusal({name: "value"}, RULES) is None


@pytest.mark.parametrize(("env", "words"), [
    ({"1ABC": "x"}, "not a valid variable name"),
    ({"A-B": "x"}, "not a valid variable name"),
    ({"A B": "x"}, "not a valid variable name"),
    ({"BIG": "x" * (RULES.max_value_chars + 1)}, "at most"),
    ({"NUL": "a\x00b"}, "NUL"),
    ({f"V{i}": "x" for i in range(RULES.max_vars + 1)}, "at most"),
])
def test_the_env_rule_bounds_names_and_values(env: dict[str, str], words: str) -> None:
    why = refusal(env, RULES)
    assert why is not None
    assert words in why


def test_admins_extend_the_deny_list() -> None:
    rules = WorkerEnvConfig(deny=["SECRET_SAUCE", "CORP_*"])
    assert refusal({"SECRET_SAUCE": "x"}, rules) is not None
    assert refusal({"CORP_PROXY": "x"}, rules) is not None
    assert refusal({"CORPORATE": "x"}, rules) is None


def test_the_backend_list_leaves_our_own_variables_to_the_bot() -> None:
    assert denied_by("PYTHONWARNINGS") == "PYTHON*"
    assert denied_by("BROWSER") == "BROWSER"
    assert denied_by("HICLAW_WORKER_NAME") is None  # the bot sets these; only the bot's rule refuses them


@pytest.mark.parametrize("token", ["change-me", "CHANGE-ME", "please-changeme-now-0123456789abcdef", "short-token"])
def test_weak_api_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="token"):
        ApiConfig(token=token)


def test_a_strong_api_token_is_accepted() -> None:
    assert ApiConfig(token="0123456789abcdef0123456789abcdef").token is not None
    assert ApiConfig().token is None


def test_a_log_tail_reads_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert last_lines(log, 3) == "line 99997\nline 99998\nline 99999\n"
    assert last_lines(log, 1) == "line 99999\n"
    assert last_lines(tmp_path / "missing.log", 5) == ""
    short = tmp_path / "short.log"
    short.write_text("a\nb")
    assert last_lines(short, 10) == "a\nb"


def test_the_pill_parse_matches_what_clients_send() -> None:
    html = '<a href="https://matrix.to/#/@hiclaw-bot:example.org">HiClaw</a>: !worker list'
    assert leading_pill(html) == ("@hiclaw-bot:example.org", "HiClaw")
    assert command_text("HiClaw: !worker list", BOT, html) == "worker list"
    assert leading_pill("<a name='x'>no link</a>") is None
    assert leading_pill('<a href="https://example.org/">x</a>') is None
    assert leading_pill('<a href="https://matrix.to/#/@x:y"') is None
    assert strip_tags("<b>Hi</b>Claw <i") == "HiClaw <i"


SHAPES = st.sampled_from([
    '<a href="https://matrix.to/#/', "<a ", "<", "<a href='", "href=", '"', "'", "</a", ">", "<b>", "@", "x", " ",
    "https://matrix.to/#/@hiclaw-bot:example.org", "\n> ", "!", "HiClaw",
])


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(SHAPES, min_size=1, max_size=6), repeat=st.integers(1, 4000))
def test_hostile_messages_are_handled_in_linear_time(pieces: list[str], repeat: int) -> None:
    """Adversarial shapes (unclosed tags and quotes, repeated openers) cost time in proportion to their size."""
    text = "".join(pieces) * repeat
    text = text[:64 * 1024]
    started = time.perf_counter()
    command_text(text, BOT, text)
    command_text("HiClaw: " + text, BOT, '<a href="https://matrix.to/#/' + text)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.05, f"{elapsed * 1000:.1f} ms for {len(text)} characters"


def test_a_long_message_is_looked_at_only_up_to_the_cap() -> None:
    body = "!help " + "x" * (4 * MAX_MESSAGE_CHARS)
    text = command_text(body, BOT)
    assert text is not None
    assert len(text) <= MAX_MESSAGE_CHARS + 1
