"""The error tree every client raises.

::

    ClientError                    (system, message; never carries a secret)
     ├── TransientClientError      transient = True: 5xx, 429, timeouts, resets: retry later
     └── PermanentClientError      a person must act: retrying cannot help
          ├── NotFoundError        not_found = True: "already gone" is success for a delete
          ├── ConflictError        the object exists, or a concurrent writer won
          ├── UnauthorizedError    credentials rejected
          └── InvalidRequestError  the server refused what we sent (validation)

The durable engine does not import this module: it reads the class attributes ``transient``,
``not_found`` and ``retry_after`` by name, so the layering stays one-way (clients never know the
engine, the engine never knows the clients).
"""

from __future__ import annotations

from typing import ClassVar


class ClientError(Exception):
    """A call to an external system failed.

    ``system`` names the system ("matrix", "higress", "s3", "smtp") so a chat reply can say
    where the failure happened. The message must never contain a secret.
    """

    transient: ClassVar[bool] = False
    not_found: ClassVar[bool] = False

    def __init__(self, system: str, message: str, *, status: int | None = None,
                 code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(f"{system}: {message}")
        self.system = system
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after


class TransientClientError(ClientError):
    """Worth retrying: the server was unavailable, slow, or asked us to slow down."""

    transient = True


class PermanentClientError(ClientError):
    """Retrying the same call cannot succeed."""


class NotFoundError(PermanentClientError):
    """The object does not exist."""

    not_found = True


class ConflictError(PermanentClientError):
    """The object exists already, or a concurrent writer changed it first."""


class UnauthorizedError(PermanentClientError):
    """The server rejected our credentials."""


class InvalidRequestError(PermanentClientError):
    """The server rejected the request as invalid."""
