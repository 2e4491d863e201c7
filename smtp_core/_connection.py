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

from collections import deque
from typing import NoReturn

from ._config import ClientConfig, ServerConfig
from ._content import ContentReader, ContentWriter
from ._events import (
    Command,
    CommandError,
    ConnectionClosed,
    Data,
    Ehlo,
    Event,
    Helo,
    Mail,
    MessageChunk,
    MessageEnd,
    MessageRefused,
    Rcpt,
    Reply,
    _reply,
    _trusted,
)
from ._extensions import Extensions
from ._readers import parse_command, parse_reply_line
from ._receivebuffer import ReceiveBuffer, TooLong
from ._state import (
    GROUP_ENDERS,
    Answered,
    Greeting,
    Session,
    State,
    check_command,
    command_line_limit,
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


class _Connection:
    __slots__ = ("_buffer", "_error", "_peer_closed", "_session")

    def __init__(self) -> None:
        self._buffer = ReceiveBuffer()
        self._peer_closed = False
        self._error: ProtocolError | None = None
        self._session = Session()

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
    def recipients(self) -> int:
        """How many RCPTs the open transaction has had accepted."""
        return self._session.recipients

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error

    def _fail(self, message: str, reply: Reply | None = None) -> NoReturn:
        self._error = RemoteProtocolError(message, reply)
        raise self._error

    def _closed(self) -> ConnectionClosed:
        self._session.state = State.CLOSED
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
    ``PAUSED`` while a reply is owed (the greeting first of all).
    """

    __slots__ = ("_content", "_line_limit", "_owed", "_owed_refusal", "config")

    def __init__(self, config: ServerConfig | None = None) -> None:
        super().__init__()
        self.config = config or ServerConfig()
        self._owed: Answered | CommandError | None = Greeting()
        self._owed_refusal = False
        self._content: ContentReader | None = None
        advertised = Session(extensions=self.advertised())
        self._line_limit = max(
            command_line_limit(kind, advertised, self.config.max_command_line)
            for kind in (Mail, Rcpt)
        )

    def advertised(self) -> Extensions:
        """The extensions this server's config advertises."""
        config = self.config
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
        extensions = Extensions(tuple(keywords))
        if config.extra_extensions:
            extra = Extensions.from_lines(config.extra_extensions)
            extensions = Extensions(extensions.keywords + extra.keywords)
        return extensions

    def greeting(self) -> Reply:
        """The usual greeting: ``220 <hostname> ESMTP`` (RFC 5321 4.2)."""
        return Reply(220, f"{self.config.hostname} ESMTP")

    def ehlo_reply(self) -> Reply:
        """The reply to the EHLO or HELO awaiting one, built from the config."""
        owed = self._owed
        if isinstance(owed, Helo):
            return Reply(250, self.config.hostname)
        if not isinstance(owed, Ehlo):
            raise LocalProtocolError(f"no EHLO or HELO awaits a reply (owed: {owed!r})")
        first = f"{self.config.hostname} greets {owed.domain}"
        if len(first.encode("utf-8", "surrogateescape")) + 6 > _MAX_REPLY_LINE:
            first = self.config.hostname  # the echo is courtesy; the limit is a rule
        return Reply(250, (first, *self.advertised().lines()))

    def _feed(self, data: bytes) -> None:
        # While content flows, bytes go to the content reader; once it has
        # found the end, what follows belongs to the command stream (its
        # leftover was moved to the buffer first, so order is kept).
        content = self._content
        if content is not None and content.final is None:
            content.feed(data)
        else:
            self._buffer.feed(data)

    def next_event(self) -> Event | Sentinel:
        """The next thing the client said, or NEED_DATA, or PAUSED."""
        self._check_usable()
        if self._session.state is State.CLOSED:
            return _trusted(ConnectionClosed)
        if self._owed is not None:
            return PAUSED
        content = self._content
        if content is not None:
            chunk = content.read()
            final = content.final
            if final is not None and content.leftover:
                self._buffer.feed(content.leftover)
                content.leftover = b""
            if chunk is not None:
                return _trusted(MessageChunk, chunk)
            if final is None:
                return self._closed() if self._peer_closed else NEED_DATA
            self._content = None
            self._owed = _trusted(MessageEnd)
            self._owed_refusal = isinstance(final, MessageRefused)
            return final
        item = self._buffer.take_line(self._line_limit)
        if item is None:
            return self._closed() if self._peer_closed else NEED_DATA
        if isinstance(item, TooLong):
            event: Event = _trusted(
                CommandError, item.head, Reply(500, "command line too long", "5.5.2")
            )
        else:
            event = parse_command(item, self._session, self.config)
        self._owed = event  # type: ignore[assignment]
        return event

    def send(self, event: Event) -> bytes:
        """The bytes for a reply (or ``ConnectionClosed()``: b"", and CLOSED)."""
        self._check_usable()
        if isinstance(event, ConnectionClosed):
            self._session.state = State.CLOSED
            return b""
        if not isinstance(event, Reply):
            raise LocalProtocolError(f"a server sends Reply events, not {event!r}")
        if self._session.state is State.CLOSED:
            raise LocalProtocolError("the connection is closed")
        owed = self._owed
        reply = event
        if owed is None and reply.code != 421:
            raise LocalProtocolError(
                f"no command awaits a reply in state {self._session.state.name} "
                f"(only 421 may be sent unasked), got {reply!r}"
            )
        if owed is not None and reply.code != 421:
            if isinstance(owed, CommandError) or self._owed_refusal:
                if reply.code < 400:
                    refused = owed.reply if isinstance(owed, CommandError) else "the message"
                    raise LocalProtocolError(
                        f"the engine refused this ({refused!r}): it must be answered "
                        f"4yz or 5yz, not {reply.code}"
                    )
            else:
                fault = self._session.reply_fault(owed, reply)
                if fault is not None:
                    raise LocalProtocolError(fault)
        answered: Answered = (
            MessageEnd() if owed is None or isinstance(owed, CommandError) else owed
        )
        enhanced = self._session.default_enhanced(answered, reply)
        if enhanced is not None:
            reply = Reply(reply.code, reply.lines, enhanced)
        data = _write_checked(reply)
        if owed is None or isinstance(owed, CommandError):
            if reply.code == 421:
                self._session.state = State.CLOSED
        else:
            self._session.apply(owed, reply)
        self._owed = None
        self._owed_refusal = False
        if self._session.state is State.IN_MESSAGE and self._content is None:
            config = self.config
            self._content = ContentReader(
                config.max_text_line, config.max_message_size, config.bare_line_ending
            )
            if self._buffer:
                self._content.feed(self._buffer.take_all())
        elif self._session.state is State.CLOSED:
            self._content = None
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
    it answers), ``ConnectionClosed`` or ``NEED_DATA``.
    """

    __slots__ = ("_code", "_lines", "_pending", "_projected", "_writer", "config")

    def __init__(self, config: ClientConfig | None = None) -> None:
        super().__init__()
        self.config = config or ClientConfig()
        self._pending: deque[Answered] = deque([Greeting()])
        self._projected = Session()
        self._lines: list[str] = []
        self._code = 0
        self._writer: ContentWriter | None = None

    @property
    def pending(self) -> tuple[Command | MessageEnd, ...]:
        """The commands sent and not yet answered, oldest first."""
        return tuple(c for c in self._pending if not isinstance(c, Greeting))

    def next_event(self) -> Event | Sentinel:
        """The next reply from the server, or NEED_DATA."""
        self._check_usable()
        if self._session.state is State.CLOSED:
            return _trusted(ConnectionClosed)
        config = self.config
        while True:
            item = self._buffer.take_line(config.max_reply_line)
            if isinstance(item, TooLong) or self._buffer.overflowing:
                # No reply can mend this, so say so now rather than at the LF.
                self._fail(
                    f"reply line longer than {config.max_reply_line} octets (RFC 5321 4.5.3.1.5)"
                )
            if item is None:
                return self._closed() if self._peer_closed else NEED_DATA
            try:
                code, last, text = parse_reply_line(item, config.strict)
            except RemoteProtocolError as error:
                self._error = error
                raise
            if self._lines and code != self._code:
                self._fail(
                    f"every line of a multiline reply must carry the same code "
                    f"(RFC 5321 4.2.1): {self._code} then {code}"
                )
            self._code = code
            self._lines.append(text)
            if len(self._lines) > config.max_reply_lines:
                self._fail(f"reply longer than {config.max_reply_lines} lines")
            if last:
                break
        lines = tuple(self._lines)
        self._lines.clear()
        return self._answer(code, lines)

    def _answer(self, code: int, lines: tuple[str, ...]) -> Reply:
        if not self._pending:
            if code != 421:
                self._fail(f"reply {code} {lines[0]!r} came when no command awaited one")
            self._session.state = State.CLOSED
            return _reply(code, lines, None)
        command = self._pending.popleft()
        answers = None if isinstance(command, Greeting) else command
        reply = _reply(code, lines, answers)
        fault = self._session.reply_fault(command, reply)
        if fault is not None:
            self._fail(f"server broke the protocol: {fault}")
        self._session.apply(command, reply)
        if self._session.state is State.IN_MESSAGE:
            if isinstance(command, Data):
                self._writer = ContentWriter(self.config.bare_line_ending)
        else:
            self._writer = None
        if self._session.state is State.CLOSED:
            self._pending.clear()
        self._project()
        return reply

    def _project(self) -> None:
        projected = self._session.copy()
        for command in self._pending:
            entry = projected.entry(type(command))
            success = getattr(entry, "success_class", 2)
            projected.apply(command, _ACCEPTED.get(success, _ACCEPTED[2]))
        self._projected = projected

    def send(self, event: Event) -> bytes:
        """The bytes for a command, a piece of content or the end of content."""
        self._check_usable()
        if isinstance(event, ConnectionClosed):
            self._session.state = State.CLOSED
            return b""
        state = self._session.state
        if state is State.CLOSED:
            raise LocalProtocolError("the connection is closed")
        pending = self._pending
        if isinstance(event, (MessageChunk, MessageEnd)):
            writer = self._writer
            if writer is None or pending:
                raise LocalProtocolError(
                    f"message content may only be sent after DATA was answered 354 "
                    f"(state {state.name}, awaiting {len(pending)} replies)"
                )
            if isinstance(event, MessageChunk):
                return writer.write(event.data)
            data = writer.end()
            self._writer = None
            pending.append(event)
            self._project()
            return data
        if isinstance(event, (Reply, MessageRefused, CommandError)):
            raise LocalProtocolError(f"a client sends commands and content, not {event!r}")
        command: Command = event
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
        if state is State.IN_MESSAGE and not pending:
            raise LocalProtocolError("the message content is not finished")
        refusal = check_command(
            command, self._projected, extra_mail=None, extra_rcpt=None, max_recipients=None
        )
        if refusal is not None:
            raise LocalProtocolError(
                f"cannot send {_verb(command)} in state {self._projected.state.name}: "
                f"{refusal.text} (a server must answer {refusal.code} {refusal.enhanced})"
            )
        data = write_command(command)
        limit = command_line_limit(type(command), self._projected, _MIN_COMMAND_LINE)
        if len(data) > limit:
            # RFC 5321 4.5.3.1.4: a server need not take a longer line.
            raise LocalProtocolError(
                f"{_verb(command)} line is {len(data)} octets with its CRLF; "
                f"at most {limit} may be sent (RFC 5321 4.5.3.1.4)"
            )
        pending.append(command)
        entry = self._projected.entry(type(command))
        success = getattr(entry, "success_class", 2)
        self._projected.apply(command, _ACCEPTED[success])
        return data


def _verb(command: Answered) -> str:
    if isinstance(command, MessageEnd):
        return "the end of the message"
    return type(command).__name__.upper()
