# Errors and sentinels shared by every module.
#
# Exceptions are for two kinds of fault only: the caller asking for something
# the protocol forbids now (LocalProtocolError, nothing changes), and the peer
# breaking the protocol in a way no reply can mend (RemoteProtocolError).
# Mistakes a server must answer and survive are events (CommandError), not
# exceptions.
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._events import Reply

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Sentinel",
]


class ProtocolError(Exception):
    """Base class of every error the engine raises on purpose."""


class LocalProtocolError(ProtocolError):
    """The caller asked for something the protocol forbids now.

    The connection is unchanged: the caller may fix the event and try again.
    Also raised when an event or a value is built from invalid fields.
    """


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol in a way no reply can mend.

    ``reply`` is what a server should send before closing, where there is one.
    After this error the connection is unusable and raises it again.
    """

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class Sentinel:
    """A named singleton returned by ``next_event`` (``NEED_DATA``, ``PAUSED``)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


NEED_DATA = Sentinel("NEED_DATA")
"""``next_event`` needs more bytes from the peer before it can say anything."""

PAUSED = Sentinel("PAUSED")
"""``next_event`` waits for the application: a reply is owed before more input
can be read, because the meaning of the next bytes depends on it."""
