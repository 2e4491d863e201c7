"""I/O for smtp_core: servers and clients on blocking sockets and asyncio.

``backends.sync`` and ``backends.asyncio`` have the same shape:
``start_server``/``serve`` with a handler object, and ``connect`` returning a
client with ``login``, ``sendmail``, ``send_message`` and ``quit``. What a
session decides is written once, in ``backends._session`` (server) and
``backends._client`` (client); the modules per I/O library only move bytes.
"""

from ._client import (
    AuthenticationFailed,
    DataRefused,
    RecipientsRefused,
    SenderRefused,
    SendResult,
    ServiceRefused,
    SMTPError,
)
from ._session import Envelope, Session, SessionLimits
from .maildir import MaildirHandler, SinkHandler

__all__ = [
    "AuthenticationFailed",
    "DataRefused",
    "Envelope",
    "MaildirHandler",
    "RecipientsRefused",
    "SMTPError",
    "SendResult",
    "SenderRefused",
    "ServiceRefused",
    "Session",
    "SessionLimits",
    "SinkHandler",
]
