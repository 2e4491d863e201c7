"""smtp-core: a Sans-I/O SMTP engine for both roles.

The whole public surface is here. Feed bytes to a ``ServerConnection`` or a
``ClientConnection`` with ``receive_data``, take events with ``next_event``,
and turn events into bytes with ``send``; the engine never does I/O.
"""

from ._address import Address
from ._config import BareLinePolicy, ClientConfig, ServerConfig
from ._connection import ClientConnection, ServerConnection
from ._events import (
    Auth,
    AuthCancel,
    AuthResponse,
    Bdat,
    Command,
    CommandError,
    ConnectionClosed,
    Data,
    Ehlo,
    Event,
    Expn,
    Helo,
    Help,
    Lhlo,
    Mail,
    MessageChunk,
    MessageEnd,
    MessageRefused,
    Noop,
    Quit,
    Rcpt,
    Reply,
    Rset,
    StartTls,
    Vrfy,
    Xclient,
    Xforward,
)
from ._extensions import Extensions
from ._parameters import Body, MailParams, Notify, OriginalRecipient, RcptParams, Ret
from ._proxy import (
    ProxyCommand,
    ProxyError,
    ProxyFamily,
    ProxyHeader,
    ProxyParser,
    ProxySsl,
    ProxySslSubtype,
    ProxyTlvType,
    ProxyTransport,
)
from ._proxy import write_v1 as write_proxy_v1
from ._proxy import write_v2 as write_proxy_v2
from ._state import State
from ._util import (
    NEED_DATA,
    PAUSED,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    Sentinel,
)

__version__ = "0.1.0"

__all__ = [
    "write_proxy_v2",
    "write_proxy_v1",
    "ProxyTransport",
    "ProxyTlvType",
    "ProxySslSubtype",
    "ProxySsl",
    "ProxyParser",
    "ProxyHeader",
    "ProxyFamily",
    "ProxyError",
    "ProxyCommand",
    "Xforward",
    "Xclient",
    "StartTls",
    "Lhlo",
    "Bdat",
    "AuthResponse",
    "AuthCancel",
    "Auth",
    "NEED_DATA",
    "PAUSED",
    "Address",
    "BareLinePolicy",
    "Body",
    "ClientConfig",
    "ClientConnection",
    "Command",
    "CommandError",
    "ConnectionClosed",
    "Data",
    "Ehlo",
    "Event",
    "Expn",
    "Extensions",
    "Helo",
    "Help",
    "LocalProtocolError",
    "Mail",
    "MailParams",
    "MessageChunk",
    "MessageEnd",
    "MessageRefused",
    "Noop",
    "Notify",
    "OriginalRecipient",
    "ProtocolError",
    "Quit",
    "Rcpt",
    "RcptParams",
    "RemoteProtocolError",
    "Reply",
    "Ret",
    "Rset",
    "Sentinel",
    "ServerConfig",
    "ServerConnection",
    "State",
    "Vrfy",
    "__version__",
]
