# What can happen on an SMTP connection: one immutable class per command, the
# reply, the message content, and the few things that are not commands.
#
# Events are frozen, slotted dataclasses compared by value. A user who builds
# one gets it validated on the spot (LocalProtocolError names the bad field);
# the parser, which has already checked the bytes, builds them through
# ``_trusted`` and skips that work, which matters on the per-command path.
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from ._address import Address
from ._parameters import MailParams, RcptParams
from ._proxy import ProxyHeader
from ._util import LocalProtocolError

__all__ = [
    "Xforward",
    "Xclient",
    "StartTls",
    "Lhlo",
    "Bdat",
    "AuthResponse",
    "AuthCancel",
    "Auth",
    "Command",
    "CommandError",
    "ConnectionClosed",
    "Data",
    "Ehlo",
    "Event",
    "Expn",
    "Helo",
    "Help",
    "Mail",
    "MessageChunk",
    "MessageEnd",
    "MessageRefused",
    "Noop",
    "Quit",
    "Rcpt",
    "Reply",
    "Rset",
    "Vrfy",
]

_T = TypeVar("_T")

# RFC 3463 section 2: class "." subject "." detail; the class is 2, 4 or 5.
_ENHANCED = re.compile(r"([245])\.(?:0|[1-9]\d{0,2})\.(?:0|[1-9]\d{0,2})")
# Characters that may never appear in text we put on a command or reply line.
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")
_FORBIDDEN_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _trusted(cls: type[_T], *values: Any) -> _T:
    """Build an event from values the parser has already validated (the
    fields in order; fields left out are left unset)."""
    maker = _MAKERS.get(cls)
    if maker is None:
        maker = _MAKERS[cls] = _maker(cls)
    return maker(*values)  # type: ignore[no-any-return]


_MAKERS: dict[type, Callable[..., Any]] = {}


def _maker(cls: type) -> Callable[..., Any]:
    """A constructor for ``cls`` that skips __init__'s checks: it sets the
    slots through their descriptors, which a frozen class does not stop.
    Events are made on every command, so this is on the hot path."""
    new = object.__new__
    setters = tuple(cls.__dict__[name].__set__ for name in cls.__slots__)  # type: ignore[attr-defined]

    def make(*values: Any) -> Any:
        obj: Any = new(cls)
        for setter, value in zip(setters, values, strict=False):
            setter(obj, value)
        return obj

    if len(setters) == 0:
        return lambda: new(cls)
    if len(setters) == 1:
        [first] = setters

        def make_one(value: Any = _UNSET) -> Any:
            obj: Any = new(cls)
            if value is not _UNSET:
                first(obj, value)
            return obj

        return make_one
    if len(setters) == 2:
        first, second = setters

        def make_two(value: Any, other: Any = _UNSET) -> Any:
            obj: Any = new(cls)
            first(obj, value)
            if other is not _UNSET:
                second(obj, other)
            return obj

        return make_two
    return make


_UNSET: Any = object()


def _check_text(owner: str, name: str, value: object, *, required: bool = False) -> None:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{owner}.{name} must be a str, got {type(value).__name__}")
    if required and not value:
        raise LocalProtocolError(f"{owner}.{name} must not be empty")
    match = _FORBIDDEN_TEXT.search(value)
    if match:
        raise LocalProtocolError(
            f"{owner}.{name} must not contain control characters, got {match.group()!r} "
            f"in {value!r}"
        )


def _split_enhanced(code: int, lines: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """Take the RFC 2034 enhanced status code off every line that carries it.

    It is taken only when every line starts with the same code and its class
    matches the reply's first digit, so that writing the reply back gives the
    same bytes.
    """
    match = _ENHANCED.match(lines[0])
    if match is None or int(match.group(1)) != code // 100:
        return lines, None
    enhanced = match.group()
    size = len(enhanced)
    stripped = []
    for line in lines:
        if not line.startswith(enhanced):
            return lines, None
        rest = line[size:]
        if rest and rest[0] != " ":
            return lines, None
        stripped.append(rest[1:])
    return tuple(stripped), enhanced


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Reply:
    """A server's reply (RFC 5321 section 4.2): a code and one or more lines.

    ``Reply(250, "2.1.0 sender ok")`` and ``Reply(250, "sender ok",
    enhanced="2.1.0")`` are the same reply: an RFC 3463 enhanced status code
    at the start of every line is kept apart in ``enhanced``. Text may be a
    str (``"\\n"`` separates lines) or a sequence of lines.

    ``answers`` is set by ``ClientConnection`` on the replies it returns: the
    command (or ``MessageEnd``) this reply answers, or None for the greeting
    and for an unsolicited 421. It takes no part in comparisons.
    """

    code: int
    lines: tuple[str, ...]
    enhanced: str | None
    answers: Command | MessageEnd | None = field(compare=False)

    def __init__(
        self, code: int, text: str | Sequence[str] = "", enhanced: str | None = None
    ) -> None:
        if not isinstance(code, int) or isinstance(code, bool):
            raise LocalProtocolError(f"Reply.code must be an int, got {code!r}")
        # RFC 5321 section 4.2: Reply-code = %x32-35 %x30-35 %x30-39
        if not (200 <= code <= 559 and (code // 10) % 10 <= 5):
            raise LocalProtocolError(f"Reply.code must be 200-559 per RFC 5321 4.2, got {code}")
        lines = tuple(text.split("\n")) if isinstance(text, str) else tuple(text)
        if not lines:
            lines = ("",)
        for line in lines:
            _check_text("Reply", "text", line)
            try:
                line.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise LocalProtocolError(f"Reply.text is not encodable: {line!r}") from None
        if enhanced is None:
            lines, enhanced = _split_enhanced(code, lines)
        elif not isinstance(enhanced, str) or not _ENHANCED.fullmatch(enhanced):
            raise LocalProtocolError(
                f"Reply.enhanced must be an RFC 3463 code like '2.1.0', got {enhanced!r}"
            )
        elif int(enhanced[0]) != code // 100:
            raise LocalProtocolError(
                f"Reply.enhanced class {enhanced[0]} does not match reply code {code}"
            )
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "lines", lines)
        object.__setattr__(self, "enhanced", enhanced)
        object.__setattr__(self, "answers", None)

    def to_bytes(self) -> bytes:
        """The reply as it goes on the wire, outside any connection (for the
        reply a RemoteProtocolError carries, sent just before closing)."""
        from ._writers import write_reply

        return write_reply(self)

    @property
    def text(self) -> str:
        """The reply's lines joined with newlines, without codes."""
        return "\n".join(self.lines)

    @property
    def is_positive(self) -> bool:
        """2yz: the command was accepted."""
        return self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """3yz: accepted, more is expected (354 after DATA)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4yz: refused for now; the same command may succeed later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5yz: refused; repeating the same command will not help."""
        return self.code >= 500

    def __repr__(self) -> str:
        text = self.lines[0] if len(self.lines) == 1 else self.lines
        parts = [str(self.code), repr(text)]
        if self.enhanced is not None:
            parts.append(f"enhanced={self.enhanced!r}")
        if self.answers is not None:
            parts.append(f"answers={self.answers!r}")
        return f"Reply({', '.join(parts)})"


def _reply(
    code: int,
    lines: tuple[str, ...],
    enhanced: str | None,
    answers: Command | MessageEnd | None,
) -> Reply:
    """A Reply from parsed lines (``_split_enhanced`` applied), skipping validation."""
    # The client makes one for every reply it reads: the slots are set one
    # by one here, which costs a third of _trusted's loop over them.
    reply: Reply = object.__new__(Reply)
    _SET_CODE(reply, code)
    _SET_LINES(reply, lines)
    _SET_ENHANCED(reply, enhanced)
    _SET_ANSWERS(reply, answers)
    return reply


_SET_CODE, _SET_LINES, _SET_ENHANCED, _SET_ANSWERS = (
    Reply.__dict__[name].__set__ for name in ("code", "lines", "enhanced", "answers")
)


def _check_domain_argument(owner: str, domain: object) -> None:
    _check_command_text(owner, "domain", domain, required=True)
    assert isinstance(domain, str)
    if " " in domain:
        raise LocalProtocolError(f"{owner}.domain must be one word, got {domain!r}")
    if len(domain.encode("utf-8", "surrogatepass")) > 255:
        # RFC 5321 4.5.3.1.2: a domain is at most 255 octets.
        raise LocalProtocolError(f"{owner}.domain is longer than 255 octets")


def _check_command_text(owner: str, name: str, value: object, *, required: bool = False) -> None:
    """Text on a command line: no control character at all, not even HTAB
    (RFC 5321 4.1.2: String and Quoted-string hold none; a server refuses
    the line with 501)."""
    _check_text(owner, name, value, required=required)
    assert isinstance(value, str)
    if "\t" in value:
        raise LocalProtocolError(f"{owner}.{name} must not contain a tab, got {value!r}")


@dataclass(frozen=True, slots=True)
class Ehlo:
    """EHLO: the client names itself and asks for the extensions (RFC 5321 4.1.1.1)."""

    domain: str

    def __post_init__(self) -> None:
        _check_domain_argument("Ehlo", self.domain)


@dataclass(frozen=True, slots=True)
class Helo:
    """HELO: the client names itself, no extensions (RFC 5321 4.1.1.1)."""

    domain: str

    def __post_init__(self) -> None:
        _check_domain_argument("Helo", self.domain)


_EMPTY_MAIL_PARAMS = MailParams()
_EMPTY_RCPT_PARAMS = RcptParams()


@dataclass(frozen=True, slots=True)
class Mail:
    """MAIL FROM: opens a transaction (RFC 5321 4.1.1.2). ``None`` is the null path ``<>``."""

    reverse_path: Address | None
    params: MailParams = _EMPTY_MAIL_PARAMS

    def __post_init__(self) -> None:
        if self.reverse_path is not None and not isinstance(self.reverse_path, Address):
            raise LocalProtocolError(
                f"Mail.reverse_path must be an Address or None, got {self.reverse_path!r}"
            )
        if self.reverse_path is not None and self.reverse_path.domain is None:
            raise LocalProtocolError(
                "Mail.reverse_path needs a domain: <Postmaster> alone is only a forward path"
            )
        if not isinstance(self.params, MailParams):
            raise LocalProtocolError(f"Mail.params must be MailParams, got {self.params!r}")


@dataclass(frozen=True, slots=True)
class Rcpt:
    """RCPT TO: names one recipient (RFC 5321 4.1.1.3)."""

    forward_path: Address
    params: RcptParams = _EMPTY_RCPT_PARAMS

    def __post_init__(self) -> None:
        if not isinstance(self.forward_path, Address):
            raise LocalProtocolError(
                f"Rcpt.forward_path must be an Address, got {self.forward_path!r}"
            )
        if not isinstance(self.params, RcptParams):
            raise LocalProtocolError(f"Rcpt.params must be RcptParams, got {self.params!r}")


@dataclass(frozen=True, slots=True)
class Data:
    """DATA: asks to send the message content (RFC 5321 4.1.1.4)."""


@dataclass(frozen=True, slots=True)
class Rset:
    """RSET: aborts the transaction (RFC 5321 4.1.1.5)."""


@dataclass(frozen=True, slots=True)
class Vrfy:
    """VRFY: asks whether a user or mailbox exists (RFC 5321 4.1.1.6)."""

    text: str

    def __post_init__(self) -> None:
        _check_command_text("Vrfy", "text", self.text, required=True)
        if not self.text.strip(" \t"):
            raise LocalProtocolError("Vrfy.text must not be blank (RFC 5321 4.1.1.6)")


@dataclass(frozen=True, slots=True)
class Expn:
    """EXPN: asks to expand a mailing list (RFC 5321 4.1.1.7)."""

    text: str

    def __post_init__(self) -> None:
        _check_command_text("Expn", "text", self.text, required=True)
        if not self.text.strip(" \t"):
            raise LocalProtocolError("Expn.text must not be blank (RFC 5321 4.1.1.7)")


@dataclass(frozen=True, slots=True)
class Help:
    """HELP, with an optional topic (RFC 5321 4.1.1.8)."""

    topic: str = ""

    def __post_init__(self) -> None:
        _check_command_text("Help", "topic", self.topic)


@dataclass(frozen=True, slots=True)
class Noop:
    """NOOP, with an optional argument that is ignored (RFC 5321 4.1.1.9)."""

    text: str = ""

    def __post_init__(self) -> None:
        _check_command_text("Noop", "text", self.text)


@dataclass(frozen=True, slots=True)
class Quit:
    """QUIT: the client is done (RFC 5321 4.1.1.10)."""


@dataclass(frozen=True, slots=True)
class Lhlo:
    """LHLO: EHLO's counterpart in LMTP (RFC 2033 section 4.1)."""

    domain: str

    def __post_init__(self) -> None:
        _check_domain_argument("Lhlo", self.domain)


@dataclass(frozen=True, slots=True)
class StartTls:
    """STARTTLS: asks to turn the connection into TLS (RFC 3207 section 4)."""


def _check_bytes(owner: str, name: str, value: object) -> None:
    if not isinstance(value, bytes):
        raise LocalProtocolError(f"{owner}.{name} must be bytes, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH: starts a SASL exchange (RFC 4954 section 4).

    ``initial_response`` is the decoded initial response: None when the client
    sent none, ``b""`` for an empty one (``=`` on the wire).
    """

    mechanism: str
    initial_response: bytes | None = None

    def __post_init__(self) -> None:
        _check_text("Auth", "mechanism", self.mechanism, required=True)
        # RFC 4422 3.1: sasl-mech = 1*20 of upper-case letters, digits, - and _
        if not _MECHANISM.fullmatch(self.mechanism):
            raise LocalProtocolError(
                f"Auth.mechanism must be 1-20 of A-Z 0-9 - _ (RFC 4422 3.1), got {self.mechanism!r}"
            )
        if self.initial_response is not None:
            _check_bytes("Auth", "initial_response", self.initial_response)


@dataclass(frozen=True, slots=True, repr=False)
class AuthResponse:
    """A client's answer to a 334 challenge, decoded from base64 (RFC 4954)."""

    data: bytes

    def __post_init__(self) -> None:
        _check_bytes("AuthResponse", "data", self.data)

    def __repr__(self) -> str:
        # SASL responses carry credentials: never print them.
        return f"AuthResponse(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class AuthCancel:
    """``*`` in answer to a 334 challenge: the client gives up (RFC 4954 section 4)."""


@dataclass(frozen=True, slots=True)
class Bdat:
    """BDAT: a chunk of ``size`` octets of message content follows (RFC 3030 section 2).

    A server hands this event out once the chunk's octets have been read (as
    MessageChunk events before it), since that is when a reply is owed. A
    client sends it before the chunk's octets.
    """

    size: int
    last: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise LocalProtocolError(f"Bdat.size must be an int >= 0, got {self.size!r}")
        if not isinstance(self.last, bool):
            raise LocalProtocolError(f"Bdat.last must be a bool, got {self.last!r}")


_ATTRIBUTE = re.compile(r"[A-Z][A-Z0-9-]*")


def _check_attributes(owner: str, attributes: object) -> None:
    if not isinstance(attributes, tuple) or not attributes:
        raise LocalProtocolError(f"{owner}.attributes must be a non-empty tuple of pairs")
    seen = set()
    for pair in attributes:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise LocalProtocolError(f"{owner}.attributes holds {pair!r}, not a (name, value) pair")
        name, value = pair
        if not isinstance(name, str) or not _ATTRIBUTE.fullmatch(name):
            raise LocalProtocolError(f"{owner} attribute name must be upper-case, got {name!r}")
        if name in seen:
            raise LocalProtocolError(f"{owner} attribute {name} given twice")
        seen.add(name)
        _check_text(owner, name, value)


@dataclass(frozen=True, slots=True)
class Xclient:
    """XCLIENT: a trusted front end tells who the real client is (Postfix
    XCLIENT_README). ``attributes`` are (NAME, decoded value) pairs, such as
    ``("ADDR", "192.0.2.1")``; ``[UNAVAILABLE]`` and ``[TEMPUNAVAIL]`` are
    kept as they are. Accepted with a new 220 greeting, after which EHLO is
    needed again."""

    attributes: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        _check_attributes("Xclient", self.attributes)

    def get(self, name: str) -> str | None:
        """The value of attribute ``name``, or None."""
        return dict(self.attributes).get(name.upper())


@dataclass(frozen=True, slots=True)
class Xforward:
    """XFORWARD: a trusted front end passes on the original client's details
    for logging, before MAIL (Postfix XFORWARD_README). Answered 250."""

    attributes: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        _check_attributes("Xforward", self.attributes)

    def get(self, name: str) -> str | None:
        """The value of attribute ``name``, or None."""
        return dict(self.attributes).get(name.upper())


@dataclass(frozen=True, slots=True, repr=False)
class MessageChunk:
    """A piece of the message content, as it arrives or is sent.

    A server hands these out already un-dot-stuffed; a client passes plain
    content and the engine dot-stuffs it. Chunk boundaries carry no meaning.
    """

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            if isinstance(self.data, (bytearray, memoryview)):
                object.__setattr__(self, "data", bytes(self.data))
            else:
                raise LocalProtocolError(
                    f"MessageChunk.data must be bytes, got {type(self.data).__name__}"
                )

    def __repr__(self) -> str:
        if len(self.data) > 60:
            return f"MessageChunk({self.data[:48]!r}... {len(self.data)} bytes)"
        return f"MessageChunk({self.data!r})"


@dataclass(frozen=True, slots=True)
class MessageEnd:
    """The end of the message content (CRLF.CRLF on the wire)."""


@dataclass(frozen=True, slots=True)
class MessageRefused:
    """The message ended but broke a rule while it arrived.

    The rule is one of the server's limits or policies: a line longer than the
    text-line limit, content larger than the size limit, a bare CR or LF under
    the ``reject`` policy. Everything after the fault was read and discarded,
    and ``reply`` is the refusal the RFC suggests; the application sends it (or
    another 4xx/5xx reply) and must not deliver the chunks it has seen.
    """

    reply: Reply


@dataclass(frozen=True, slots=True)
class CommandError:
    """A line the server must refuse: bad syntax, out of sequence, too long, ...

    ``line`` is the offending line without its line ending (cut to the line
    limit when it was too long) and ``reply`` the reply the RFC suggests. The
    application sends it, or another 4xx/5xx reply; the state does not move.
    """

    line: bytes
    reply: Reply


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection, or the protocol ended it."""


Command: TypeAlias = (
    Ehlo
    | Helo
    | Lhlo
    | Mail
    | Rcpt
    | Data
    | Bdat
    | Rset
    | Vrfy
    | Expn
    | Help
    | Noop
    | Quit
    | StartTls
    | Auth
    | AuthResponse
    | AuthCancel
    | Xclient
    | Xforward
)
"""Every command event (the things a client sends and a server receives)."""

Event: TypeAlias = (
    Command
    | Reply
    | MessageChunk
    | MessageEnd
    | MessageRefused
    | CommandError
    | ConnectionClosed
    | ProxyHeader
)
"""Every event either connection hands out or takes."""
