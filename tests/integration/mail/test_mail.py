"""The mail client against real aiosmtpd servers: plain, STARTTLS + AUTH, implicit TLS, refusals."""

from __future__ import annotations

import logging
import uuid

import pytest

from hiclaw_bot.clients.errors import (
    InvalidRequestError,
    PermanentClientError,
    TransientClientError,
    UnauthorizedError,
)
from hiclaw_bot.clients.mail import DisabledMailer, MailOutcome, SmtpMailer
from tests.fixtures.smtp import SMTP_PASSWORD, SMTP_USER, SmtpServer, _free_port

# aiosmtpd warns about AUTH without STARTTLS on the implicit-TLS server, whose whole connection is TLS.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

WELCOME = "Welcome! Your initial password is hunter2-initial."


def _address() -> str:
    return f"human-{uuid.uuid4().hex[:8]}@example.test"


def _our_log(caplog: pytest.LogCaptureFixture) -> str:
    """What this process logged, without the test server's own transcript (``mail.log``)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name != "mail.log")


async def test_plain_delivery(smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    mailer = SmtpMailer(smtp_server.host, smtp_server.port, from_address="bot@hiclaw.test", security="none")
    to = _address()

    assert await mailer.send_welcome(to, "Welcome to HiClaw", WELCOME) is MailOutcome.SENT

    [message] = smtp_server.to(to)
    assert message["From"] == "bot@hiclaw.test"
    assert message["Subject"] == "Welcome to HiClaw"
    assert message["Message-ID"].endswith("@hiclaw.test>")
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert payload.decode().strip() == WELCOME
    assert to in _our_log(caplog)
    assert "hunter2-initial" not in _our_log(caplog)


async def test_starttls_with_login(smtp_starttls_server: SmtpServer) -> None:
    server = smtp_starttls_server
    mailer = SmtpMailer(server.host, server.port, from_address="bot@hiclaw.test", security="starttls",
                        username=SMTP_USER, password=SMTP_PASSWORD, tls_context=server.client_tls)
    to = _address()
    assert await mailer.send_welcome(to, "Hi", WELCOME) is MailOutcome.SENT
    assert len(server.to(to)) == 1


async def test_implicit_tls_with_login(smtps_server: SmtpServer) -> None:
    mailer = SmtpMailer(smtps_server.host, smtps_server.port, from_address="bot@hiclaw.test", security="ssl",
                        username=SMTP_USER, password=SMTP_PASSWORD, tls_context=smtps_server.client_tls)
    to = _address()
    assert await mailer.send_welcome(to, "Hi", WELCOME) is MailOutcome.SENT
    assert len(smtps_server.to(to)) == 1


async def test_wrong_password_is_unauthorized_and_secret_free(smtp_starttls_server: SmtpServer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = smtp_starttls_server
    mailer = SmtpMailer(server.host, server.port, from_address="bot@hiclaw.test", username=SMTP_USER,
                        password="wrong-secret-value", tls_context=server.client_tls)
    with pytest.raises(UnauthorizedError) as caught:
        await mailer.send_welcome(_address(), "Hi", WELCOME)
    assert "wrong-secret-value" not in str(caught.value)
    assert "wrong-secret-value" not in repr(mailer)
    assert "hunter2-initial" not in str(caught.value)
    assert "wrong-secret-value" not in _our_log(caplog)


async def test_untrusted_certificate_is_permanent(smtp_starttls_server: SmtpServer) -> None:
    server = smtp_starttls_server  # the default context does not trust the self-signed certificate
    mailer = SmtpMailer(server.host, server.port, from_address="bot@hiclaw.test", username=SMTP_USER,
                        password=SMTP_PASSWORD)
    with pytest.raises(PermanentClientError, match="certificate"):
        await mailer.send_welcome(_address(), "Hi", WELCOME)


async def test_starttls_against_a_plain_server_is_permanent(smtp_server: SmtpServer) -> None:
    mailer = SmtpMailer(smtp_server.host, smtp_server.port, from_address="bot@hiclaw.test", security="starttls")
    with pytest.raises(PermanentClientError):
        await mailer.send_welcome(_address(), "Hi", WELCOME)


@pytest.mark.parametrize(("recipient", "error"), [
    ("someone@refused.test", InvalidRequestError),
    ("someone@busy.test", TransientClientError),
])
async def test_refused_recipients(smtp_server: SmtpServer, recipient: str, error: type[Exception]) -> None:
    mailer = SmtpMailer(smtp_server.host, smtp_server.port, from_address="bot@hiclaw.test", security="none")
    with pytest.raises(error, match="refused the recipient"):
        await mailer.send_welcome(recipient, "Hi", WELCOME)
    assert not smtp_server.to(recipient)


async def test_unreachable_server_is_transient() -> None:
    mailer = SmtpMailer("127.0.0.1", _free_port(), from_address="bot@hiclaw.test", security="none", timeout=2)
    with pytest.raises(TransientClientError):
        await mailer.send_welcome(_address(), "Hi", WELCOME)


@pytest.mark.parametrize(("to", "subject"), [
    ("not-an-address", "Hi"),
    ("a@b.test, c@d.test", "Hi"),
    ("a@b.test\nBcc: x@y.test", "Hi"),
    ("a@b.test", "Hi\nBcc: x@y.test"),
])
async def test_header_injection_is_refused(smtp_server: SmtpServer, to: str, subject: str) -> None:
    mailer = SmtpMailer(smtp_server.host, smtp_server.port, from_address="bot@hiclaw.test", security="none")
    before = len(smtp_server.received)
    with pytest.raises(InvalidRequestError):
        await mailer.send_welcome(to, subject, WELCOME)
    assert len(smtp_server.received) == before


def test_credentials_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="both"):
        SmtpMailer("127.0.0.1", 25, from_address="bot@hiclaw.test", username="only-a-user")


async def test_disabled_mailer_sends_nothing(smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    before = len(smtp_server.received)
    assert await DisabledMailer().send_welcome("a@b.test", "Hi", WELCOME) is MailOutcome.DISABLED
    assert len(smtp_server.received) == before
    assert "not configured" in _our_log(caplog)
    assert "hunter2-initial" not in _our_log(caplog)
