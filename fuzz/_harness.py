# The invariants every fuzz target checks, as plain functions of the fuzzer's bytes.
#
# Each ``check_*`` function takes one input, drives one entry point of
# smtp_core with it and raises (AssertionError, or the unexpected exception
# itself) when an invariant breaks; it returns a short summary of what the
# input did, which make_corpus.py uses to keep seeds that do different things.
# The functions need nothing but smtp_core and the standard library, so the
# atheris targets (fuzz_*.py) and pytest (tests/test_fuzz.py) run the same code.
#
# Decisions a reader must know:
# - An input is a few control octets (configuration, how to split the bytes
#   into reads, which replies or commands the harness answers with) and then
#   the payload; the layout of each target is in its docstring. Control
#   octets missing from a short input read as zero.
# - Engines are run twice, once with all bytes in one read and once cut into
#   reads derived from the input, and must hand out the same events. The one
#   allowed difference is STARTTLS: whether bytes arrived before the handshake
#   (an injection, refused) depends on the reads by nature.
# - Buffered octets are read from the engines' private fields: the public
#   API exposes none, and tracemalloc per input would cost more than the
#   parsing itself. A renamed field fails loudly here, never silently.
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Final

from smtp_core import (
    NEED_DATA,
    PAUSED,
    Address,
    Auth,
    AuthCancel,
    AuthResponse,
    BareLinePolicy,
    Bdat,
    ClientConfig,
    ClientConnection,
    CommandError,
    ConnectionClosed,
    Data,
    Ehlo,
    Event,
    Expn,
    Helo,
    Help,
    Lhlo,
    LocalProtocolError,
    Mail,
    MailParams,
    MessageChunk,
    MessageEnd,
    MessageRefused,
    Noop,
    ProxyHeader,
    ProxyParser,
    Quit,
    Rcpt,
    RcptParams,
    RemoteProtocolError,
    Reply,
    Rset,
    ServerConfig,
    ServerConnection,
    StartTls,
    State,
    Vrfy,
    Xclient,
    Xforward,
    sasl,
)
from smtp_core._address import PathError, parse_forward_path, parse_reverse_path
from smtp_core._parameters import (
    ParameterError,
    parse_mail_params,
    parse_rcpt_params,
    xtext_decode,
    xtext_encode,
)
from smtp_core._proxy import ProxyError, write_v1, write_v2

__all__ = [
    "CHECKS",
    "check_address",
    "check_client",
    "check_parameters",
    "check_proxy",
    "check_server",
    "iter_corpus",
]

Check = Callable[[bytes], str]

# --------------------------------------------------------------------------
# Reading the fuzzer's bytes


def _split_input(data: bytes, control: int) -> tuple[bytes, bytes]:
    """The first ``control`` octets (zero-padded) and the payload after them."""
    return data[:control].ljust(control, b"\0"), data[control:]


def _pieces(payload: bytes, seed: int) -> tuple[list[bytes], list[bool]]:
    """``payload`` cut into reads, and for each read whether the harness feeds
    the next one early (between two events rather than at NEED_DATA).

    ``seed``'s top two bits pick the largest read (1, 3, 17 or 300 octets);
    a small linear congruential generator picks each size from it.
    """
    largest = (1, 3, 17, 300)[seed >> 6]
    state = seed * 2654435761 + 1
    pieces: list[bytes] = []
    early: list[bool] = []
    position = 0
    while position < len(payload):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        size = 1 + (state >> 8) % largest
        pieces.append(payload[position : position + size])
        early.append(bool(state & 0x10))
        position += size
    return pieces, early


def _utf8_text(payload: bytes) -> str:
    # surrogateescape keeps every octet: invalid UTF-8 becomes lone surrogates,
    # which the parsers must refuse like any other control character.
    return payload.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# Shared checks


def _check_remote_error(
    conn: ServerConnection | ClientConnection, error: RemoteProtocolError
) -> None:
    """A RemoteProtocolError names the fault, carries a refusal or nothing,
    and leaves the connection unusable: every later call raises it again."""
    assert str(error), "a RemoteProtocolError without a message"
    reply = error.reply
    assert reply is None or (isinstance(reply, Reply) and 400 <= reply.code < 600), reply
    for again in (conn.next_event, lambda: conn.receive_data(b"x")):
        try:
            again()
        except RemoteProtocolError as raised:
            assert raised is error, f"a second error after {error!r}: {raised!r}"
        else:
            raise AssertionError(f"the connection is still usable after {error!r}")


def _rebuilt(value: object) -> object:
    """``value`` built again through its validating constructor, and so the
    values nested in it: the parsers build them without validation, on the
    promise that what they build is valid, and this holds them to it."""
    if isinstance(value, tuple):
        return tuple(_rebuilt(item) for item in value)
    if isinstance(value, Reply):  # its constructor takes the text, not the fields
        try:
            return Reply(value.code, value.lines, value.enhanced)
        except LocalProtocolError as error:
            raise AssertionError(f"the parser built {value!r}, which is invalid: {error}") from None
    if not is_dataclass(value) or isinstance(value, type):
        return value
    kind = type(value)
    arguments = {
        item.name: _rebuilt(getattr(value, item.name)) for item in fields(value) if item.init
    }
    try:
        return kind(**arguments)
    except LocalProtocolError as error:
        raise AssertionError(f"the parser built {value!r}, which is invalid: {error}") from None


def _error_entry(error: BaseException) -> tuple[str, str, str, object]:
    reply = getattr(error, "reply", None)
    return ("error", type(error).__name__, str(error), reply)


def _merge_chunks(log: Sequence[object]) -> list[object]:
    """Consecutive MessageChunks joined (their boundaries carry no meaning),
    and the chunks of a message that did not end in MessageEnd dropped: how
    much of a refused or cut-off message was handed out before the fault or
    the close was noticed depends on the reads, and none of it is delivered."""
    merged: list[object] = []
    for entry in log:
        if isinstance(entry, MessageChunk) and merged and isinstance(merged[-1], MessageChunk):
            merged[-1] = MessageChunk(merged[-1].data + entry.data)
        elif (
            isinstance(entry, (MessageRefused, ConnectionClosed))
            and merged
            and isinstance(merged[-1], MessageChunk)
        ):
            merged[-1] = entry
        else:
            merged.append(entry)
    return merged


def _is_injection(entry: object) -> bool:
    return (
        isinstance(entry, tuple)
        and len(entry) == 4
        and entry[0] == "error"
        and "after STARTTLS" in str(entry[2])
    )


def _is_starttls(entry: object) -> bool:
    """A STARTTLS handed out (server) or sent (client)."""
    return isinstance(entry, StartTls) or (
        isinstance(entry, tuple) and any(isinstance(item, StartTls) for item in entry)
    )


def _assert_same_logs(whole: list[object], split: list[object], what: str) -> None:
    """The same events however the bytes were read, but for what STARTTLS
    makes of bytes that came before the handshake (RFC 3207 section 4.2: an
    injection when they were there, the next command when they were not)."""
    if whole == split:
        return
    common = 0
    for left, right in zip(whole, split, strict=False):
        if left != right:
            break
        common += 1
    handshake = any(_is_starttls(entry) for entry in whole[:common]) and (
        any(_is_injection(entry) for entry in whole[common:])
        or any(_is_injection(entry) for entry in split[common:])
    )
    assert handshake, (
        f"{what}: the reads changed the events at entry {common}:\n"
        f"  one read: {whole[common : common + 3]!r}\n"
        f"  split:    {split[common : common + 3]!r}"
    )


# --------------------------------------------------------------------------
# The server engine


_SERVER_CONTROL = 7
_FUZZ_HOST = "mx.fuzz.example"
_MAX_AUTH_LINE = 12288  # RFC 4954 section 4
# MAIL may grow by SIZE, SMTPUTF8, DSN and AUTH= (RFC 1870, 6531, 3461, 4954).
_MAIL_LINE_GROWTH = 26 + 10 + 100 + 500 + 500
# A PROXY v2 header with UNIX addresses and ProxyParser's default TLV limit.
_PROXY_HEADER_MAX = 16 + 216 + 4096
# The content reader's held-back tail ("\r\n.\r") and its virtual CRLF.
_CONTENT_SLACK = 8


def _server_config(first: int, second: int) -> ServerConfig:
    small = bool(first & 0x80)
    return ServerConfig(
        hostname=_FUZZ_HOST,
        strict=bool(first & 0x01),
        lmtp=bool(first & 0x02),
        bare_line_ending=(
            BareLinePolicy.REJECT,
            BareLinePolicy.NORMALIZE,
            BareLinePolicy.ALLOW,
            BareLinePolicy.REJECT,
        )[(first >> 2) & 3],
        auth_mechanisms=("PLAIN", "LOGIN", "SCRAM-SHA-256") if first & 0x10 else (),
        auth_requires_tls=not second & 0x40,
        starttls=bool(first & 0x20),
        proxy_protocol=bool(first & 0x40),
        max_message_size=64 if small else 10_240_000,
        max_recipients=2 if small else 100,
        max_text_line=40 if small else 1000,
        dsn=bool(second & 0x01),
        xclient=bool(second & 0x02),
        xforward=bool(second & 0x04),
        binarymime=bool(second & 0x08),
        require_tls=bool(second & 0x10),
        requiretls=bool(second & 0x20),
        chunking=not second & 0x80,
    )


def _server_buffer_limit(config: ServerConfig) -> int:
    line = config.max_command_line + _MAIL_LINE_GROWTH
    if config.auth_mechanisms:
        line = max(line, _MAX_AUTH_LINE)
    if config.proxy_protocol:
        line = max(line, _PROXY_HEADER_MAX)
    return line + _CONTENT_SLACK


def _server_buffered(server: ServerConnection) -> int:
    """Octets the server engine holds that it has not handed out yet."""
    total = len(server._buffer)
    content = server._content
    if content is not None:
        total += len(content._held) + sum(map(len, content._input)) + len(content.leftover)
    proxy = server._proxy
    if proxy is not None:
        total += len(proxy._buffer) + len(proxy._leftover)
    return total


class _Greeting:
    """What the server's first reply answers."""

    def __repr__(self) -> str:
        return "<greeting>"


_GREETING: Final = _Greeting()


def _refusal(plan: int) -> Reply:
    return Reply(451, "try again later") if plan & 0x08 else Reply(550, "refused")


def _server_reply(server: ServerConnection, owed: object, plan: int) -> Reply:
    """The harness's answer to ``owed``: usually the one that moves the
    session on (7 times in 8), else a refusal; 0xff is a 421."""
    if plan == 0xFF:
        return Reply(421, "closing", "4.3.2")
    accept = plan & 0x07 != 0
    if isinstance(owed, (_Greeting, ProxyHeader, Xclient)):
        return Reply(220, f"{_FUZZ_HOST} ESMTP") if accept else Reply(554, "no service")
    if isinstance(owed, (CommandError, MessageRefused)):
        return owed.reply if not plan & 0x10 else _refusal(plan)
    if isinstance(owed, (Ehlo, Helo, Lhlo)):
        return server.ehlo_reply() if accept else _refusal(plan)
    if isinstance(owed, Data):
        return Reply(354, "end with <CRLF>.<CRLF>") if accept else Reply(554, "no data")
    if isinstance(owed, (Auth, AuthResponse)):
        if not accept:
            return Reply(535, "invalid credentials")
        return Reply(334, "UGFzc3dvcmQ6") if plan & 0x10 else Reply(235, "authenticated")
    if isinstance(owed, AuthCancel):
        return Reply(501, "authentication cancelled")
    if isinstance(owed, StartTls):
        return Reply(220, "go ahead") if accept else Reply(454, "TLS not available")
    if isinstance(owed, Quit):
        return Reply(221, "bye")
    return Reply(250, "ok") if accept else _refusal(plan)


# Where each command may be handed out (RFC 5321 4.1.4 and 3.3, RFC 3030 2,
# RFC 4954 4, RFC 3207 4): the table restated independently.
_SERVER_STATES: Final[dict[type, frozenset[State]]] = {
    Mail: frozenset({State.GREETED}),
    Rcpt: frozenset({State.IN_TRANSACTION, State.HAS_RECIPIENTS}),
    Data: frozenset({State.HAS_RECIPIENTS}),
    Bdat: frozenset({State.HAS_RECIPIENTS, State.IN_CHUNKING}),
    StartTls: frozenset({State.GREETED}),
    Auth: frozenset({State.GREETED}),
    AuthResponse: frozenset({State.AUTH_EXCHANGE}),
    AuthCancel: frozenset({State.AUTH_EXCHANGE}),
    Xforward: frozenset({State.GREETED}),
}
_SERVER_EVENTS: Final = (
    Ehlo,
    Helo,
    Lhlo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth,
    AuthResponse,
    AuthCancel,
    Xclient,
    Xforward,
    CommandError,
    MessageChunk,
    MessageEnd,
    MessageRefused,
    ConnectionClosed,
    ProxyHeader,
)


def _unstuff_and_end(content: bytes) -> bytes | None:
    """Reference reading of DATA content (RFC 5321 4.1.1.4 and 4.5.2): the
    bytes up to the first CRLF "." CRLF (the CRLF before the dot included;
    the DATA line's own CRLF counts), with one leading dot taken off every
    line; None when the end has not come."""
    framed = b"\r\n" + content
    end = framed.find(b"\r\n.\r\n")
    if end < 0:
        return None
    return framed[: end + 2].replace(b"\r\n.", b"\r\n")[2:]


def _normalize(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def _has_bare_line_ending(data: bytes) -> bool:
    blanked = data.replace(b"\r\n", b"")
    return b"\r" in blanked or b"\n" in blanked


@dataclass
class _Message:
    """Content being received: from which stream offset (DATA only), and the
    chunks handed out so far."""

    offset: int | None
    chunks: list[bytes] = field(default_factory=list)


def _check_delivered_data(
    config: ServerConfig, stream: bytes, message: _Message, body: bytes
) -> None:
    """A DATA message that ended in MessageEnd: its body is the reference
    reading of the stream, within every limit of the config."""
    assert message.offset is not None
    expected = _unstuff_and_end(stream[message.offset :])
    assert expected is not None, "MessageEnd without CRLF.CRLF in the stream"
    if config.bare_line_ending is BareLinePolicy.NORMALIZE:
        expected = _normalize(expected)
    assert body == expected, f"DATA body {body[:80]!r} is not the stream's {expected[:80]!r}"
    assert body == b"" or body.endswith(b"\r\n"), body[-10:]
    if config.bare_line_ending is not BareLinePolicy.ALLOW:
        assert not _has_bare_line_ending(body), "bare CR or LF delivered"
    if config.max_message_size is not None:
        assert len(body) <= config.max_message_size, len(body)
    if config.max_text_line is not None:
        # Measured to each LF, the LF counted: the CRLF length of CRLF lines,
        # and how the engine measures around a bare LF that ALLOW lets in.
        longest = max(len(line) for line in body.split(b"\n")) + 1
        assert longest <= config.max_text_line, longest


def _check_server_event(server: ServerConnection, event: object) -> None:
    assert isinstance(event, _SERVER_EVENTS), f"not a server event: {event!r}"
    assert _rebuilt(event) == event, event
    if isinstance(event, (CommandError, MessageRefused)):
        assert 400 <= event.reply.code < 600, event
    if isinstance(event, MessageChunk):
        assert event.data, "an empty MessageChunk"
    allowed = _SERVER_STATES.get(type(event))
    if allowed is not None:
        assert server.state in allowed, f"{event!r} handed out in state {server.state.name}"
    if isinstance(event, StartTls):
        assert not server.tls, "STARTTLS handed out under TLS"
    if isinstance(event, Auth):
        assert not server.authenticated, "a second AUTH handed out"
    assert len(server.recipients) <= server.config.max_recipients


def _run_server(
    config: ServerConfig, plan: bytes, stream: bytes, pieces: list[bytes], early: list[bool]
) -> list[object]:
    """Drive a ServerConnection over ``pieces`` (then the close), answering
    every event as ``plan`` says; the log of events, sent bytes and errors."""
    server = ServerConnection(config)
    log: list[object] = []
    reads = iter([*pieces, b""])
    early_flags = itertools.cycle(early or [False])
    fed = 0
    closed = False
    owed: object = _GREETING
    replies = 0
    message: _Message | None = None
    limit = _server_buffer_limit(config)
    budget = 8 * len(stream) + 4 * len(pieces) + 64

    def feed() -> None:
        nonlocal fed, closed
        piece = next(reads)
        server.receive_data(piece)
        fed += len(piece)
        closed = piece == b""

    try:
        for _ in range(budget):
            event = server.next_event()
            if event is NEED_DATA:
                assert not closed, "NEED_DATA after the peer closed"
                buffered = _server_buffered(server)
                assert buffered <= limit, f"{buffered} octets buffered, limit {limit}"
                feed()
                continue
            if event is PAUSED:
                if server.state is State.TLS_HANDSHAKE:
                    server.tls_started()
                    log.append("tls started")
                    continue
                reply = _server_reply(server, owed, plan[replies % len(plan)])
                replies += 1
                try:
                    sent = server.send(reply)
                except LocalProtocolError as error:
                    raise AssertionError(f"{reply!r} to {owed!r} refused: {error}") from error
                log.append(("sent", sent))
                if isinstance(owed, Data) and server.state is not State.IN_MESSAGE:
                    message = None  # refused: no content follows
                continue
            _check_server_event(server, event)
            log.append(event)
            if isinstance(event, ConnectionClosed):
                break
            if isinstance(event, Data):
                message = _Message(offset=fed - len(server._buffer))
            elif isinstance(event, MessageChunk):
                if message is None:
                    message = _Message(offset=None)  # BDAT content
                message.chunks.append(event.data)
                if message.offset is None and config.max_message_size is not None:
                    total = sum(map(len, message.chunks))
                    assert total <= config.max_message_size, f"{total} BDAT octets handed out"
            elif isinstance(event, MessageEnd):
                assert message is not None and message.offset is not None, "MessageEnd unasked"
                _check_delivered_data(config, stream, message, b"".join(message.chunks))
            if isinstance(event, (MessageEnd, MessageRefused, Bdat)):
                message = None
            if not isinstance(event, MessageChunk):
                owed = event
            if next(early_flags) and not closed:
                feed()
        else:
            raise AssertionError(f"no ConnectionClosed within {budget} steps")
    except RemoteProtocolError as error:
        _check_remote_error(server, error)
        if not isinstance(error, ProxyError):
            assert error.reply is not None, f"no reply to send before closing: {error!r}"
        log.append(_error_entry(error))
    return log


def check_server(data: bytes) -> str:
    """ServerConnection fed the client's bytes, answered by the harness.

    Layout: config octets (2), split seed (1), reply plan (4), client bytes.
    Checks: only RemoteProtocolError escapes (and leaves the connection
    failed); every reply the harness picks from the RFC's choices is accepted
    by ``send``; commands come out only in the states the RFC allows them,
    each one its validating constructor accepts; buffered octets stay under
    the line limits at every NEED_DATA; a DATA body is exactly the reference
    un-stuffing of the stream up to CRLF.CRLF, within the size, line and
    bare-line-ending rules; BDAT content never passes the size limit; and
    the same events and replies come however the bytes were split into reads.
    """
    control, stream = _split_input(data, _SERVER_CONTROL)
    config = _server_config(control[0], control[1])
    plan = control[3:7]
    whole = _run_server(config, plan, stream, [stream] if stream else [], [False])
    pieces, early = _pieces(stream, control[2])
    split = _run_server(config, plan, stream, pieces, early)
    _assert_same_logs(_merge_chunks(whole), _merge_chunks(split), "server")
    return "server:" + ",".join(sorted({_summary(entry) for entry in whole}))


def _summary(entry: object) -> str:
    """A word for a log entry: the event's type, or what was sent or raised."""
    if isinstance(entry, tuple):
        item = entry[1]
        if isinstance(item, bytes):
            return str(entry[0]) + item[:3].decode("ascii", "replace")
        return f"{entry[0]} {item if isinstance(item, str) else type(item).__name__}"
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Reply):
        return str(entry.code)
    return type(entry).__name__


# --------------------------------------------------------------------------
# The client engine

_CLIENT_CONTROL = 6
_SENDER = Address("sender", "fuzz.example")
_RECIPIENTS = (Address("first", "fuzz.example"), Address("second", "fuzz.example"))
_BODIES = (
    b"Subject: fuzz\r\n\r\nhello\r\n",
    b".leading dot\r\n..two\r\n.\r\n",
    b"bare\nLF and bare\rCR\r\n",
    b"no final line end",
    b"",
)
_MAX_SENDS = 48


def _client_config(flags: int) -> ClientConfig:
    return ClientConfig(
        local_hostname="client.fuzz.example",
        strict=bool(flags & 0x01),
        lmtp=bool(flags & 0x02),
        require_tls=bool(flags & 0x04),
        bare_line_ending=BareLinePolicy.REJECT if flags & 0x08 else BareLinePolicy.NORMALIZE,
        max_reply_lines=4 if flags & 0x10 else 1000,
    )


def _client_menu(config: ClientConfig, choice: int) -> list[Event]:
    """What the harness may send next, in the order a sender goes through
    a session; the harness tries them from ``choice`` on."""
    hello: Event = Lhlo("client.fuzz.example") if config.lmtp else Ehlo("client.fuzz.example")
    params = MailParams(size=30, body=None) if choice & 0x40 else MailParams()
    return [
        hello,
        Mail(_SENDER, params),
        Rcpt(_RECIPIENTS[0]),
        Rcpt(_RECIPIENTS[1]),
        Data(),
        Bdat(5, last=bool(choice & 0x20)),
        Rset(),
        Noop(),
        StartTls(),
        Auth("PLAIN", b"\0user\0password"),
        AuthResponse(b"dXNlcg=="),
        AuthCancel(),
        Helo("client.fuzz.example"),
        Quit(),
    ]


def _client_snapshot(client: ClientConnection) -> tuple[object, ...]:
    return (client.state, client.pending, client.extensions, client.transaction, client.tls)


@dataclass
class _ClientDriver:
    client: ClientConnection
    plan: bytes
    log: list[object] = field(default_factory=list)
    sent: deque[object] = field(default_factory=deque)
    sends: int = 0
    turn: int = 0
    quit_sent: bool = False

    def _try(self, event: Event) -> bool:
        before = _client_snapshot(self.client)
        try:
            self.client.send(event)
        except LocalProtocolError as error:
            after = _client_snapshot(self.client)
            assert after == before, f"a refused send changed the client: {before} -> {after}"
            self.log.append(("refused", type(event).__name__))
            assert str(error)
            return False
        self.sends += 1
        if not isinstance(event, MessageChunk):
            self.sent.append(event)
        self.log.append(("sent", event))
        self.quit_sent = self.quit_sent or isinstance(event, Quit)
        return True

    def act(self) -> None:
        """Send what the plan says now: content when DATA was accepted, else
        the first command of the menu, from the plan's choice on, that the
        engine allows; more of them when PIPELINING lets the harness."""
        client = self.client
        for _ in range(3):
            if self.quit_sent or self.sends >= _MAX_SENDS:
                return
            choice = self.plan[self.turn % len(self.plan)]
            self.turn += 1
            if client.state is State.IN_MESSAGE and not client.pending:
                body = _BODIES[choice % len(_BODIES)]
                if not self._try(MessageChunk(body)):
                    self._try(MessageChunk(_BODIES[0]))
                self._try(MessageEnd())
                return
            menu = _client_menu(client.config, choice)
            start = choice % len(menu)
            for event in menu[start:] + menu[:start]:
                if self._try(event):
                    if isinstance(event, Bdat):
                        assert self._try(MessageChunk(b"x" * event.size))
                    break
            extensions = client.extensions
            if not (choice & 0x80 and extensions is not None and extensions.pipelining):
                return

    def received(self, reply: Reply) -> None:
        """Pair ``reply`` with the oldest command awaiting one (RFC 2920
        section 3: replies come in order)."""
        assert 200 <= reply.code <= 559, reply
        assert reply.lines and len(reply.lines) <= self.client.config.max_reply_lines
        assert _rebuilt(reply) == reply, reply
        answered = reply.answers
        if not self.sent:
            assert answered is None, f"{reply!r} answers nothing that was sent"
        else:
            head = self.sent[0]
            per_recipient = (
                self.client.config.lmtp
                and isinstance(answered, Rcpt)
                and isinstance(head, (MessageEnd, Bdat))
            )
            assert answered == head or per_recipient, f"{reply!r} does not answer {head!r}"
            pending = self.client.pending
            if pending == tuple(self.sent)[1:] or reply.code == 421:
                self.sent.popleft()
            if reply.code == 421 or self.client.state is State.CLOSED:
                self.sent.clear()
        assert self.client.pending == tuple(self.sent), (self.client.pending, self.sent)


def _client_buffered(client: ClientConnection) -> int:
    return len(client._buffer)


def _run_client(
    config: ClientConfig, plan: bytes, pieces: list[bytes], early: list[bool]
) -> list[object]:
    client = ClientConnection(config)
    driver = _ClientDriver(client, plan)
    log = driver.log
    reads = iter([*pieces, b""])
    early_flags = itertools.cycle(early or [False])
    closed = False
    budget = 4 * sum(map(len, pieces)) + 4 * len(pieces) + 64
    try:
        for _ in range(budget):
            event = client.next_event()
            if event is NEED_DATA:
                assert not closed, "NEED_DATA after the peer closed"
                assert _client_buffered(client) <= config.max_reply_line
                assert len(client._lines) <= config.max_reply_lines
                piece = next(reads)
                client.receive_data(piece)
                closed = piece == b""
                continue
            if event is PAUSED:
                assert client.state is State.TLS_HANDSHAKE, "PAUSED outside a TLS handshake"
                client.tls_started()
                log.append("tls started")
                driver.act()
                continue
            log.append(event)
            if isinstance(event, ConnectionClosed):
                break
            assert isinstance(event, Reply), f"not a client event: {event!r}"
            log.append(("answers", event.answers))
            driver.received(event)
            driver.act()
            if next(early_flags) and not closed:
                piece = next(reads)
                client.receive_data(piece)
                closed = piece == b""
        else:
            raise AssertionError(f"no ConnectionClosed within {budget} steps")
    except RemoteProtocolError as error:
        _check_remote_error(client, error)
        log.append(_error_entry(error))
    return log


def check_client(data: bytes) -> str:
    """ClientConnection fed a server's bytes, sending what the harness picks.

    Layout: config octet (1), split seed (1), command plan (4), server bytes.
    Checks: only RemoteProtocolError escapes next_event (and leaves the
    connection failed); a refused ``send`` (LocalProtocolError) changes
    nothing; every Reply has a code 200-559, at most ``max_reply_lines``
    lines, is one ``Reply()`` accepts (no control characters in its text),
    and answers the oldest command awaiting one; ``pending`` is what
    was sent and not answered; buffered octets stay under the reply line
    limit; and the same replies come however the bytes were split.
    """
    control, stream = _split_input(data, _CLIENT_CONTROL)
    config = _client_config(control[0])
    plan = control[2:6]
    whole = _run_client(config, plan, [stream] if stream else [], [False])
    pieces, early = _pieces(stream, control[1])
    split = _run_client(config, plan, pieces, early)
    _assert_same_logs(whole, split, "client")
    return "client:" + ",".join(sorted({_summary(entry) for entry in whole}))


# --------------------------------------------------------------------------
# Addresses


PathResult = tuple[Address | None, str] | PathError
# RFC 5321 4.5.3.1.3: a path is at most 256 octets, its angle brackets included.
_MAX_PATH = 256


def _parse_path(
    parse: Callable[..., tuple[Address | None, str]], text: str, strict: bool
) -> PathResult:
    try:
        return parse(text, strict=strict)
    except PathError as error:
        assert str(error), "a PathError without a message"
        return error


def _check_parsed_address(address: Address) -> None:
    """A parsed address is one the validating constructor accepts, and its
    text form parses back to it, alone and as a path (RFC 5321 4.1.2)."""
    assert _rebuilt(address) == address, address
    written = str(address)
    assert Address.parse(written) == address, (written, address)
    assert address.is_ascii == written.isascii(), written
    if len(written.encode("utf-8", "surrogateescape")) + 2 > _MAX_PATH:
        return  # a mailbox Address.parse takes, too long for a path
    parsed = parse_forward_path(f"<{written}>", strict=False)
    assert parsed == (address, ""), (written, parsed)
    if address.domain is not None:
        parsed_reverse = parse_reverse_path(f"<{written}>", strict=False)
        assert parsed_reverse == (address, ""), (written, parsed_reverse)


def _check_path_result(text: str, result: PathResult) -> str:
    if isinstance(result, PathError):
        return "refused"
    address, remainder = result
    assert text.endswith(remainder), (text, remainder)
    assert not remainder.startswith(" "), remainder
    if address is None:
        return "null"
    _check_parsed_address(address)
    return "mailbox"


def check_address(data: bytes) -> str:
    """Address.parse and the MAIL/RCPT path parsers on the input as text.

    Layout: the whole input is UTF-8 (invalid octets become lone surrogates).
    Checks: only PathError (paths) and LocalProtocolError (Address.parse)
    escape; a parsed address is valid and round-trips through ``str``, alone
    and as a path; the rest of the line is a suffix of the input without its
    leading spaces; whatever strict mode accepts, lenient mode accepts the
    same; forward and reverse paths agree on every mailbox with a domain; a
    mailbox Address.parse takes is, in angle brackets, the same path.
    """
    text = _utf8_text(data)
    outcomes: list[str] = []
    results: dict[bool, tuple[PathResult, PathResult]] = {}
    for strict in (True, False):
        forward = _parse_path(parse_forward_path, text, strict)
        reverse = _parse_path(parse_reverse_path, text, strict)
        outcomes += [_check_path_result(text, forward), _check_path_result(text, reverse)]
        if not isinstance(forward, PathError) and forward[0] and forward[0].domain is not None:
            assert reverse == forward, f"forward {forward!r}, reverse {reverse!r}"
        if not isinstance(reverse, PathError) and reverse[0] is not None:
            assert forward == reverse, f"reverse {reverse!r}, forward {forward!r}"
        results[strict] = (forward, reverse)
    for exact, lenient in zip(results[True], results[False], strict=True):
        if not isinstance(exact, PathError):
            assert lenient == exact, f"strict mode gave {exact!r}, lenient {lenient!r}"
    try:
        address = Address.parse(text)
    except LocalProtocolError as error:
        assert str(error)
        outcomes.append("refused")
    else:
        _check_parsed_address(address)
        outcomes.append("mailbox")
        if len(text.encode("utf-8", "surrogateescape")) + 2 <= _MAX_PATH:
            # The same mailbox in angle brackets is the same path.
            as_path = parse_forward_path(f"<{text}>", strict=False)
            assert as_path == (address, ""), (text, as_path)
    return "address:" + ",".join(outcomes)


# --------------------------------------------------------------------------
# MAIL and RCPT parameters


def check_parameters(data: bytes) -> str:
    """parse_mail_params, parse_rcpt_params and xtext_decode on the input as text.

    Layout: the whole input is UTF-8 (invalid octets become lone surrogates).
    Checks: only ParameterError with 501 5.5.4 (and ValueError for xtext)
    escapes; a parsed value, and every value nested in it, is one the
    validating constructors accept; ``str`` writes a wire form that parses
    back to the same value, whose keywords are ``keywords()``; decoded xtext
    encodes and decodes back.
    """
    text = _utf8_text(data)
    outcomes: list[str] = []
    parsers: tuple[Callable[[str], MailParams | RcptParams], ...] = (
        parse_mail_params,
        parse_rcpt_params,
    )
    for parse in parsers:
        try:
            params = parse(text)
        except ParameterError as error:
            assert (error.code, error.enhanced) == (501, "5.5.4"), error
            assert str(error) == error.message and error.message
            outcomes.append("refused")
            continue
        assert _rebuilt(params) == params, params
        wire = str(params)
        assert parse(wire) == params, (wire, params)
        keywords = tuple(word.partition("=")[0] for word in wire.split(" ") if word)
        assert params.keywords() == keywords, (params.keywords(), keywords)
        outcomes.append("+".join(params.keywords()) or "empty")
    try:
        decoded = xtext_decode(text)
    except ValueError as error:
        assert str(error)
        outcomes.append("xtext refused")
    else:
        assert xtext_decode(xtext_encode(decoded)) == decoded, decoded
        outcomes.append("xtext")
    return "parameters:" + ",".join(outcomes)


# --------------------------------------------------------------------------
# SASL server mechanisms

_SASL_SEPARATOR = b"\xff\xfe"  # never inside UTF-8, so never inside a valid message
# RFC 2195 section 2's example exchange succeeds against these.
_CRAM_NONCE = "1896.697170952"
_CRAM_HOST = "postoffice.reston.mci.net"
_CRAM_PASSWORD = "tanstaaftanstaaf"


@dataclass(frozen=True)
class _ScramExample:
    """RFC 5802 section 5 / RFC 7677 section 3: user "user", password
    "pencil"; with this server nonce the RFC's exchange succeeds here."""

    hash_name: str
    salt: bytes
    server_nonce: str
    client_key: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def derive(cls, hash_name: str, salt_b64: str, server_nonce: str) -> _ScramExample:
        salt = base64.b64decode(salt_b64)
        salted = hashlib.pbkdf2_hmac(hash_name, b"pencil", salt, 4096)
        client_key = hmac.digest(salted, b"Client Key", hash_name)
        return cls(
            hash_name,
            salt,
            server_nonce,
            client_key,
            hashlib.new(hash_name, client_key).digest(),
            hmac.digest(salted, b"Server Key", hash_name),
        )

    def credentials(self) -> sasl.ScramCredentials:
        return sasl.ScramCredentials(self.salt, 4096, self.stored_key, self.server_key)


_SCRAM: Final = {
    "SCRAM-SHA-1": _ScramExample.derive("sha1", "QSXCR+Q6sek8bf92", "3rfcNHYJY1ZVvWVs7j"),
    "SCRAM-SHA-256": _ScramExample.derive(
        "sha256", "W22ZaJ0SNY7soEsUEjb6gQ==", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    ),
}
# How many challenges each mechanism may send before it must decide.
_MAX_CHALLENGES: Final = {
    "PLAIN": 1,
    "LOGIN": 2,
    "CRAM-MD5": 1,
    "SCRAM-SHA-1": 3,
    "SCRAM-SHA-256": 3,
    "XOAUTH2": 2,
    "OAUTHBEARER": 2,
    "EXTERNAL": 1,
}


@dataclass
class _Verifier:
    """The application's side: answers every question as the input's flags
    say and remembers what it was asked."""

    flags: int
    calls: list[tuple[object, ...]] = field(default_factory=list)

    @property
    def answer(self) -> bool:
        return bool(self.flags & 0x01)

    def check_password(self, authcid: str, password: str, authzid: str) -> bool:
        self.calls.append(("password", authcid, password, authzid, self.answer))
        return self.answer

    def lookup_password(self, authcid: str) -> str | None:
        found = _CRAM_PASSWORD if self.answer else None
        self.calls.append(("lookup", authcid, found))
        return found

    def lookup_scram(self, name: str) -> Callable[[str], sasl.ScramCredentials | None]:
        def lookup(authcid: str) -> sasl.ScramCredentials | None:
            found = _SCRAM[name].credentials() if self.answer else None
            self.calls.append(("scram", authcid, found is not None))
            return found

        return lookup

    def check_token(self, authcid: str, token: str) -> bool:
        self.calls.append(("token", authcid, token, self.answer))
        return self.answer

    def check_external(self, authzid: str) -> bool:
        self.calls.append(("external", authzid, self.answer))
        return self.answer

    def authorize(self, authcid: str, authzid: str) -> bool:
        allowed = bool(self.flags & 0x08)
        self.calls.append(("authorize", authcid, authzid, allowed))
        return allowed


def _sasl_server(name: str, verifier: _Verifier) -> sasl.ServerMechanism:
    if name == "PLAIN":
        return sasl.PlainServer(verifier.check_password)
    if name == "LOGIN":
        return sasl.LoginServer(verifier.check_password)
    if name == "CRAM-MD5":
        return sasl.CramMd5Server(
            verifier.lookup_password, hostname=_CRAM_HOST, nonce=lambda: _CRAM_NONCE
        )
    if name == "SCRAM-SHA-1":
        nonce = _SCRAM[name].server_nonce
        return sasl.ScramSha1Server(
            verifier.lookup_scram(name), authorize=verifier.authorize, nonce=lambda: nonce
        )
    if name == "SCRAM-SHA-256":
        nonce = _SCRAM[name].server_nonce
        return sasl.ScramSha256Server(
            verifier.lookup_scram(name), authorize=verifier.authorize, nonce=lambda: nonce
        )
    if name == "XOAUTH2":
        return sasl.XOAuth2Server(verifier.check_token, scope="https://mail.fuzz.example/")
    if name == "OAUTHBEARER":
        return sasl.OAuthBearerServer(verifier.check_token, scope="mail")
    assert name == "EXTERNAL", name
    return sasl.ExternalServer(verifier.check_external)


def _check_step(step: sasl.Step) -> None:
    if step.challenge is not None:
        assert isinstance(step.challenge, bytes)
        assert not step.success and step.reason is None and not step.is_malformed, step
    elif step.success:
        assert step.reason is None and not step.is_malformed, step
    else:
        assert isinstance(step.reason, str) and step.reason, step


def _scram_expected(
    example: _ScramExample, first: bytes, server_first: bytes, final: bytes
) -> tuple[bytes, bytes, bytes] | None:
    """RFC 5802 section 3, computed here: the proof the client-final message
    must carry, the one it does carry, and the server signature; None when
    the messages are not even shaped right."""
    try:
        first_text = first.decode("utf-8")
        final_text = final.decode("utf-8")
    except UnicodeDecodeError:
        return None
    bare = first_text.split(",", 2)[2] if first_text.count(",") >= 2 else None
    without_proof, marker, proof_text = final_text.rpartition(",p=")
    if bare is None or not marker:
        return None
    try:
        proof = base64.b64decode(proof_text, validate=True)
    except (binascii.Error, ValueError):
        return None
    auth_message = b",".join((bare.encode(), server_first, without_proof.encode()))
    signature = hmac.digest(example.stored_key, auth_message, example.hash_name)
    expected = bytes(a ^ b for a, b in zip(example.client_key, signature, strict=True))
    server_signature = hmac.digest(example.server_key, auth_message, example.hash_name)
    return expected, proof, server_signature


def _check_sasl_success(
    name: str, step: sasl.Step, verifier: _Verifier, transcript: list[tuple[bytes | None, bytes]]
) -> None:
    """Success is only ever reported for the identity the application's
    verifier approved, and for SCRAM and CRAM-MD5 only with the right proof,
    computed here independently of smtp_core."""
    calls = verifier.calls
    approved = [call for call in calls if call[-1] is True or (call[0] == "lookup" and call[2])]
    assert approved, f"{name} succeeded without the verifier's approval: {calls}"
    if name in ("PLAIN", "LOGIN"):
        _, authcid, _, authzid, _ = calls[-1]
        assert step.authcid == authcid and step.authzid == (authzid or None), (step, calls)
    elif name in ("XOAUTH2", "OAUTHBEARER"):
        _, authcid, _, _ = calls[-1]
        assert step.authcid == (authcid or None), (step, calls)
    elif name == "EXTERNAL":
        _, authzid, _ = calls[-1]
        assert step.authcid is None and step.authzid == (authzid or None), (step, calls)
    elif name == "CRAM-MD5":
        challenge, answer = transcript[-1]
        assert challenge is not None
        digest = answer.decode("utf-8").rpartition(" ")[2]
        expected = hmac.new(_CRAM_PASSWORD.encode(), challenge, "md5").hexdigest()
        assert digest.lower() == expected, (answer, expected)
        assert step.authcid == calls[-1][1], (step, calls)
    else:
        example = _SCRAM[name]
        first = transcript[0][1]
        server_first, final = transcript[1]
        assert server_first is not None
        computed = _scram_expected(example, first, server_first, final)
        assert computed is not None and computed[0] == computed[1], "SCRAM proof not verified"
        signature = transcript[2][0]
        assert signature == b"v=" + base64.b64encode(computed[2]), signature
        if step.authzid is not None and step.authzid != step.authcid:
            assert ("authorize", step.authcid, step.authzid, True) in calls, calls


def _check_sasl(name: str, data: bytes) -> str:
    control, payload = _split_input(data, 1)
    flags = control[0]
    messages = deque(payload.split(_SASL_SEPARATOR)) if payload else deque()
    verifier = _Verifier(flags)
    server = _sasl_server(name, verifier)
    initial: bytes | None
    mode = (flags >> 1) & 3
    if mode == 0:
        initial = None
    elif mode == 2:
        initial = b""
    else:
        initial = messages.popleft() if messages else b""
    step = server.start(initial)
    # (challenge it answers, response) pairs; the initial response answers None.
    transcript: list[tuple[bytes | None, bytes]] = []
    if initial is not None:
        transcript.append((None, initial))
    challenges = 0
    while True:
        _check_step(step)
        if step.is_final:
            break
        challenges += 1
        assert challenges <= _MAX_CHALLENGES[name], f"{name}: challenge {challenges}"
        response = messages.popleft() if messages else b""
        transcript.append((step.challenge, response))
        step = server.step(response)
    assert server.is_complete and server.outcome is step, (server.outcome, step)
    try:
        server.step(b"")
    except sasl.SaslError:
        pass
    else:
        raise AssertionError(f"{name}: step() after the outcome did not raise")
    if name in ("PLAIN", "LOGIN", "CRAM-MD5"):
        # RFC 4616 section 2: "If preparation fails or results in an empty
        # string, verification SHALL fail"; the verifier is never asked.
        for call in verifier.calls:
            assert call[1] and (call[0] != "password" or call[2]), f"{name} asked {call}"
    if step.success:
        _check_sasl_success(name, step, verifier, transcript)
    elif name.startswith("SCRAM") and step.reason == "invalid proof":
        # The converse: a proof computed right here is never refused.
        server_first, final = transcript[1]
        assert server_first is not None
        computed = _scram_expected(_SCRAM[name], transcript[0][1], server_first, final)
        assert computed is None or computed[0] != computed[1], "a right SCRAM proof refused"
    outcome = "success" if step.success else "malformed" if step.is_malformed else "failure"
    return f"sasl:{name}:{challenges}:{outcome}"


def _sasl_check(name: str) -> Check:
    def check(data: bytes) -> str:
        return _check_sasl(name, data)

    check.__name__ = "check_sasl_" + name.lower().replace("-", "_")
    check.__doc__ = (
        f"The {name} server mechanism fed the client's messages.\n\n"
        "Layout: flags (1: verifier answer, initial response mode, authorize\n"
        "answer), then the client's messages separated by 0xff 0xfe.\n"
        "Checks: client bytes never raise; every Step is a challenge or an\n"
        "outcome with a reason; the exchange ends within the mechanism's number\n"
        "of challenges and refuses steps after it; the verifier is never asked\n"
        "about a user name or password SASLprep emptied (RFC 4616 section 2);\n"
        "success only for the identity the verifier approved (and for SCRAM and\n"
        "CRAM-MD5 only with a proof computed right by the harness itself)."
    )
    return check


# --------------------------------------------------------------------------
# The PROXY protocol header


_PROXY_CONTROL = 2
_TLV_LIMITS = (4096, 0, 64, 65535)
_VERSIONS = (frozenset({1, 2}), frozenset({1}), frozenset({2}), frozenset({1, 2}))


def _proxy_outcome(
    pieces: list[bytes], versions: frozenset[int], max_tlv_size: int
) -> tuple[object, ...]:
    parser = ProxyParser(versions=versions, max_tlv_size=max_tlv_size)
    limit = max(107, 16 + 216 + max_tlv_size)
    result: object = NEED_DATA
    try:
        for piece in [*pieces, b""]:
            parser.receive_data(piece)
            assert len(parser._buffer) <= limit, f"{len(parser._buffer)} octets held"
            result = parser.next()
    except ProxyError as error:
        assert str(error) and error.reply is None, error
        total = sum(map(len, pieces))
        assert 0 <= error.offset <= total, (error.offset, total)
        return ("error", str(error), error.offset)
    assert result is not NEED_DATA, "NEED_DATA after the end of the stream"
    assert isinstance(result, ProxyHeader), result
    return ("header", result, parser.leftover)


def _without_checksum(header: ProxyHeader) -> tuple[object, ...]:
    tlvs = tuple((kind, b"" if kind == 0x03 else value) for kind, value in header.tlvs)
    return (header.version, header.command, header.family, header.transport,
            header.source, header.destination, tlvs)  # fmt: skip


def _check_proxy_header(header: ProxyHeader) -> None:
    """A parsed header is valid, its helpers work, and it writes back to
    bytes that parse to the same header."""
    rebuilt = ProxyHeader(
        header.version,
        header.command,
        header.family,
        header.transport,
        header.source,
        header.destination,
        header.tlvs,
    )
    assert rebuilt == header, (rebuilt, header)
    for helper in ("alpn", "authority", "unique_id", "netns"):
        getattr(header, helper)
    ssl = header.ssl
    if ssl is not None:
        for helper in ("is_ssl", "is_verified", "version", "common_name", "cipher"):
            getattr(ssl, helper)
    written = write_v1(header) if header.version == 1 else write_v2(header)
    again = _proxy_outcome([written], frozenset({header.version}), 65535)
    assert again[0] == "header", (written, again)
    reparsed = again[1]
    assert isinstance(reparsed, ProxyHeader)
    assert _without_checksum(reparsed) == _without_checksum(header), (reparsed, header)


def check_proxy(data: bytes) -> str:
    """ProxyParser, and ServerConnection with proxy_protocol, on the input.

    Layout: options (1: versions, TLV limit), split seed (1), then the bytes.
    Checks: only ProxyError escapes, with an offset inside the input; the
    parser holds at most one header's worth of octets; the verdict, offset
    and leftover are the same however the bytes were split; a parsed header
    is valid, its helpers work and it writes back to the same header; and a
    ServerConnection behind a proxy reaches the same verdict.
    """
    control, stream = _split_input(data, _PROXY_CONTROL)
    versions = _VERSIONS[control[0] & 3]
    max_tlv_size = _TLV_LIMITS[(control[0] >> 2) & 3]
    whole = _proxy_outcome([stream] if stream else [], versions, max_tlv_size)
    pieces, _ = _pieces(stream, control[1])
    split = _proxy_outcome(pieces, versions, max_tlv_size)
    assert split == whole, f"split {split!r}, one read {whole!r}"
    if whole[0] == "header":
        header = whole[1]
        assert isinstance(header, ProxyHeader)
        _check_proxy_header(header)
    if versions == frozenset({1, 2}) and max_tlv_size == 4096:
        server = ServerConnection(ServerConfig(proxy_protocol=True))
        try:
            server.receive_data(stream)
            server.receive_data(b"")
            event = server.next_event()
        except ProxyError as error:
            assert whole == ("error", str(error), error.offset), (whole, error)
        else:
            assert whole[0] == "header" and event == whole[1], (whole, event)
            assert server.proxy_header == event
    return f"proxy:{whole[0]}:{whole[1] if whole[0] == 'error' else ''}"[:60]


# --------------------------------------------------------------------------

CHECKS: Final[dict[str, Check]] = {
    "server": check_server,
    "client": check_client,
    "address": check_address,
    "parameters": check_parameters,
    "proxy": check_proxy,
    **{
        "sasl_" + name.lower().replace("-", "_"): _sasl_check(name)
        for name in (
            "PLAIN",
            "LOGIN",
            "CRAM-MD5",
            "SCRAM-SHA-1",
            "SCRAM-SHA-256",
            "XOAUTH2",
            "OAUTHBEARER",
            "EXTERNAL",
        )
    },
}
"""Every target's check, by the name of its corpus directory."""


def iter_corpus(directory: str) -> Iterator[bytes]:
    """The seed files of a corpus directory, in name order."""
    import os

    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as file:
            yield file.read()
