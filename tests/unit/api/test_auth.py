"""The bearer check accepts exactly ``Bearer <token>`` (any case of the scheme) and nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from hiclaw_bot.api.auth import token_matches

TOKEN = SecretStr("s3cret-Token_value")


def test_the_exact_token_matches() -> None:
    assert token_matches("Bearer s3cret-Token_value", TOKEN)
    assert token_matches("bearer s3cret-Token_value", TOKEN)
    assert token_matches("Bearer s3cret-Token_value ", TOKEN)


def test_nothing_matches_without_a_configured_token() -> None:
    assert not token_matches("Bearer anything", None)
    assert not token_matches(None, TOKEN)


@given(st.text(max_size=60))
def test_no_other_header_matches(header: str) -> None:
    if header.partition(" ")[0].lower() == "bearer" and header.partition(" ")[2].strip() == TOKEN.get_secret_value():
        return
    assert not token_matches(header, TOKEN)


@given(st.text(min_size=1, max_size=40).filter(lambda t: t.strip() != TOKEN.get_secret_value()))
def test_a_wrong_token_never_matches(given_token: str) -> None:
    assert not token_matches(f"Bearer {given_token}", TOKEN)
