# The objects users hold: ServerConnection and ClientConnection.
#
# Both follow h11's convention: ``receive_data(bytes)`` buffers what the peer
# sent (b"" when it closed), ``next_event()`` hands out one event or
# NEED_DATA / PAUSED, ``send(event)`` returns the bytes to write or raises
# LocalProtocolError and changes nothing. Neither ever writes on its own nor
# calls back: every byte on the wire was asked for by the caller.
#
# The server hands out one command at a time and then returns PAUSED until the
# application has replied, since the reply decides how the next bytes read
# (RFC 2920: a pipelining server still answers in order). The client may send
# ahead when PIPELINING is in force, keeps the commands awaiting replies in a
# FIFO, and checks each new command against the state its pending commands
# would lead to if they all succeed.
from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Callable, Iterable
from typing import NoReturn, get_args

from ._config import ClientConfig, ServerConfig
from ._content import ContentReader, ContentWriter
from ._events import (
    Auth,
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
    Vrfy,
    _check_text,
    _maker,
    _reply,
    _split_enhanced,
    _trusted,
)
from ._extensions import Extensions
from ._proxy import ProxyError, ProxyHeader, ProxyParser
from ._readers import (
    BdatSyntaxError,
    parse_auth_response,
    parse_bdat,
    parse_command,
    parse_reply_line,
)
from ._receivebuffer import Line, ReceiveBuffer, TooLong
from ._state import (
    AUTH_EXCHANGE,
    CLOSED,
    GREETED,
    GROUP_ENDERS,
    IN_MESSAGE,
    READY,
    TABLE,
    TLS_HANDSHAKE,
    Answered,
    Greeting,
    Policy,
    Session,
    State,
    Step,
    check_command,
    command_line_limit,
    outcome,
)
from ._util import (
    NEED_DATA,
    PAUSED,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    Sentinel,
)
from ._writers import write_command, write_reply

__all__ = ["ClientConnection", "ServerConnection"]

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF.
_MAX_REPLY_LINE = 512
# RFC 5321 4.5.3.1.4: every server takes command lines of 512 octets.
_MIN_COMMAND_LINE = 512
_ACCEPTED = {2: Reply(250), 3: Reply(354)}
_ACCEPTED_250 = _ACCEPTED[2]
# The command classes themselves: ClientConnection.send takes a short path
# for exactly these.
_COMMAND_TYPES = frozenset(get_args(Command))
# The attributes Postfix's XCLIENT_README and XFORWARD_README define.
_XCLIENT_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT")
_XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
# RFC 4954 section 4: AUTH lines and SASL responses may be 12288 octets.
_MAX_AUTH_LINE = 12288


class _Offers:
    """What one ServerConfig offers, worked out once: configs are immutable,
    and a server makes every connection from the same one, so a connection
    costs no EHLO reply built, checked and parsed anew."""

    __slots__ = (
        "config",
        "greeting",
        "helo_reply",
        "line_limit",
        "plain",
        "plain_lines",
        "policy",
        "secure",
        "secure_lines",
    )

    def __init__(self, config: ServerConfig) -> None:
        self.config = config  # held so that its id, the key in _OFFERS, stays its own
        hostname = config.hostname
        self.greeting = Reply(220, f"{hostname} {'LMTP' if config.lmtp else 'ESMTP'}")
        self.helo_reply = Reply(250, hostname)
        self.policy = Policy(
            extra_mail=config.extra_mail_parameters,
            extra_rcpt=config.extra_rcpt_parameters,
            max_recipients=config.max_recipients,
            require_tls=config.require_tls,
            auth_requires_tls=config.auth_requires_tls,
        )
        self.plain = _advertise(config, tls=False, everything=False)
        self.secure = _advertise(config, tls=True, everything=False)
        # Checked as a Reply would check them (raising as it would).
        self.plain_lines = Reply(250, self.plain.lines()).lines
        self.secure_lines = Reply(250, self.secure.lines()).lines
        # The longest command line any state of the session may need: the
        # buffer's limit, before the command is known (see next_event).
        everything = Session(extensions=_advertise(config, tls=False, everything=True))
        limits = [
            command_line_limit(kind, everything, config.max_command_line) for kind in (Mail, Rcpt)
        ]
        if config.auth_mechanisms:
            limits.append(_MAX_AUTH_LINE)
        self.line_limit = max(limits)


# Recent configs' offers, by the config's id (the entry holds the config, so
# the id cannot be reused while it is kept). Cleared when full.
_OFFERS: dict[int, _Offers] = {}
_OFFERS_SIZE = 64


def _offers(config: ServerConfig) -> _Offers:
    offers = _OFFERS.get(id(config))
    if offers is None:
        offers = _Offers(config)
        if len(_OFFERS) >= _OFFERS_SIZE:
            _OFFERS.clear()
        _OFFERS[id(config)] = offers
    return offers


def _advertise(config: ServerConfig, *, tls: bool, everything: bool) -> Extensions:
    """The extensions ``config`` offers (``everything``: in any state)."""
    keywords: list[tuple[str, tuple[str, ...]]] = []
    if config.pipelining:
        keywords.append(("PIPELINING", ()))
    size = config.max_message_size
    keywords.append(("SIZE", (str(size),) if size is not None else ()))
    if config.eightbitmime:
        keywords.append(("8BITMIME", ()))
    if config.smtputf8:
        keywords.append(("SMTPUTF8", ()))
    if config.dsn:
        keywords.append(("DSN", ()))
    if config.enhanced_status_codes:
        keywords.append(("ENHANCEDSTATUSCODES", ()))
    if config.chunking:
        keywords.append(("CHUNKING", ()))
        if config.binarymime:
            keywords.append(("BINARYMIME", ()))
    if config.starttls and not tls:
        keywords.append(("STARTTLS", ()))
    if config.requiretls and (tls or everything):
        keywords.append(("REQUIRETLS", ()))
    if config.xclient:
        keywords.append(("XCLIENT", _XCLIENT_ATTRIBUTES))
    if config.xforward:
        keywords.append(("XFORWARD", _XFORWARD_ATTRIBUTES))
    mechanisms = tuple(
        m
        for m in config.auth_mechanisms
        if everything or tls or not config.auth_requires_tls or m not in ("PLAIN", "LOGIN")
    )
    if mechanisms:
        keywords.append(("AUTH", mechanisms))
    extensions = Extensions(tuple(keywords))
    if config.extra_extensions:
        extra = Extensions.from_lines(config.extra_extensions)
        extensions = Extensions(extensions.keywords + extra.keywords)
    return extensions


class _Connection:
    __slots__ = ("_buffer", "_error", "_peer_closed", "_session")

    def __init__(self, *, tls: bool, lmtp: bool) -> None:
        self._buffer = ReceiveBuffer()
        self._peer_closed = False
        self._error: ProtocolError | None = None
        self._session = Session(tls=tls, lmtp=lmtp)

    def _start_tls(self) -> None:
        if self._session.state is not TLS_HANDSHAKE:
            raise LocalProtocolError(
                f"tls_started() only after STARTTLS was answered 220, "
                f"not in state {self._session.state.name}"
            )
        if self._buffer:
            # CVE-2011-0411 (server) and the response injection fixed in
            # aiosmtplib 5.1.2 (client): plaintext sent before the handshake
            # must never be read as if it came over TLS.
            self._fail(
                f"{len(self._buffer)} octets arrived in plaintext after STARTTLS and "
                "before the TLS handshake (injection)",
                Reply(554, "plaintext after STARTTLS", "5.5.1"),
            )
        self._session.tls_started()

    @property
    def state(self) -> State:
        """Where the conversation is (the same for both roles)."""
        return self._session.state

    @property
    def extensions(self) -> Extensions | None:
        """The extensions in force: parsed from the last 250 reply to EHLO,
        empty after HELO, None before either."""
        return self._session.extensions

    @property
    def transaction(self) -> Mail | None:
        """The accepted MAIL of the open transaction, if any."""
        return self._session.mail

    @property
    def recipients(self) -> tuple[Rcpt, ...]:
        """The RCPTs the open transaction has had accepted, in order."""
        return self._session.recipients

    @property
    def tls(self) -> bool:
        """Whether the connection is under TLS (STARTTLS done, or implicit)."""
        return self._session.tls

    @property
    def authenticated(self) -> bool:
        """Whether an AUTH exchange succeeded on this connection."""
        return self._session.authenticated

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error

    def _fail(self, message: str, reply: Reply | None = None) -> NoReturn:
        self._error = RemoteProtocolError(message, reply)
        raise self._error

    def _closed(self) -> ConnectionClosed:
        self._session.state = CLOSED
        return _trusted(ConnectionClosed)

    def receive_data(self, data: bytes) -> None:
        """Give the engine bytes from the peer; ``b""`` means the peer closed."""
        self._check_usable()
        if self._peer_closed:
            if data:
                raise LocalProtocolError("received data after the peer closed the connection")
            return
        if not data:
            self._peer_closed = True
            return
        self._feed(bytes(data))

    def _feed(self, data: bytes) -> None:
        self._buffer.feed(data)


class ServerConnection(_Connection):
    """The server side of one SMTP connection: commands in, replies out.

    ``next_event()`` returns a command event, ``MessageChunk`` /
    ``MessageEnd`` / ``MessageRefused`` while content flows, ``CommandError``
    for a line that must be refused, ``ConnectionClosed``, ``NEED_DATA``, or
    ``PAUSED`` while a reply is owed (the greeting first of all) or while a
    TLS handshake is under way. ``tls=True`` starts the connection as already
    secure (implicit TLS, RFC 8314).
    """

    __slots__ = (
        "_chunk_left",
        "_chunk_total",
        "_content",
        "_line_limit",
        "_offers",
        "_owed",
        "_owed_command",
        "_owed_left",
        "_owed_refusal",
        "_pending_chunk_event",
        "_policy",
        "_proxy",
        "config",
        "proxy_header",
    )

    def __init__(self, config: ServerConfig | None = None, *, tls: bool = False) -> None:
        self.config = config = config or ServerConfig()
        super().__init__(tls=tls, lmtp=config.lmtp)
        self._owed: Answered | CommandError | None = Greeting()
        self._owed_command: Answered | None = None  # what a CommandError's reply moves
        self._owed_refusal = False
        self._owed_left = 1  # replies still owed (LMTP: one per recipient)
        self._content: ContentReader | None = None
        self._chunk_left: int | None = None  # BDAT octets still to read
        self._chunk_total = 0
        self._pending_chunk_event: Command | CommandError | None = None
        self._proxy = ProxyParser() if config.proxy_protocol else None
        self.proxy_header: ProxyHeader | None = None
        """The PROXY header the load balancer sent, once read."""
        self._offers = offers = _offers(config)
        self._policy = offers.policy
        self._line_limit = offers.line_limit

    def advertised(self) -> Extensions:
        """The extensions this server offers now (STARTTLS only before TLS;
        PLAIN and LOGIN only under TLS when ``auth_requires_tls``)."""
        offers = self._offers
        return offers.secure if self._session.tls else offers.plain

    def greeting(self) -> Reply:
        """The usual greeting: ``220 <hostname> ESMTP`` (``LMTP`` in LMTP mode)."""
        return self._offers.greeting

    def ehlo_reply(self) -> Reply:
        """The reply to the EHLO, LHLO or HELO awaiting one, built from the config."""
        owed = self._owed
        if isinstance(owed, Helo):
            return self._offers.helo_reply
        if not isinstance(owed, (Ehlo, Lhlo)):
            raise LocalProtocolError(f"no EHLO, LHLO or HELO awaits a reply (owed: {owed!r})")
        first = f"{self.config.hostname} greets {owed.domain}"
        if len(first.encode("utf-8", "surrogateescape")) + 6 > _MAX_REPLY_LINE:
            first = self.config.hostname  # the echo is courtesy; the limit is a rule
        offers = self._offers
        tail = offers.secure_lines if self._session.tls else offers.plain_lines
        # The lines after the first were checked once, as a Reply, when the
        # offers were worked out; the first is this client's, checked here.
        _check_text("Reply", "text", first)
        return _trusted(Reply, 250, (first, *tail), None, None)

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS is done: EHLO is needed again."""
        self._check_usable()
        self._start_tls()

    def receive_data(self, data: bytes) -> None:
        """Give the engine bytes from the peer; ``b""`` means the peer closed."""
        if self._proxy is not None and not self._peer_closed and self._error is None:
            self._proxy.receive_data(bytes(data))
            if not data:
                self._peer_closed = True
            return
        if data and self._error is None and not self._peer_closed:
            # The usual case, without the calls: bytes go to the content
            # reader while content flows, else to the command buffer.
            content = self._content
            if content is not None and content._final is None:
                content._input.append(data if type(data) is bytes else bytes(data))
            else:
                self._buffer.feed(data)
            return
        super().receive_data(data)

    def _feed(self, data: bytes) -> None:
        # While content flows, bytes go to the content reader; once it has
        # found the end, what follows belongs to the command stream (its
        # leftover was moved to the buffer first, so order is kept).
        content = self._content
        if content is not None and content.final is None:
            content.feed(data)
        else:
            self._buffer.feed(data)

    def _owe(self, event: Answered | CommandError, *, refusal: bool = False) -> None:
        self._owed = event
        self._owed_refusal = refusal
        session = self._session
        if session.lmtp and type(event) is not CommandError:
            self._owed_left = session.replies_owed(event)  # type: ignore[arg-type]
        else:
            self._owed_left = 1

    def next_event(self) -> Event | Sentinel:
        """The next thing the client said, or NEED_DATA, or PAUSED."""
        if self._error is not None:
            raise self._error
        if self._proxy is not None:
            return self._next_proxy(self._proxy)
        state = self._session.state
        if state is CLOSED:
            return _trusted(ConnectionClosed)
        if self._owed is not None or state is TLS_HANDSHAKE:
            return PAUSED
        if self._content is not None:
            return self._next_content(self._content)
        if self._chunk_left is not None:
            return self._next_chunk()
        buffer = self._buffer
        if buffer._start == len(buffer._data):  # nothing unread: the usual wait
            return self._closed() if self._peer_closed else NEED_DATA
        limit = _MAX_AUTH_LINE if state is AUTH_EXCHANGE else self._line_limit
        item = buffer.take_line(limit)
        if item is None:
            return self._closed() if self._peer_closed else NEED_DATA
        kind: type | None = None
        if isinstance(item, TooLong):
            event: Command | CommandError = _trusted(
                CommandError, item.head, Reply(500, "line too long", "5.5.2")
            )
            if state is AUTH_EXCHANGE:
                kind = AuthResponse
        elif state is AUTH_EXCHANGE:
            event, kind = parse_auth_response(item)
        else:
            raw = item.data
            # BDAT is read ahead of anything else (see _bdat); the usual line is not one.
            bdat = self._bdat(raw) if raw[:1] in (b"B", b"b") and self.config.chunking else None
            event, kind = parse_command(item, self._session, self.config, self._policy)
            if bdat is not None:
                return self._start_chunk(bdat, event)
        self._owed_command = _trusted(AuthResponse, b"") if kind is AuthResponse else None
        if self._session.lmtp:
            self._owe(event)
        else:  # _owe, without the call: one reply owed, not a refusal of content
            self._owed = event
            self._owed_refusal = False
            self._owed_left = 1
        return event

    def _next_proxy(self, parser: ProxyParser) -> Event | Sentinel:
        try:
            header = parser.next()
        except ProxyError as error:
            self._error = error
            raise
        if not isinstance(header, ProxyHeader):
            return NEED_DATA
        self._proxy = None
        self.proxy_header = header
        if parser.leftover:
            self._buffer.feed(parser.leftover)
        return header

    def _bdat(self, line: bytes) -> Bdat | None:
        """A BDAT line's size, read before anything else judges the line: its
        octets must be consumed whatever the verdict (RFC 3030 section 2)."""
        if not self.config.chunking or line[:5].upper() not in (b"BDAT ", b"BDAT"):
            return None
        try:
            command = parse_bdat(line.decode("ascii", "replace")[5:])
        except BdatSyntaxError as error:
            self._fail(str(error), Reply(501, "bad BDAT size: closing", "5.5.4"))
        return command

    def _start_chunk(self, bdat: Bdat, event: Command | CommandError) -> Event | Sentinel:
        self._chunk_left = bdat.size
        self._owed_command = bdat if isinstance(event, Bdat) else None
        self._pending_chunk_event = event
        return self._next_chunk()

    def _next_chunk(self) -> Event | Sentinel:
        left = self._chunk_left
        assert left is not None
        event = self._pending_chunk_event
        assert event is not None
        if left:
            data = self._buffer.take(left)
            if not data:
                return self._closed() if self._peer_closed else NEED_DATA
            self._chunk_left = left = left - len(data)
            if isinstance(event, Bdat):
                self._chunk_total += len(data)
                limit = self.config.max_message_size
                if limit is None or self._chunk_total <= limit:
                    return _new_chunk(data)
            if left:
                return self._next_chunk()
        self._chunk_left = None
        limit = self.config.max_message_size
        if isinstance(event, Bdat):
            if limit is not None and self._chunk_total > limit:
                refused = _trusted(
                    MessageRefused,
                    Reply(552, f"message larger than the {limit} octets allowed", "5.3.4"),
                )
                self._owe(event, refusal=True)
                return refused
            self._owe(event)
        else:
            self._owe(event)
        return event

    def _next_content(self, content: ContentReader) -> Event | Sentinel:
        chunk = content.read()
        final = content.final
        if final is not None and content.leftover:
            self._buffer.feed(content.leftover)
            content.leftover = b""
        if chunk is not None:
            return _new_chunk(chunk)
        if final is None:
            return self._closed() if self._peer_closed else NEED_DATA
        self._content = None
        self._owe(_MESSAGE_END, refusal=type(final) is MessageRefused)
        return final

    def send(self, event: Event) -> bytes:
        """The bytes for a reply (or ``ConnectionClosed()``: b"", and CLOSED)."""
        owed = self._owed
        kind = type(owed)
        session = self._session
        if (
            kind in _PLAIN_ANSWERS
            and type(event) is Reply
            and self._owed_left == 1
            and not self._owed_refusal
            and self._error is None
            and event.code != 421
            and session.state is not CLOSED
        ):
            # The usual case, decided once per (state, command, reply) and
            # remembered: the wire bytes and where the reply leads.
            extensions = session.extensions
            key = (
                session.state,
                kind,
                id(event),
                extensions is not None and "ENHANCEDSTATUSCODES" in extensions._index,
            )
            known = _TRANSITIONS.get(key)
            if known is None or known[0] is not event:
                known = _transition(key, session, owed, event)  # type: ignore[arg-type]
            _, data, target, accepted, settles = known
            session.advance(owed, target, accepted)  # type: ignore[arg-type]
            self._owed = None
            self._owed_left = 0
            return self._answered(data) if settles else data
        if self._error is not None:
            raise self._error
        if type(event) is not Reply:
            if isinstance(event, ConnectionClosed):
                session.state = CLOSED
                return b""
            if not isinstance(event, Reply):
                raise LocalProtocolError(f"a server sends Reply events, not {event!r}")
        reply = event
        code = reply.code
        if self._proxy is not None and code != 421:
            raise LocalProtocolError("read the PROXY header (next_event) before greeting")
        if session.state is CLOSED:
            raise LocalProtocolError("the connection is closed")
        if owed is None and code != 421:
            raise LocalProtocolError(
                f"no command awaits a reply in state {session.state.name} "
                f"(only 421 may be sent unasked), got {reply!r}"
            )
        refused = kind is CommandError or self._owed_refusal
        if owed is not None and code != 421:
            if refused:
                if code < 400:
                    what = owed.reply if isinstance(owed, CommandError) else "the message"
                    raise LocalProtocolError(
                        f"the engine refused this ({what!r}): it must be answered "
                        f"4yz or 5yz, not {code}"
                    )
            else:
                assert not isinstance(owed, CommandError)
                fault = session.reply_fault(owed, reply)
                if fault is not None:
                    raise LocalProtocolError(fault)
                if code == 334 and kind in (Auth, AuthResponse):
                    _check_challenge(reply)
        if kind is CommandError or owed is None:
            answered: Answered | None = self._owed_command
        else:
            answered = owed  # type: ignore[assignment]
        data = _wire(reply, session.default_enhanced(answered or _MESSAGE_END, reply))
        if code == 421:
            session.state = CLOSED
        else:
            self._owed_left -= 1
            if self._owed_left > 0:
                return data  # LMTP: more per-recipient replies are owed
            if answered is not None and (kind is not CommandError or self._owed_command):
                session.apply(answered, reply)
        return self._answered(data)

    def _answered(self, data: bytes) -> bytes:
        """The reply owed was sent: get ready for what the state now reads."""
        self._owed = None
        self._owed_command = None
        self._owed_refusal = False
        session = self._session
        state = session.state
        if state is IN_MESSAGE and self._content is None:
            config = self.config
            self._content = ContentReader(
                config.max_text_line, config.max_message_size, config.bare_line_ending
            )
            if self._buffer:
                self._content.feed(self._buffer.take_all())
        elif state in _SETTLED:
            self._content = None
            if session.mail is None:
                self._chunk_total = 0
        if state is TLS_HANDSHAKE and self._buffer:
            self._start_tls()  # raises: commands were pipelined after STARTTLS
        return data


def _check_challenge(reply: Reply) -> None:
    """RFC 4954 section 4: a 334 to AUTH carries one line of base64."""
    try:
        if len(reply.lines) != 1 or reply.enhanced is not None:
            raise ValueError
        base64.b64decode(reply.lines[0], validate=True)
    except (binascii.Error, ValueError):
        raise LocalProtocolError(
            f"a 334 to AUTH carries one line of base64 (RFC 4954 section 4), got {reply!r}"
        ) from None


# Commands whose replies only move the state (and keep MAIL and RCPT): the
# reply to one of these is judged once per (state, command, reply object,
# whether ENHANCEDSTATUSCODES is in force) and remembered. Replies are
# immutable and usually module constants; the entry holds its reply, so the
# id in the key cannot be reused while it is kept. Cleared when full, so
# replies made afresh each time cost one lookup and never pile up.
_PLAIN_ANSWERS = frozenset({Mail, Rcpt, Data, MessageEnd, Rset, Noop, Quit, Vrfy, Expn, Help})
_TRANSITIONS: dict[
    tuple[State, type, int, bool], tuple[Reply, bytes, State | None, bool, bool]
] = {}
_TRANSITIONS_SIZE = 256
# The states after which no content or chunk is under way (see _answered).
_SETTLED = frozenset({GREETED, READY, CLOSED})


def _transition(
    key: tuple[State, type, int, bool], session: Session, owed: Answered, reply: Reply
) -> tuple[Reply, bytes, State | None, bool, bool]:
    """Judge ``reply`` to ``owed`` (raises LocalProtocolError when it cannot
    answer it, remembering nothing) and remember the verdict under ``key``:
    the reply, its bytes, the state it leads to, whether it accepted, and
    whether that state needs _answered (content starts or the transaction
    is over)."""
    fault = session.reply_fault(owed, reply)
    if fault is not None:
        raise LocalProtocolError(fault)
    data = _wire(reply, session.default_enhanced(owed, reply))
    target, accepted = outcome(session.state, type(owed), reply.code) or (None, False)
    settles = target in _SETTLED or target is IN_MESSAGE or target is TLS_HANDSHAKE
    known = (reply, data, target, accepted, settles)
    if len(_TRANSITIONS) >= _TRANSITIONS_SIZE:
        _TRANSITIONS.clear()
    _TRANSITIONS[key] = known
    return known


# What recent one-line replies (complete, CRLF-ended lines) parse to: servers
# send the same few again and again ("250 2.1.0 Ok"), so each is parsed
# once. Cleared when full, so replies that all differ cost one lookup.
_ONE_LINE_REPLIES: dict[bytes, tuple[int, tuple[str, ...], tuple[str, ...], str | None]] = {}
_ONE_LINE_REPLIES_SIZE = 256

# The wire form of recent replies: most servers send the same few replies
# over and over, and Reply is immutable. Cleared when full, so replies that
# are all different ("queued as <id>") cost one lookup and never pile up.
_WIRE_CACHE: dict[tuple[Reply, str | None], bytes] = {}
_WIRE_CACHE_SIZE = 256
_MESSAGE_END = MessageEnd()
# A chunk is made for every read of content: its maker, without _trusted's lookup.
_new_chunk: Callable[[bytes], MessageChunk] = _maker(MessageChunk)


def _wire(reply: Reply, enhanced: str | None) -> bytes:
    """The bytes for ``reply``, with the default ``enhanced`` code if any."""
    key = (reply, enhanced)
    data = _WIRE_CACHE.get(key)
    if data is None:
        if enhanced is not None:
            reply = _trusted(Reply, reply.code, reply.lines, enhanced, None)
        data = _write_checked(reply)
        if len(_WIRE_CACHE) >= _WIRE_CACHE_SIZE:
            _WIRE_CACHE.clear()
        _WIRE_CACHE[key] = data
    return data


def _write_checked(reply: Reply) -> bytes:
    data = write_reply(reply)
    if len(data) > _MAX_REPLY_LINE:
        for line in data.split(b"\r\n"):
            if len(line) + 2 > _MAX_REPLY_LINE:
                raise LocalProtocolError(
                    f"reply line longer than {_MAX_REPLY_LINE} octets with its CRLF "
                    f"(RFC 5321 4.5.3.1.5): {line[:60]!r}..."
                )
    return data


class ClientConnection(_Connection):
    """The client side of one SMTP connection: commands out, replies in.

    ``next_event()`` returns a ``Reply`` (whose ``answers`` names the command
    it answers: in LMTP, the replies after the content answer the accepted
    ``Rcpt`` they report on), ``ConnectionClosed``, ``NEED_DATA``, or
    ``PAUSED`` while a TLS handshake is under way. ``tls=True`` starts the
    connection as already secure (implicit TLS, RFC 8314).
    """

    __slots__ = (
        "_chunk_left",
        "_code",
        "_lines",
        "_pending",
        "_per_recipient",
        "_policy",
        "_projected",
        "_writer",
        "config",
    )

    def __init__(self, config: ClientConfig | None = None, *, tls: bool = False) -> None:
        self.config = config = config or ClientConfig()
        super().__init__(tls=tls, lmtp=config.lmtp)
        self._policy = Policy(require_tls=config.require_tls)
        self._pending: deque[Answered] = deque([Greeting()])
        self._projected = self._session.copy()
        self._lines: list[str] = []
        self._code = 0
        self._writer: ContentWriter | None = None
        self._chunk_left = 0  # BDAT octets the application still has to send
        self._per_recipient: list[Rcpt] = []  # LMTP: recipients still to hear about

    @property
    def pending(self) -> tuple[Command | MessageEnd, ...]:
        """The commands sent and not yet answered, oldest first."""
        pending = self._pending
        if not pending or type(pending[0]) is Greeting:
            return ()  # nothing may be sent before the greeting is answered
        return tuple(pending)  # type: ignore[arg-type]

    def receive_data(self, data: bytes) -> None:
        """Give the engine bytes from the peer; ``b""`` means the peer closed."""
        if type(data) is bytes and data and self._error is None and not self._peer_closed:
            self._buffer.feed(data)  # the usual case, without the calls
            return
        super().receive_data(data)

    def tls_started(self) -> None:
        """The TLS handshake after the 220 to STARTTLS is done: the client
        must send EHLO again, and knows no extension until then."""
        self._check_usable()
        self._start_tls()
        self._project()

    def next_event(self) -> Event | Sentinel:
        """The next reply from the server, NEED_DATA, or PAUSED during TLS."""
        if self._error is not None:
            raise self._error
        state = self._session.state
        if state is CLOSED:
            return _trusted(ConnectionClosed)
        if state is TLS_HANDSHAKE:
            return PAUSED
        config = self.config
        buffer = self._buffer
        lines = self._lines
        while True:
            item = buffer.take_line(config.max_reply_line)
            if type(item) is not Line:
                if isinstance(item, TooLong) or buffer.overflowing:
                    # No reply can mend this, so say so now rather than at the LF.
                    self._fail(
                        f"reply line longer than {config.max_reply_line} octets "
                        "(RFC 5321 4.5.3.1.5)"
                    )
                return self._closed() if self._peer_closed else NEED_DATA
            if not lines and item.crlf:
                known = _ONE_LINE_REPLIES.get(item.data)
                if known is not None:
                    return self._answer(*known)
            try:
                code, last, text = parse_reply_line(item, config.strict)
            except RemoteProtocolError as error:
                self._error = error
                raise
            if last and not lines:
                # A one-line reply, the usual kind.
                received: tuple[str, ...] = (text,)
                parsed = (code, received, *_split_enhanced(code, received))
                if item.crlf:
                    if len(_ONE_LINE_REPLIES) >= _ONE_LINE_REPLIES_SIZE:
                        _ONE_LINE_REPLIES.clear()
                    _ONE_LINE_REPLIES[item.data] = parsed
                return self._answer(*parsed)
            if lines and code != self._code:
                self._fail(
                    f"every line of a multiline reply must carry the same code "
                    f"(RFC 5321 4.2.1): {self._code} then {code}"
                )
            self._code = code
            lines.append(text)
            if len(lines) > config.max_reply_lines:
                self._fail(f"reply longer than {config.max_reply_lines} lines")
            if last:
                break
        received = tuple(lines)
        lines.clear()
        return self._answer(code, received, *_split_enhanced(code, received))

    def _answer(
        self,
        code: int,
        received: tuple[str, ...],
        lines: tuple[str, ...],
        enhanced: str | None,
    ) -> Reply:
        """The reply ``code`` with ``received`` lines (``lines`` and
        ``enhanced`` once the enhanced code is taken off) to the oldest
        pending command."""
        session = self._session
        pending = self._pending
        if not pending:
            if code != 421:
                self._fail(f"reply {code} {received[0]!r} came when no command awaited one")
            session.state = CLOSED
            return _reply(code, lines, enhanced, None)
        command = pending[0]
        answers: Command | MessageEnd | None
        per_recipient = code != 421 and session.lmtp and session.per_recipient(command)
        if per_recipient:
            # RFC 2033 4.2: after the content, one reply per accepted RCPT.
            if not self._per_recipient:
                self._per_recipient = list(session.recipients)
            answers = self._per_recipient[0]
        else:
            answers = None if type(command) is Greeting else command  # type: ignore[assignment]
        reply = _reply(code, lines, enhanced, answers)
        fault = session.reply_fault(command, reply)
        if fault is not None:
            self._fail(f"server broke the protocol: {fault}")
        if per_recipient:
            self._per_recipient.pop(0)
            if self._per_recipient:
                return reply
        pending.popleft()
        if code == 334 and isinstance(command, (Auth, AuthResponse)):
            try:
                base64.b64decode(received[0], validate=True)
            except (binascii.Error, ValueError):
                self._fail(f"334 challenge is not base64 (RFC 4954 section 4): {received[0]!r}")
        # What the projection assumed of this command, needed only when
        # commands of the group are still pending (found before the state moves).
        assumed = _accepted(session, command) if pending else None
        session.apply(command, reply)
        state = session.state
        if state is IN_MESSAGE:
            if isinstance(command, Data):
                self._writer = ContentWriter(self.config.bare_line_ending)
        else:
            self._writer = None
        if state is TLS_HANDSHAKE and self._buffer:
            self._start_tls()  # raises: replies were injected before the handshake
        if state is CLOSED:
            pending.clear()
        if assumed is None or not pending:
            self._projected = session.copy()
        elif code // 100 != assumed.code // 100 or isinstance(command, (Ehlo, Helo, Lhlo)):
            # The projection assumed this command would be accepted as such;
            # only when it was not does the rest of the group need replaying.
            self._project()
        return reply

    def _project(self) -> None:
        projected = self._session.copy()
        for command in self._pending:
            projected.apply(command, _accepted(projected, command))
        self._projected = projected

    def send(self, event: Event) -> bytes:
        """The bytes for a command, a piece of content or the end of content."""
        if self._error is not None:
            raise self._error
        if type(event) in _COMMAND_TYPES:
            # The usual case, without the isinstance chain below (which
            # also takes what derives from a command class).
            return self._send_command(event)  # type: ignore[arg-type]
        if isinstance(event, ConnectionClosed):
            self._session.state = CLOSED
            return b""
        state = self._session.state
        if state is CLOSED:
            raise LocalProtocolError("the connection is closed")
        pending = self._pending
        if isinstance(event, MessageChunk) and (
            self._chunk_left or (not event.data and pending and isinstance(pending[-1], Bdat))
        ):
            # RFC 3030 section 2: exactly the announced octets, sent as they are.
            size = len(event.data)
            if size > self._chunk_left:
                raise LocalProtocolError(
                    f"BDAT announced {self._chunk_left} more octets, got {size}"
                )
            self._chunk_left -= size
            return event.data
        if isinstance(event, (MessageChunk, MessageEnd)):
            writer = self._writer
            if writer is None or pending:
                raise LocalProtocolError(
                    f"message content may only be sent after DATA was answered 354, or "
                    f"after BDAT for its octets (state {state.name}, awaiting "
                    f"{len(pending)} replies)"
                )
            if isinstance(event, MessageChunk):
                return writer.write(event.data)
            data = writer.end()
            self._writer = None
            pending.append(event)
            self._project()
            return data
        if isinstance(event, (Reply, MessageRefused, CommandError, ProxyHeader)):
            raise LocalProtocolError(f"a client sends commands and content, not {event!r}")
        return self._send_command(event)

    def _send_command(self, command: Command) -> bytes:
        state = self._session.state
        if state is CLOSED:
            raise LocalProtocolError("the connection is closed")
        if self._chunk_left:
            raise LocalProtocolError(
                f"the last BDAT still needs {self._chunk_left} octets of content"
            )
        pending = self._pending
        if pending:
            last = pending[-1]
            if isinstance(last, Greeting):
                raise LocalProtocolError("wait for the server's greeting before sending commands")
            extensions = self._session.extensions
            if extensions is None or not extensions.pipelining:
                raise LocalProtocolError(
                    f"wait for the reply to {_verb(last)}: PIPELINING is not in force (RFC 2920)"
                )
            # RFC 2920 3.1: the end of content may be followed by the next
            # transaction's commands in the same group; DATA and the like not.
            if type(last) in GROUP_ENDERS:
                raise LocalProtocolError(
                    f"{_verb(last)} ends a pipelined group: wait for its reply (RFC 2920 3.1)"
                )
        if self._writer is not None:
            raise LocalProtocolError("send the message content and MessageEnd first")
        if state is IN_MESSAGE and not pending:
            raise LocalProtocolError("the message content is not finished")
        projected = self._projected
        refusal = check_command(command, projected, self._policy)
        if refusal is not None:
            raise LocalProtocolError(
                f"cannot send {_verb(command)} in state {projected.state.name}: "
                f"{refusal.text} (a server must answer {refusal.code} {refusal.enhanced})"
            )
        data = write_command(command)
        # Every limit is at least RFC 5321's 512 octets: only a longer line
        # needs the limit worked out.
        if len(data) > _MIN_COMMAND_LINE:
            kind = type(command)
            limit = (
                _MAX_AUTH_LINE
                if kind in (Auth, AuthResponse)
                else command_line_limit(kind, projected, _MIN_COMMAND_LINE)
            )
            if len(data) > limit:
                # RFC 5321 4.5.3.1.4: a server need not take a longer line.
                raise LocalProtocolError(
                    f"{_verb(command)} line is {len(data)} octets with its CRLF; "
                    f"at most {limit} may be sent (RFC 5321 4.5.3.1.4)"
                )
        pending.append(command)
        projected.apply(command, _accepted(projected, command))
        if isinstance(command, Bdat):
            self._chunk_left = command.size
        return data

    def send_group(self, commands: Iterable[Command]) -> bytes:
        """The bytes for a pipelined group of commands (RFC 2920), all or
        nothing: when one of them cannot be sent, LocalProtocolError is
        raised and the connection is as it was before the call, so nothing
        of the group needs to reach the wire."""
        pending = len(self._pending)
        projected = self._projected.copy()
        chunk_left = self._chunk_left
        try:
            out = []
            for command in commands:
                if isinstance(command, (MessageChunk, MessageEnd)):
                    raise LocalProtocolError("a group holds commands, not message content")
                out.append(self.send(command))
        except LocalProtocolError:
            while len(self._pending) > pending:
                self._pending.pop()
            self._projected = projected
            self._chunk_left = chunk_left
            raise
        return b"".join(out)


def _accepted(session: Session, command: Answered) -> Reply:
    """The reply that would accept ``command`` (what the projection assumes)."""
    entry = TABLE[session.state].get(type(command))
    return (
        _ACCEPTED_250
        if type(entry) is not Step
        else _ACCEPTED.get(entry.success_class, _ACCEPTED_250)
    )


def _verb(command: Answered) -> str:
    if isinstance(command, MessageEnd):
        return "the end of the message"
    return type(command).__name__.upper()
