"""Welcome mail for new human members: SMTP through aiosmtplib, or a mailer that is switched off.

Mail is optional. Rather than every caller checking for ``None``, an unconfigured deployment gets a
:class:`DisabledMailer`, whose :meth:`~DisabledMailer.send_welcome` returns
:attr:`MailOutcome.DISABLED` at once: the human-create flow completes its mail step either way and
its reply can tell the admin to hand the credentials over in person.

A welcome text may carry an initial password, so neither the text nor the SMTP password ever reaches
a log line, an exception or a repr; only the recipient and the outcome are logged.
"""

from __future__ import annotations

import enum
import logging
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal, Protocol

import aiosmtplib

from hiclaw_bot.clients.errors import (
    ClientError,
    InvalidRequestError,
    PermanentClientError,
    TransientClientError,
    UnauthorizedError,
)

__all__ = ["DisabledMailer", "MailOutcome", "Mailer", "Security", "SmtpMailer"]

logger = logging.getLogger(__name__)

SYSTEM = "smtp"
Security = Literal["none", "starttls", "ssl"]
"""``starttls``: upgrade a plain connection (port 587); ``ssl``: TLS from the start (port 465)."""


class MailOutcome(enum.Enum):
    SENT = "sent"
    DISABLED = "disabled"


class Mailer(Protocol):
    async def send_welcome(self, to: str, subject: str, text: str) -> MailOutcome: ...


class DisabledMailer:
    """The mailer of a deployment without SMTP: sends nothing and says so."""

    def __repr__(self) -> str:
        return "DisabledMailer()"

    async def send_welcome(self, to: str, subject: str, text: str) -> MailOutcome:
        logger.info("mail is not configured: no welcome mail for %s", to)
        return MailOutcome.DISABLED


class SmtpMailer:
    """Sends plain-text mail through one SMTP server, one connection per message."""

    def __init__(self, host: str, port: int, *, from_address: str, security: Security = "starttls",
                 username: str | None = None, password: str | None = None, timeout: float = 15.0,
                 tls_context: ssl.SSLContext | None = None) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both an SMTP username and a password, or neither")
        self.host = host
        self.port = port
        self.from_address = _check_address(from_address)
        self.security = security
        self.username = username
        self._password = password
        self._timeout = timeout
        self._tls_context = tls_context

    def __repr__(self) -> str:
        return (f"SmtpMailer(host={self.host!r}, port={self.port}, security={self.security!r}, "
                f"username={self.username!r})")

    async def send_welcome(self, to: str, subject: str, text: str) -> MailOutcome:
        """Send ``text`` to ``to``. Raises the client error tree; never puts the text in a message."""
        message = EmailMessage()
        message["From"] = self.from_address
        message["To"] = _check_address(to)
        try:
            message["Subject"] = subject
        except ValueError:
            raise InvalidRequestError(SYSTEM, "the subject must be one line") from None
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.from_address.rpartition("@")[2])
        message.set_content(text)
        try:
            await aiosmtplib.send(
                message, hostname=self.host, port=self.port, username=self.username, password=self._password,
                use_tls=self.security == "ssl", start_tls=self.security == "starttls",
                tls_context=self._tls_context, timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._error(exc) from None
        logger.info("welcome mail sent to %s", to)
        return MailOutcome.SENT

    def _error(self, exc: BaseException) -> ClientError:
        where = f"{self.host}:{self.port}"
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return UnauthorizedError(SYSTEM, f"{where} rejected the login of {self.username}", status=exc.code)
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [r.code for r in exc.recipients]
            kind = TransientClientError if all(400 <= c < 500 for c in codes) else InvalidRequestError
            return kind(SYSTEM, f"{where} refused the recipient ({', '.join(map(str, codes))})")
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            text = f"{where} answered {exc.code} {_scrub(exc.message, self._password)}"
            if 400 <= exc.code < 500:
                return TransientClientError(SYSTEM, text, status=exc.code)
            return PermanentClientError(SYSTEM, text, status=exc.code)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentClientError(SYSTEM, f"{where}: TLS certificate rejected ({exc.verify_message})")
        if isinstance(exc, OSError | aiosmtplib.SMTPTimeoutError | aiosmtplib.SMTPConnectError
                      | aiosmtplib.SMTPServerDisconnected):
            return TransientClientError(SYSTEM, f"{where}: {type(exc).__name__}")
        # What is left is the server lacking something asked for (STARTTLS, AUTH): a setting to fix.
        return PermanentClientError(SYSTEM, f"{where}: {exc} (check the security setting and credentials)")


def _check_address(address: str) -> str:
    local, at, domain = address.partition("@")
    if not (local and at and domain) or any(c.isspace() for c in address) or "," in address:
        raise InvalidRequestError(SYSTEM, f"not a single mail address: {address!r}")
    return address


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
