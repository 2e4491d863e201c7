# Every limit and policy of a connection, in one frozen object per role.
#
# Defaults are RFC 5321 section 4.5.3.1's minimums (which are, in practice,
# the maximums peers can rely on) and the safe choice wherever the RFC leaves
# one: bare line endings refused, ENHANCEDSTATUSCODES on, DSN off until the
# application says it can honour it.
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ._util import LocalProtocolError

__all__ = ["BareLinePolicy", "ClientConfig", "ServerConfig"]


class BareLinePolicy(enum.Enum):
    """What to do with a CR or LF that is not part of a CRLF in message content.

    Bare line endings never end a message, whatever the policy: only
    CRLF.CRLF does (the SMTP smuggling attacks rely on peers that disagree).
    """

    REJECT = "reject"
    """Server: refuse the message with 550 5.5.2 after its end. Client: raise."""
    NORMALIZE = "normalize"
    """Turn every bare CR and bare LF into CRLF."""
    ALLOW = "allow"
    """Server only: pass the bytes through as they came."""


# A host name goes into the greeting and every EHLO reply: one word of
# printable characters (RFC 5321 4.2: textstring has no controls).
_NOT_IN_HOSTNAME = re.compile(r"[\x00-\x20\x7f]")


def _positive(owner: str, name: str, value: object, *, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise LocalProtocolError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Limits and policies of a ``ServerConnection``."""

    hostname: str = "localhost"
    """The name the server gives in its greeting and EHLO reply."""
    strict: bool = False
    """Exact RFC 5321 grammar. Off, the tolerances real clients need are
    accepted: ``MAIL FROM: <a@b>`` with a space, a path without angle
    brackets, a bare LF ending a command line, any word as the EHLO name."""
    max_command_line: int = 512
    """Octets in a command line with its CRLF (RFC 5321 4.5.3.1.4). MAIL and
    RCPT get more when SIZE, SMTPUTF8 or DSN are in force (RFC 1870 section 4,
    RFC 6531 section 3.4, RFC 3461 section 5)."""
    max_text_line: int | None = 1000
    """Octets in a line of message content with its CRLF (RFC 5321
    4.5.3.1.6); None for no limit."""
    max_recipients: int = 100
    """Accepted RCPTs in one transaction; more get 452 4.5.3 (RFC 5321 4.5.3.1.8)."""
    max_message_size: int | None = 10_240_000
    """Octets of message content; advertised with SIZE (RFC 1870). Larger
    messages are read to their end, discarded and refused with 552 5.3.4.
    None for no limit (SIZE is then advertised without a value)."""
    bare_line_ending: BareLinePolicy = BareLinePolicy.REJECT
    """What a bare CR or LF inside message content gets."""
    pipelining: bool = True
    """Advertise PIPELINING (RFC 2920)."""
    eightbitmime: bool = True
    """Advertise 8BITMIME and accept BODY=8BITMIME (RFC 6152)."""
    smtputf8: bool = True
    """Advertise SMTPUTF8 and accept UTF-8 addresses under it (RFC 6531)."""
    dsn: bool = False
    """Advertise DSN and accept RET, ENVID, NOTIFY and ORCPT (RFC 3461). Off
    by default: only turn it on when the application produces the notices."""
    enhanced_status_codes: bool = True
    """Advertise ENHANCEDSTATUSCODES (RFC 2034); replies then carry codes, and
    the engine adds a generic one to a reply the application sent without."""
    extra_mail_parameters: frozenset[str] = frozenset()
    """Further MAIL parameter keywords the application handles (kept in
    ``MailParams.extra``); any other keyword gets 555."""
    extra_rcpt_parameters: frozenset[str] = frozenset()
    """Further RCPT parameter keywords the application handles."""
    extra_extensions: tuple[str, ...] = ()
    """Further EHLO lines to advertise, such as ``"XFOO bar"``."""
    chunking: bool = True
    """Advertise CHUNKING and accept BDAT (RFC 3030)."""
    binarymime: bool = False
    """Advertise BINARYMIME and accept BODY=BINARYMIME, which needs BDAT (RFC 3030)."""
    starttls: bool = False
    """Advertise STARTTLS (RFC 3207): turn it on when the I/O layer can do TLS.
    Never advertised once TLS is on."""
    require_tls: bool = False
    """MAIL, RCPT, DATA, BDAT and AUTH get 530 5.7.0 before TLS (RFC 3207 section 4)."""
    auth_mechanisms: tuple[str, ...] = ()
    """SASL mechanisms to advertise with AUTH (RFC 4954); none: no AUTH."""
    auth_requires_tls: bool = True
    """PLAIN and LOGIN are neither advertised nor accepted before TLS
    (538 5.7.11, RFC 4954 section 4): passwords never cross in clear."""
    lmtp: bool = False
    """Speak LMTP (RFC 2033): LHLO instead of EHLO/HELO, and one reply per
    accepted recipient after the content."""
    requiretls: bool = False
    """Advertise REQUIRETLS (RFC 8689), under TLS only, and accept the
    REQUIRETLS parameter; the application must then honour it when relaying."""
    proxy_protocol: bool = False
    """Expect a PROXY protocol header (HAProxy's, v1 or v2) before anything
    else: the server hands it out as a ProxyHeader event before it greets.
    Only behind a load balancer that always sends one."""
    xclient: bool = False
    """Advertise and accept XCLIENT (Postfix): only for trusted front ends,
    so off by default; the application still decides whom to trust."""
    xforward: bool = False
    """Advertise and accept XFORWARD (Postfix): off by default, as XCLIENT."""

    def __post_init__(self) -> None:
        if (
            not isinstance(self.hostname, str)
            or not 0 < len(self.hostname.encode("utf-8", "surrogateescape")) <= 255
            or _NOT_IN_HOSTNAME.search(self.hostname)
        ):
            raise LocalProtocolError(
                "ServerConfig.hostname must be one word of 1 to 255 octets with no "
                f"control characters, got {self.hostname!r}"
            )
        _positive("ServerConfig", "max_command_line", self.max_command_line, minimum=512)
        if self.max_text_line is not None:
            _positive("ServerConfig", "max_text_line", self.max_text_line, minimum=3)
        _positive("ServerConfig", "max_recipients", self.max_recipients)
        if self.max_message_size is not None:
            _positive("ServerConfig", "max_message_size", self.max_message_size)
        if not isinstance(self.bare_line_ending, BareLinePolicy):
            raise LocalProtocolError(
                "ServerConfig.bare_line_ending must be a BareLinePolicy, "
                f"got {self.bare_line_ending!r}"
            )
        for name in ("extra_mail_parameters", "extra_rcpt_parameters"):
            value = getattr(self, name)
            if not all(isinstance(k, str) and k == k.upper() for k in value):
                raise LocalProtocolError(
                    f"ServerConfig.{name} must hold upper-case keywords, got {value!r}"
                )
            object.__setattr__(self, name, frozenset(value))
        for mechanism in self.auth_mechanisms:
            if not isinstance(mechanism, str) or mechanism != mechanism.upper() or not mechanism:
                raise LocalProtocolError(
                    f"ServerConfig.auth_mechanisms must hold upper-case names, got {mechanism!r}"
                )
        for line in self.extra_extensions:
            if not isinstance(line, str) or not line or any(c in line for c in "\r\n\0"):
                raise LocalProtocolError(
                    f"ServerConfig.extra_extensions holds an invalid line: {line!r}"
                )


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Limits and policies of a ``ClientConnection``."""

    local_hostname: str = "localhost"
    """The name a client gives in EHLO/HELO (see ``ClientConnection.ehlo()``)."""
    strict: bool = False
    """Refuse replies that RFC 5321 forbids but servers send (a bare LF line
    ending). Off, those are accepted."""
    max_reply_line: int = 512
    """Octets in a reply line with its CRLF (RFC 5321 4.5.3.1.5); a longer
    line is a RemoteProtocolError."""
    max_reply_lines: int = 1000
    """Lines in one multiline reply, so that memory stays bounded."""
    bare_line_ending: BareLinePolicy = BareLinePolicy.NORMALIZE
    """A bare CR or LF in content the application sends: NORMALIZE it to
    CRLF (the default) or REJECT it with LocalProtocolError. Never sent bare."""
    require_tls: bool = False
    """Refuse (LocalProtocolError) to send MAIL, RCPT, DATA, BDAT or AUTH
    before TLS: a STARTTLS that was not offered, or answered 454 or 502,
    cannot downgrade the session to plaintext (RFC 3207 section 6)."""
    lmtp: bool = False
    """Speak LMTP (RFC 2033): LHLO, and a reply per recipient after content."""

    def __post_init__(self) -> None:
        if (
            not isinstance(self.local_hostname, str)
            or not self.local_hostname
            or any(c in self.local_hostname for c in " \t\r\n\0")
        ):
            raise LocalProtocolError(
                f"ClientConfig.local_hostname must be one word, got {self.local_hostname!r}"
            )
        _positive("ClientConfig", "max_reply_line", self.max_reply_line, minimum=512)
        _positive("ClientConfig", "max_reply_lines", self.max_reply_lines)
        if self.bare_line_ending not in (BareLinePolicy.NORMALIZE, BareLinePolicy.REJECT):
            raise LocalProtocolError(
                "ClientConfig.bare_line_ending must be NORMALIZE or REJECT (a client never "
                f"sends bare line endings), got {self.bare_line_ending!r}"
            )
