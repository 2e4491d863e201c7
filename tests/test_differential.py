"""Differential checks of both engines against real peers, all on 127.0.0.1.

1. Replies (RFC 5321 4.2, 4.2.1; RFC 2034; RFC 3463): aiosmtpd (PyPI) and
   Postfix's smtp-sink (Debian's postfix package, run with many of its
   options) answer conversations driven by the project's ClientConnection
   and by smtplib, through a recording TCP relay written here. Every
   server-to-client byte stream is then split into replies by the simple,
   independent parse below (CRLF lines, "ddd-" continues a reply) and fed to
   a ClientConnection, whole and one byte at a time: every reply must come out
   as a Reply with the same code, lines and enhanced code, and nothing may
   raise a ProtocolError.

2. Verdicts (RFC 5321 4.1.1.2, 4.1.1.3, 4.1.2, 4.1.3, 4.5.3.1; RFC 1870;
   RFC 6152; RFC 6531; RFC 3461): a corpus of MAIL FROM and RCPT TO lines goes
   to a live aiosmtpd and to a ServerConnection configured with the same
   extensions, in lenient (default) and strict mode. Each line is accepted
   (2yz) or refused (4yz/5yz) by each; every disagreement is listed in
   DISAGREEMENTS with the RFC section that settles it, and the test asserts
   that the disagreements found are exactly the listed ones.
"""

from __future__ import annotations

import base64
import os
import re
import selectors
import smtplib
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import AuthResult
from test_asyncio_server import free_port
from test_interop_postfix import SMTP_SINK, smtp_sink

import smtp_core as smtp
from smtp_core._parameters import parse_mail_params, parse_rcpt_params

TIMEOUT = 5.0
"""Seconds any single socket operation may take; every wait is bounded."""

needs_smtp_sink = pytest.mark.skipif(
    not os.path.exists(SMTP_SINK),
    reason="Postfix's smtp-sink (Debian package postfix, .ci/install-peers) not installed",
)

# =============================================================================
# The recording relay
# =============================================================================


@dataclass
class Recording:
    """Both directions of one relayed connection, byte for byte."""

    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    done: threading.Event = field(default_factory=threading.Event)


class RecordingRelay:
    """A TCP relay on 127.0.0.1 between any client and ``upstream_port``.

    Each accepted connection gets a thread that copies bytes both ways and
    records them. When one side closes, the relay half-closes the other and
    keeps reading until both are done, so a peer that hangs up early (smtp-sink
    -q, -Q, -A) loses nothing of what was said before.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.recordings: list[Recording] = []
        self._taken = 0
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            recording = Recording()
            self.recordings.append(recording)
            thread = threading.Thread(target=self._pump, args=(client, recording), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, client: socket.socket, recording: Recording) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), TIMEOUT)
        except OSError:
            client.close()
            recording.done.set()
            return
        peers = {client: upstream, upstream: client}
        with client, upstream, selectors.DefaultSelector() as selector:
            for sock in peers:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            open_sides = 2
            while open_sides and not self._stopped.is_set():
                ready = selector.select(TIMEOUT)
                if not ready:
                    break  # nobody said anything for TIMEOUT seconds
                for key, _ in ready:
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    target = peers[source]
                    if not data:
                        selector.unregister(source)
                        open_sides -= 1
                        with suppress(OSError):
                            target.shutdown(socket.SHUT_WR)
                        continue
                    if source is upstream:
                        recording.to_client += data
                    else:
                        recording.to_server += data
                    with suppress(OSError):
                        target.setblocking(True)
                        target.settimeout(TIMEOUT)
                        target.sendall(data)
                        target.setblocking(False)
        recording.done.set()

    def take(self) -> Recording:
        """The next finished connection's recording, in connection order."""
        for _ in range(int(TIMEOUT * 20)):
            if len(self.recordings) > self._taken:
                break
            threading.Event().wait(0.05)
        assert len(self.recordings) > self._taken, "the relay saw no connection"
        recording = self.recordings[self._taken]
        self._taken += 1
        assert recording.done.wait(TIMEOUT * 2), "the relayed connection did not finish"
        return recording

    def close(self) -> None:
        self._stopped.set()
        self.listener.close()
        self._acceptor.join(TIMEOUT)
        for thread in self._threads:
            thread.join(TIMEOUT * 2)


@contextmanager
def recording_relay(upstream_port: int) -> Iterator[RecordingRelay]:
    relay = RecordingRelay(upstream_port)
    try:
        yield relay
    finally:
        relay.close()


# =============================================================================
# The independent reply parse (RFC 5321 4.2, 4.2.1; RFC 2034 / RFC 3463)
# =============================================================================

# RFC 3463 section 2: class "." subject "." detail, 1 to 3 digits each after
# the class; RFC 2034 section 4 puts it first on every line of the reply.
_STATUS = re.compile(r"([245])\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class WireReply:
    """One reply as the bytes say: its code, the text of each line after
    "ddd-" or "ddd " (or nothing, for a code-only line), and its raw bytes."""

    code: int
    texts: tuple[str, ...]
    raw: bytes

    def expected(self) -> tuple[int, tuple[str, ...], str | None]:
        """(code, lines, enhanced) as a Reply should carry them: an enhanced
        status code is taken off the lines when every line starts with the
        same one and its class is the reply's first digit."""
        first = _STATUS.match(self.texts[0])
        if first is not None and int(first.group(1)) == self.code // 100:
            status = first.group()
            if all(t == status or t.startswith(status + " ") for t in self.texts):
                return self.code, tuple(t[len(status) + 1 :] for t in self.texts), status
        return self.code, self.texts, None


def split_replies(stream: bytes) -> list[WireReply]:
    """Split a server-to-client byte stream into replies.

    RFC 5321 4.2: a reply line is three digits, then SP, "-" or the line end,
    then text; 4.2.1: "-" means more lines of the same reply follow. The
    stream must end at a line end (a reply cut short would be a finding).
    """
    *lines, rest = stream.split(b"\r\n")
    assert rest == b"", f"the stream ends inside a line: {rest[-80:]!r}"
    replies: list[WireReply] = []
    texts: list[str] = []
    raw = bytearray()
    for line in lines:
        assert b"\n" not in line and b"\r" not in line, f"bare CR or LF in {line!r}"
        code, separator = line[:3], line[3:4]
        assert code.isdigit() and len(code) == 3, f"no reply code in {line!r}"
        assert separator in (b"", b" ", b"-"), f"bad separator in {line!r}"
        texts.append(line[4:].decode("utf-8", "surrogateescape"))
        raw += line + b"\r\n"
        if separator != b"-":
            replies.append(WireReply(int(code), tuple(texts), bytes(raw)))
            texts, raw = [], bytearray()
    assert not texts, f"the stream ends inside a multiline reply: {texts!r}"
    return replies


def reply_tuple(reply: smtp.Reply) -> tuple[int, tuple[str, ...], str | None]:
    return reply.code, reply.lines, reply.enhanced


def drain_replies(conn: smtp.ClientConnection) -> list[smtp.Reply]:
    replies = []
    while True:
        event = conn.next_event()
        if isinstance(event, smtp.Reply):
            replies.append(event)
        elif event is smtp.NEED_DATA or isinstance(event, smtp.ConnectionClosed):
            return replies
        else:
            raise AssertionError(f"unexpected event {event!r}")


def feed_reply(conn: smtp.ClientConnection, reply: WireReply, piece: int) -> list[smtp.Reply]:
    """Feed one recorded reply in pieces of ``piece`` octets; the replies
    the engine hands out (at most this one)."""
    out: list[smtp.Reply] = []
    for start in range(0, len(reply.raw), piece):
        conn.receive_data(reply.raw[start : start + piece])
        out += drain_replies(conn)
    return out


# =============================================================================
# Conversations driven by the project's ClientConnection over a socket
# =============================================================================

Sent = tuple[smtp.Event, ...]
"""One write of the conversation: the events sent together (a group)."""
Action = Sent | None
"""A write, or None where one reply was read."""


class PeerGone(Exception):
    """The server closed (or sent 421): the conversation is over."""


class EngineClient:
    """A ClientConnection over a blocking socket, reading lazily as the
    backends do: bytes are parsed only when a reply is awaited. Logs every
    write and read so that the conversation can be replayed."""

    def __init__(self, port: int, config: smtp.ClientConfig) -> None:
        self.config = config
        self.conn = smtp.ClientConnection(config)
        self.sock = socket.create_connection(("127.0.0.1", port), TIMEOUT)
        self.actions: list[Action] = []
        self.replies: list[smtp.Reply] = []
        self.received = bytearray()

    def send(self, *events: smtp.Event) -> None:
        if self.conn.state is smtp.State.CLOSED:
            raise PeerGone
        data = b"".join(self.conn.send(event) for event in events)
        self.actions.append(events)
        with suppress(OSError):  # the peer may be gone; what it said is still read
            self.sock.sendall(data)

    def reply(self) -> smtp.Reply:
        while True:
            event = self.conn.next_event()
            if isinstance(event, smtp.Reply):
                self.actions.append(None)
                self.replies.append(event)
                return event
            if isinstance(event, smtp.ConnectionClosed):
                raise PeerGone
            assert event is smtp.NEED_DATA, event
            self._read()

    def _read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.received += data
        self.conn.receive_data(data)

    def command(self, *events: smtp.Event) -> list[smtp.Reply]:
        """Send ``events`` as one write and read one reply per command."""
        self.send(*events)
        return [self.reply() for _ in events]

    def finish(self) -> None:
        """Hang up, then read whatever the server still sends to its end and
        parse it: an unsolicited 421 is a reply, anything else an error."""
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        with self.sock:
            size = -1
            while size:  # each read is bounded by the socket timeout
                size = len(self.received)
                self._read()
                size = len(self.received) - size
        for reply in drain_replies(self.conn):
            self.actions.append(None)
            self.replies.append(reply)


def engine_conversation(
    port: int,
    *,
    lmtp: bool = False,
    logins: Sequence[tuple[str, bytes | None, list[bytes]]] = (),
    max_reply_line: int = 512,
) -> EngineClient:
    """One conversation from the project's client engine: greeting, hello
    (HELO after any refused EHLO), the commands that may come at any time,
    XFORWARD, the AUTH attempts in ``logins``, a (pipelined when offered)
    transaction with a recipient the peer may refuse, a declared SIZE, DSN
    and SMTPUTF8 transactions, XCLIENT where offered, and QUIT."""
    config = smtp.ClientConfig(
        local_hostname="client.example", lmtp=lmtp, max_reply_line=max_reply_line
    )
    client = EngineClient(port, config)
    try:
        with suppress(PeerGone):
            _engine_script(client, lmtp, logins)
        client.finish()
    finally:
        client.sock.close()
    return client


def _engine_script(
    client: EngineClient, lmtp: bool, logins: Sequence[tuple[str, bytes | None, list[bytes]]]
) -> None:
    greeting = client.reply()
    if not greeting.is_positive:
        client.command(smtp.Quit())  # RFC 5321 3.1: only QUIT after a 554 greeting
        return
    [hello] = client.command(smtp.Lhlo("client.example") if lmtp else smtp.Ehlo("client.example"))
    if not hello.is_positive and not lmtp:
        [hello] = client.command(smtp.Helo("client.example"))
    if not hello.is_positive:
        client.command(smtp.Quit())
        return
    extensions = client.conn.extensions or smtp.Extensions()
    for command in (
        smtp.Noop(),
        smtp.Noop("ping"),
        smtp.Help(),
        smtp.Help("MAIL"),
        smtp.Vrfy("postmaster"),
        smtp.Expn("staff"),
        smtp.Rset(),
    ):
        client.command(command)
    if "XFORWARD" in extensions:
        client.command(smtp.Xforward((("NAME", "relay.example"), ("PROTO", "ESMTP"))))
    for mechanism, initial, responses in logins:
        if mechanism not in extensions.auth_mechanisms or client.conn.authenticated:
            continue
        [answer] = client.command(smtp.Auth(mechanism, initial))
        for response in responses:
            if answer.code != 334:
                break
            [answer] = client.command(
                smtp.AuthCancel() if response == b"*" else smtp.AuthResponse(response)
            )

    # A transaction starts only from GREETED: a refused RSET (smtp-sink -r
    # RSET) leaves the last one open, and the engine will not nest MAIL.
    def idle() -> bool:
        return client.conn.state is smtp.State.GREETED

    _transaction(client, extensions, lmtp)
    if "SIZE" in extensions and (extensions.max_size or 10) >= 10 and idle():
        # RFC 1870 6: a declared size (the engine refuses to send one over the limit).
        client.command(smtp.Mail(smtp.Address("sized", "example.org"), smtp.MailParams(size=10)))
        client.command(smtp.Rset())
    if extensions.dsn and idle():
        # RFC 3461 4.1-4.4: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT.
        notify = (smtp.Notify.SUCCESS, smtp.Notify.FAILURE)
        orcpt = smtp.OriginalRecipient("rfc822", "bob@example.org")
        _one_recipient(
            client,
            smtp.Mail(
                smtp.Address("dsn", "example.org"),
                smtp.MailParams(ret=smtp.Ret.HDRS, envid="QQ314159"),
            ),
            smtp.Rcpt(
                smtp.Address("bob", "example.org"), smtp.RcptParams(notify=notify, orcpt=orcpt)
            ),
            None,
        )
    if extensions.smtputf8 and idle():
        # RFC 6531 3.4: UTF-8 addresses under the SMTPUTF8 parameter.
        _one_recipient(
            client,
            smtp.Mail(smtp.Address("jörg", "bücher.example"), smtp.MailParams(smtputf8=True)),
            smtp.Rcpt(smtp.Address("ünï", "example.org")),
            "Subject: é\r\n\r\nünï\r\n".encode(),
        )
    if "XCLIENT" in extensions and idle():
        # Postfix XCLIENT_README: success is a new 220 greeting; EHLO again.
        [restart] = client.command(smtp.Xclient((("NAME", "client.example"),)))
        if restart.is_positive:  # Postfix's smtpd says 220, smtp-sink 250
            client.command(smtp.Lhlo("client.example") if lmtp else smtp.Ehlo("client.example"))
    client.command(smtp.Quit())


def _one_recipient(
    client: EngineClient, mail: smtp.Mail, rcpt: smtp.Rcpt, content: bytes | None
) -> None:
    """MAIL, RCPT, then the content (or RSET when there is none or it is
    refused), each step only if the one before was accepted."""
    [answer] = client.command(mail)
    if not answer.is_positive:
        return
    [answer] = client.command(rcpt)
    if content is not None and answer.is_positive:
        [answer] = client.command(smtp.Data())
        if answer.code == 354:
            client.send(smtp.MessageChunk(content), smtp.MessageEnd())
            for _ in range(len(client.conn.recipients) if client.config.lmtp else 1):
                client.reply()
            return
    client.command(smtp.Rset())


def _transaction(client: EngineClient, extensions: smtp.Extensions, lmtp: bool) -> None:
    params = smtp.MailParams(body=smtp.Body.EIGHT_BIT_MIME if extensions.eightbitmime else None)
    commands: list[smtp.Command] = [
        smtp.Mail(smtp.Address("alice", "example.org"), params),
        smtp.Rcpt(smtp.Address("bob", "example.org")),
        smtp.Rcpt(smtp.Address("nobody", "example.org")),
        smtp.Rcpt(smtp.Address("carol", "example.org")),
        smtp.Data(),
    ]
    if extensions.pipelining:
        replies = client.command(*commands)  # RFC 2920: one group, DATA last
    else:
        replies = []
        for command in commands:
            if isinstance(command, smtp.Data) and not any(r.is_positive for r in replies[1:]):
                client.command(smtp.Rset())  # no recipient: the engine will not send DATA
                return
            replies += client.command(command)
            if command is commands[0] and not replies[0].is_positive:
                return
    if replies[-1].code != 354:
        if not replies[-1].is_positive:
            client.command(smtp.Rset())
        return
    body = b"Subject: hi\r\n\r\n.leading dot\r\n8-bit \xc3\xa9\r\n"
    client.send(smtp.MessageChunk(body), smtp.MessageEnd())
    accepted = sum(r.is_positive for r in replies[1:-1])
    for _ in range(accepted if lmtp else 1):  # RFC 2033 4.2: one reply per recipient
        client.reply()


def replay_engine_conversation(
    actions: Sequence[Action], replies: Sequence[WireReply], config: smtp.ClientConfig, piece: int
) -> list[smtp.Reply]:
    """The logged conversation again, offline, the recorded replies fed in
    pieces of ``piece`` octets: what the engine makes of them."""
    conn = smtp.ClientConnection(config)
    queue = deque(replies)
    out: list[smtp.Reply] = []
    for action in actions:
        if action is None:
            got = feed_reply(conn, queue.popleft(), piece)
            assert len(got) == 1, got
            out += got
        else:
            for event in action:
                conn.send(event)
    return out


# =============================================================================
# Conversations driven by smtplib, replayed through a shadow ClientConnection
# =============================================================================

# Lines smtplib sends as they are, each answered before the next goes; a
# tuple carries the SASL responses to give while the answer is 334.
ScriptLine = bytes | tuple[bytes, tuple[bytes, ...]]

ERROR_SCRIPT: tuple[ScriptLine, ...] = (
    b"NOOP",
    b"noop with some text",
    b"HELP",
    b"HELP MAIL",
    b"VRFY postmaster",
    b"VRFY",
    b"EXPN staff",
    b"RSET",
    b"FROB",  # unknown verb
    b"MAIL",  # no argument
    b"MAIL TO:<a@example.org>",  # wrong keyword
    b"MAIL FROM:<a@example..org>",  # bad address (aiosmtpd takes "<a b@...>")
    b"RSET",  # smtp-sink takes any address
    b"RCPT TO:<b@example.org>",  # no MAIL yet
    b"DATA",  # no MAIL yet
    b"MAIL FROM:<a@example.org>",
    b"MAIL FROM:<a@example.org>",  # nested MAIL
    b"DATA",  # no RCPT yet
    b"RSET",
    b"EHLO",  # no domain
    b"STARTTLS",  # not offered
    (b"AUTH LOGIN", (b"*",)),  # cancelled (RFC 4954 4)
    (b"AUTH LOGIN", (base64.b64encode(b"ann"), base64.b64encode(b"wrong"))),
    b"AUTH PLAIN " + base64.b64encode(b"\0ann\0s3cret"),
    b"AUTH PLAIN " + base64.b64encode(b"\0ann\0s3cret"),  # already authenticated
    b"AUTH FOO",  # unknown mechanism
    "NOOP héllo".encode(),  # UTF-8 argument
    "VRFY jörg".encode(),
    "MAIL FROM:<jörg@example.org> SMTPUTF8".encode(),
    b"RSET",
    "MAIL FROM:<jörg@example.org>".encode(),  # UTF-8 without SMTPUTF8
    b"RSET",
    b"NO\xd6P",  # Latin-1 verb
    b"NOOP \xff\xfe",  # not UTF-8
    b"",  # empty line
    b"X" * 600,  # over 512 octets
    b"Y" * 2000,  # over 1000 octets
    b"MAIL FROM:<a@example.org> SIZE=999999999999",
    b"RSET",
    b"MAIL FROM:<a@example.org> BODY=BINARYMIME",
    b"RSET",
    b"MAIL FROM:<a@example.org> RET=HDRS ENVID=x",
    b"RSET",
    b"MAIL FROM:<a@example.org> XFOO=1",
    b"RSET",
)

# aiosmtpd closes after five unknown verbs ("502 5.5.1 Too many unrecognized
# commands, goodbye."): the last reply is followed by the close.
FLOOD_SCRIPT: tuple[ScriptLine, ...] = tuple(b"BOGUS%d" % n for n in range(6))

MESSAGE = b"Subject: hi\r\n\r\n.leading dot\r\nline\r\n"


def smtplib_conversation(port: int, script: Sequence[ScriptLine], *, lmtp: bool = False) -> str:
    """smtplib (the standard library) as the client: EHLO (or LHLO, or HELO
    after a refused EHLO), ``script`` line by line, two messages with
    sendmail, and QUIT. An error ends the conversation, never the test; how
    it ended is returned ("done" or the error)."""
    factory = smtplib.LMTP if lmtp else smtplib.SMTP
    try:
        with factory("127.0.0.1", port, local_hostname="client.example", timeout=TIMEOUT) as c:
            c.ehlo_or_helo_if_needed()
            for item in script:
                line, responses = (item, ()) if isinstance(item, bytes) else item
                c.send(line + b"\r\n")
                code, _ = c.getreply()
                for response in (*responses, b"*", b"*"):
                    if code != 334:
                        break
                    c.send(response + b"\r\n")  # "*" cancels (RFC 4954 4)
                    code, _ = c.getreply()
                if code == 354:
                    # A server that took the script's bad MAIL (smtp-sink takes
                    # anything) opened a transaction: end its message.
                    c.send(b"stray\r\n.\r\n")
                    c.getreply()
            with suppress(smtplib.SMTPResponseException):
                # One recipient in LMTP: smtplib reads a single reply after DATA.
                recipients = ["bob@example.org"] if lmtp else ["bob@example.org", "carol@x.org"]
                c.sendmail("alice@example.org", recipients, MESSAGE)
            with suppress(smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused):
                c.sendmail("alice@example.org", ["nobody@example.org"], MESSAGE)
    except (smtplib.SMTPException, OSError) as error:
        return repr(error)
    return "done"


_PATH = re.compile(r"(?i)(FROM|TO):<([^>]*)>(?: (.*))?")


def shadow_command(line: bytes, conn: smtp.ClientConnection) -> smtp.Event:
    """Send the engine event for a line smtplib sent, and return it.

    The line's own command when the engine can express it and would send it
    now; else a valid command of the same verb (the state moves on the
    server's reply, not on the command, so the shadow stays where the server
    is); else a NOOP, for an unknown verb or a command the engine's table
    refuses here (which the server then refuses too, or leaves the state as
    it was). Either way the server's reply is what is fed to the engine."""
    if conn.state is smtp.State.AUTH_EXCHANGE:
        if line == b"*":
            candidates: list[smtp.Event] = [smtp.AuthCancel()]
        else:
            candidates = [smtp.AuthResponse(base64.b64decode(line))]
    else:
        verb, _, argument = line.decode("utf-8", "surrogateescape").partition(" ")
        candidates = []
        with suppress(smtp.LocalProtocolError, ValueError):  # PathError, ParameterError
            candidates.append(_command_for(verb.upper(), argument))
        if verb.upper() in STAND_INS:
            candidates.append(STAND_INS[verb.upper()])
        candidates.append(smtp.Noop())
    for candidate in candidates:
        try:
            conn.send(candidate)
        except smtp.LocalProtocolError:
            continue
        return candidate
    raise AssertionError(f"the shadow cannot send anything for {line!r} in {conn.state}")


STAND_INS: dict[str, smtp.Event] = {
    "EHLO": smtp.Ehlo("stand-in.example"),
    "HELO": smtp.Helo("stand-in.example"),
    "LHLO": smtp.Lhlo("stand-in.example"),
    "MAIL": smtp.Mail(smtp.Address("stand-in", "example.org")),
    "RCPT": smtp.Rcpt(smtp.Address("stand-in", "example.org")),
    "DATA": smtp.Data(),
    "RSET": smtp.Rset(),
    "QUIT": smtp.Quit(),
    "VRFY": smtp.Vrfy("stand-in"),
    "EXPN": smtp.Expn("stand-in"),
}


def _command_for(verb: str, argument: str) -> smtp.Event:
    simple: dict[str, Callable[[], smtp.Event]] = {
        "EHLO": lambda: smtp.Ehlo(argument),
        "HELO": lambda: smtp.Helo(argument),
        "LHLO": lambda: smtp.Lhlo(argument),
        "NOOP": lambda: smtp.Noop(argument),
        "HELP": lambda: smtp.Help(argument),
        "VRFY": lambda: smtp.Vrfy(argument),
        "EXPN": lambda: smtp.Expn(argument),
        "RSET": smtp.Rset,
        "QUIT": smtp.Quit,
        "DATA": smtp.Data,
        "STARTTLS": smtp.StartTls,
    }
    if verb in simple:
        if verb in ("RSET", "QUIT", "DATA", "STARTTLS") and argument:
            raise ValueError(argument)
        return simple[verb]()
    if verb == "AUTH":
        mechanism, _, initial = argument.partition(" ")
        return smtp.Auth(mechanism.upper(), base64.b64decode(initial) if initial else None)
    match = _PATH.fullmatch(argument)
    if verb in ("MAIL", "RCPT") and match is not None:
        keyword, path, params = match.groups()
        if verb == "MAIL" and keyword.upper() == "FROM":
            address = smtp.Address.parse(path) if path else None
            return smtp.Mail(address, parse_mail_params(params or ""))
        if verb == "RCPT" and keyword.upper() == "TO":
            return smtp.Rcpt(smtp.Address.parse(path), parse_rcpt_params(params or ""))
    raise ValueError(verb)


def replay_smtplib_conversation(
    to_server: bytes, replies: Sequence[WireReply], config: smtp.ClientConfig, piece: int
) -> list[smtp.Reply]:
    """Replay what smtplib sent through a shadow ClientConnection, feeding
    each recorded reply (in pieces of ``piece`` octets) when it is awaited."""
    conn = smtp.ClientConnection(config)
    queue = deque(replies)
    out: list[smtp.Reply] = []

    def answer() -> smtp.Reply | None:
        while queue and conn.state is not smtp.State.CLOSED:
            got = feed_reply(conn, queue.popleft(), piece)
            out.extend(got)
            if got and not conn.pending:
                return got[-1]
        return None

    answer()  # the greeting
    lines = deque(to_server.split(b"\r\n"))
    while lines and queue and conn.state is not smtp.State.CLOSED:
        event = shadow_command(lines.popleft(), conn)
        reply = answer()
        if isinstance(event, smtp.Data) and reply is not None and reply.code == 354:
            while lines and lines.popleft() != b".":
                pass  # the content: its bytes are smtplib's, its reply is what counts
            conn.send(smtp.MessageChunk(b"content\r\n"))
            conn.send(smtp.MessageEnd())
            answer()
    return out


# =============================================================================
# Checking a recorded conversation
# =============================================================================


def check_engine_conversation(client: EngineClient, recording: Recording) -> int:
    """The live engine and two offline replays against the independent parse."""
    assert bytes(recording.to_client) == bytes(client.received), "the relay changed bytes"
    wire = split_replies(bytes(recording.to_client))
    assert b"".join(r.raw for r in wire) == bytes(recording.to_client)
    expected = [r.expected() for r in wire]
    assert [reply_tuple(r) for r in client.replies] == expected
    for piece in (1, 7, len(recording.to_client) or 1):
        replayed = replay_engine_conversation(client.actions, wire, client.config, piece)
        assert [reply_tuple(r) for r in replayed] == expected, piece
    return len(wire)


def check_smtplib_conversation(recording: Recording, config: smtp.ClientConfig) -> int:
    """The shadow replays of an smtplib conversation against the independent parse."""
    wire = split_replies(bytes(recording.to_client))
    assert b"".join(r.raw for r in wire) == bytes(recording.to_client)
    expected = [r.expected() for r in wire]
    for piece in (1, len(recording.to_client) or 1):
        replayed = replay_smtplib_conversation(bytes(recording.to_server), wire, config, piece)
        assert [reply_tuple(r) for r in replayed] == expected, piece
    return len(wire)


# =============================================================================
# The peers
# =============================================================================


class AiosmtpdHandler:
    """Refuses RCPT to nobody@ with a multiline reply (aiosmtpd sends what
    a hook returns as it is); accepts every message."""

    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        if address.startswith("nobody@"):
            return "550-5.1.1 no such user here\r\n550 5.1.1 try another"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if isinstance(server, LMTP):
            # RFC 2033 4.2: one reply per accepted recipient; aiosmtpd's LMTP
            # sends what the hook returns, so the hook writes them all.
            return "\r\n".join(f"250 2.0.0 {rcpt} delivered" for rcpt in envelope.rcpt_tos)
        return "250 2.0.0 queued"


def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = (auth_data.login, auth_data.password) == (b"ann", b"s3cret")
    # handled=False: with aiosmtpd's default (True) a failed AUTH gets no
    # reply at all and the client waits forever.
    return AuthResult(success=ok, handled=False)


class LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


@contextmanager
def aiosmtpd_server(
    controller: type[Controller] = Controller, handler: object | None = None, **options: Any
) -> Iterator[int]:
    port = free_port()
    server = controller(handler or AiosmtpdHandler(), hostname="127.0.0.1", port=port, **options)
    server.start()
    try:
        yield port
    finally:
        server.stop()


LOGINS: tuple[tuple[str, bytes | None, list[bytes]], ...] = (
    ("LOGIN", None, [b"*"]),  # cancelled
    ("LOGIN", None, [b"ann", b"wrong"]),  # refused
    ("PLAIN", b"\0ann\0s3cret", []),  # accepted
)

AIOSMTPD_VARIANTS: dict[str, tuple[type[Controller], dict[str, Any]]] = {
    "default": (Controller, {}),
    "auth-in-clear": (Controller, {"auth_require_tls": False, "authenticator": authenticator}),
    "ascii-only-small": (Controller, {"enable_SMTPUTF8": False, "data_size_limit": 20}),
    "lmtp": (LmtpController, {}),
}

# smtp-sink options: what to hide or refuse. -b/-B set the soft and hard
# refusal replies, which smtp-sink sends verbatim (CRLF included).
SINK_VARIANTS: dict[str, tuple[str, ...]] = {
    "default": (),
    "no-pipelining": ("-p",),
    "bare-esmtp": ("-8", "-a", "-N", "-C", "-F", "-E"),
    "no-esmtp": ("-e",),
    "pix-greeting": ("-P",),
    "lmtp": ("-L",),
    "hostname": ("-h", "mx.example"),
    "soft-rejects": ("-r", "RCPT,VRFY,NOOP,RSET", "-b", "451 4.7.1 try again later"),
    "hard-rejects": ("-f", "EHLO,MAIL", "-B", "550-5.7.1 first line\r\n550 5.7.1 second line"),
    "dot-rejected": ("-f", "."),
    "421-after-rcpt": ("-Q", "RCPT"),
    "hangup-after-data": ("-q", "DATA"),
    "abort-after-354": ("-A", "0"),
    "greeting-soft-refused": ("-r", "CONNECT"),
    "greeting-hard-refused": ("-f", "CONNECT"),
    "greeting-421": ("-Q", "CONNECT"),
}


def run_all_conversations(port: int, *, lmtp: bool) -> dict[str, int]:
    """Every kind of conversation through one relay; replies checked per kind."""
    config = smtp.ClientConfig(local_hostname="client.example", lmtp=lmtp)
    counts: dict[str, int] = {}
    with recording_relay(port) as relay:
        client = engine_conversation(relay.port, lmtp=lmtp, logins=LOGINS)
        counts["engine"] = check_engine_conversation(client, relay.take())
        for name, script in (("smtplib", ERROR_SCRIPT), ("flood", FLOOD_SCRIPT)):
            outcome = smtplib_conversation(relay.port, script, lmtp=lmtp)
            assert "timed out" not in outcome, (name, outcome)
            counts[name] = check_smtplib_conversation(relay.take(), config)
    return counts


# =============================================================================
# Part 1: every reply a real server sends parses
# =============================================================================


@pytest.mark.parametrize("variant", list(AIOSMTPD_VARIANTS))
def test_client_engine_parses_every_aiosmtpd_reply(variant: str) -> None:
    """aiosmtpd 1.4 as the server (SMTP, AUTH in clear, ASCII-only with a
    20-octet SIZE, LMTP): every reply it sent to the project's client, to
    smtplib's error script and to an unknown-verb flood parses as the
    independent split says (RFC 5321 4.2, 4.2.1; RFC 2034 section 4)."""
    controller, options = AIOSMTPD_VARIANTS[variant]
    with aiosmtpd_server(controller, **options) as port:
        counts = run_all_conversations(port, lmtp=controller is LmtpController)
    assert all(counts.values()), counts


@needs_smtp_sink
@pytest.mark.parametrize("variant", list(SINK_VARIANTS))
def test_client_engine_parses_every_smtp_sink_reply(variant: str) -> None:
    """Postfix 3.7 smtp-sink as the server, with the option that hides
    PIPELINING (RFC 2920), 8BITMIME/AUTH/DSN/XCLIENT/XFORWARD and
    ENHANCEDSTATUSCODES, ESMTP itself, that speaks LMTP (RFC 2033), refuses
    commands softly or hard (with a multiline refusal), refuses the end of
    data, sends 421 (RFC 5321 3.8), hangs up without a reply, aborts after
    354, or refuses the connection: every reply parses (RFC 5321 4.2, 4.2.1)."""
    options = SINK_VARIANTS[variant]
    with smtp_sink(*options) as port:
        counts = run_all_conversations(port, lmtp="-L" in options)
    assert counts["engine"], counts


# =============================================================================
# Part 2: the server engine's verdicts against aiosmtpd's
# =============================================================================


@dataclass(frozen=True)
class Case:
    """One MAIL or RCPT line; a RCPT case first opens a transaction with ``mail``."""

    name: str
    line: bytes
    mail: bytes = b"MAIL FROM:<sender@example.org>"
    end: bytes = b"\r\n"

    @property
    def is_rcpt(self) -> bool:
        return self.line[:4].upper() == b"RCPT"


def _mail(name: str, text: str | bytes) -> Case:
    return Case(name, text.encode() if isinstance(text, str) else text)


def _rcpt(name: str, text: str | bytes, mail: str = "MAIL FROM:<sender@example.org>") -> Case:
    return Case(name, text.encode() if isinstance(text, str) else text, mail.encode())


def _padded(prefix: bytes, total: int, suffix: bytes = b"") -> bytes:
    """``prefix`` + spaces + ``suffix``, ``total`` octets in all (no CRLF)."""
    return prefix + b" " * (total - len(prefix) - len(suffix)) + suffix


LABEL63 = "a" * 63
DOMAIN_252 = ".".join([LABEL63] * 4)[:252]  # "<a@" + 252 + ">" is a 256-octet path
DOMAIN_253 = DOMAIN_252 + "b"

CORPUS: tuple[Case, ...] = (
    # -- RFC 5321 4.1.1.2 and 4.1.2: the reverse path ------------------------
    _mail("plain", "MAIL FROM:<alice@example.org>"),
    _mail("lowercase-verb", "mail from:<alice@example.org>"),
    _mail("null-path", "MAIL FROM:<>"),
    _mail("space-in-null-path", "MAIL FROM:< >"),
    _mail("quoted-space", 'MAIL FROM:<"john doe"@example.org>'),
    _mail("quoted-pair", 'MAIL FROM:<"a\\"b"@example.org>'),
    _mail("quoted-at", 'MAIL FROM:<"a@b"@example.org>'),
    _mail("quoted-empty", 'MAIL FROM:<""@example.org>'),
    _mail("quoted-unclosed", 'MAIL FROM:<"unclosed@example.org>'),
    _mail("atext-specials", "MAIL FROM:<a%b!c#d$e&f'g*h+i/j=k?l^m_n`o{p|q}r~s@example.org>"),
    _mail("numeric-domain", "MAIL FROM:<a@123>"),
    _mail("a-label", "MAIL FROM:<a@xn--bcher-kva.example>"),
    _mail("single-label", "MAIL FROM:<a@localhost>"),
    _mail("ipv4-literal", "MAIL FROM:<a@[192.0.2.1]>"),
    _mail("ipv4-leading-zeros", "MAIL FROM:<a@[192.000.002.001]>"),
    _mail("ipv4-out-of-range", "MAIL FROM:<a@[192.0.2.256]>"),
    _mail("ipv4-three-parts", "MAIL FROM:<a@[192.0.2]>"),
    _mail("ipv6-literal", "MAIL FROM:<a@[IPv6:2001:db8::1]>"),
    _mail("ipv6-full", "MAIL FROM:<a@[IPv6:2001:db8:0:0:0:0:0:1]>"),
    _mail("ipv6-lowercase-tag", "MAIL FROM:<a@[ipv6:2001:db8::1]>"),
    _mail("ipv6-v4-tail", "MAIL FROM:<a@[IPv6:::ffff:192.0.2.1]>"),
    _mail("ipv6-unspecified", "MAIL FROM:<a@[IPv6:::]>"),
    _mail("ipv6-two-compressions", "MAIL FROM:<a@[IPv6:2001:db8::1::2]>"),
    _mail("ipv6-nine-groups", "MAIL FROM:<a@[IPv6:0:0:0:0:0:0:0:0:0]>"),
    _mail("ipv6-compressed-too-many", "MAIL FROM:<a@[IPv6:1:2:3:4:5:6:7::8]>"),
    _mail("ipv6-five-hex-digits", "MAIL FROM:<a@[IPv6:12345::1]>"),
    _mail("general-literal", "MAIL FROM:<a@[x-tag:anything]>"),
    _mail("general-literal-bad-tag", "MAIL FROM:<a@[x-:abc]>"),
    _mail("empty-literal", "MAIL FROM:<a@[]>"),
    _mail("source-route", "MAIL FROM:<@relay.example:a@example.org>"),
    _mail("source-route-two", "MAIL FROM:<@r1.example,@r2.example:a@example.org>"),
    _mail("source-route-literal", "MAIL FROM:<@[192.0.2.1]:a@example.org>"),
    _mail("source-route-space", "MAIL FROM:<@r1.example, @r2.example:a@example.org>"),
    _mail("source-route-only", "MAIL FROM:<@r1.example:>"),
    _mail("no-brackets", "MAIL FROM:alice@example.org"),
    _mail("space-after-colon", "MAIL FROM: <alice@example.org>"),
    _mail("space-before-colon", "MAIL FROM :<alice@example.org>"),
    _mail("two-spaces-after-verb", "MAIL  FROM:<alice@example.org>"),
    _mail("space-inside-open", "MAIL FROM:< alice@example.org>"),
    _mail("space-inside-close", "MAIL FROM:<alice@example.org >"),
    _mail("space-in-local-part", "MAIL FROM:<a b@example.org>"),
    _mail("no-domain", "MAIL FROM:<alice>"),
    _mail("postmaster-as-sender", "MAIL FROM:<Postmaster>"),
    _mail("no-local-part", "MAIL FROM:<@example.org>"),
    _mail("empty-domain", "MAIL FROM:<alice@>"),
    _mail("local-part-64", f"MAIL FROM:<{'a' * 64}@example.org>"),
    _mail("local-part-65", f"MAIL FROM:<{'a' * 65}@example.org>"),
    _mail("path-256", f"MAIL FROM:<a@{DOMAIN_252}>"),
    _mail("path-257", f"MAIL FROM:<a@{DOMAIN_253}>"),
    _mail("label-64", f"MAIL FROM:<a@{'a' * 64}.example>"),
    _mail("domain-trailing-dot", "MAIL FROM:<a@example.org.>"),
    _mail("domain-empty-label", "MAIL FROM:<a@example..org>"),
    _mail("domain-leading-hyphen", "MAIL FROM:<a@-example.org>"),
    _mail("domain-underscore", "MAIL FROM:<a@ex_ample.org>"),
    _mail("local-trailing-dot", "MAIL FROM:<a.@example.org>"),
    _mail("local-leading-dot", "MAIL FROM:<.a@example.org>"),
    _mail("local-double-dot", "MAIL FROM:<a..b@example.org>"),
    _mail("comment-in-local-part", "MAIL FROM:<a(comment)@example.org>"),
    _mail("comment-after-path", "MAIL FROM:<a@example.org> (comment)"),
    _mail("unclosed-path", "MAIL FROM:<a@example.org"),
    _mail("double-brackets", "MAIL FROM:<<a@example.org>>"),
    _mail("display-name", "MAIL FROM:Alice <a@example.org>"),
    _mail("no-from", "MAIL <a@example.org>"),
    _mail("no-colon", "MAIL FROM<a@example.org>"),
    _mail("empty-after-colon", "MAIL FROM:"),
    _mail("verb-alone", "MAIL"),
    _mail("control-character", b"MAIL FROM:<a\x01@example.org>"),
    _mail("nul-octet", b"MAIL FROM:<a\x00b@example.org>"),
    _mail("invalid-utf8", b"MAIL FROM:<\xff@example.org>"),
    _mail("lowercase-keyword", "MAIL from:<a@example.org>"),
    _mail("quoted-pair-letter", 'MAIL FROM:<"\\a"@example.org>'),
    _mail("tab-in-quoted-string", b'MAIL FROM:<"a\tb"@example.org>'),
    _mail("ipv6-v4-compressed", "MAIL FROM:<a@[IPv6:2001:db8::192.0.2.1]>"),
    _mail("domain-trailing-hyphen", "MAIL FROM:<a@example-.org>"),
    _mail("fullwidth-at-sign", "MAIL FROM:<a\uff20example.org> SMTPUTF8"),
    _mail("extra-cr", b"MAIL FROM:<a@example.org>\r"),
    Case("bare-lf-ending", b"MAIL FROM:<a@example.org>", end=b"\n"),
    _mail("trailing-space", "MAIL FROM:<a@example.org> "),
    _mail("tab-before-parameter", "MAIL FROM:<a@example.org>\tSIZE=10"),
    _mail("no-space-before-parameter", "MAIL FROM:<a@example.org>SIZE=10"),
    _mail("two-spaces-before-parameter", "MAIL FROM:<a@example.org>  SIZE=10"),
    # -- RFC 6531 3.3, 3.4: UTF-8 addresses --------------------------------
    _mail("utf8-with-smtputf8", "MAIL FROM:<jörg@bücher.example> SMTPUTF8"),
    _mail("utf8-without-smtputf8", "MAIL FROM:<jörg@bücher.example>"),
    _mail("utf8-domain-without-smtputf8", "MAIL FROM:<a@bücher.example>"),
    _mail("utf8-cjk-with-smtputf8", "MAIL FROM:<用户@例子.广告> SMTPUTF8"),
    _mail("utf8-quoted-with-smtputf8", 'MAIL FROM:<"jö rg"@example.org> SMTPUTF8'),
    _mail("utf8-quoted-without-smtputf8", 'MAIL FROM:<"jö"@example.org>'),
    _mail("utf8-nbsp-in-local-part", "MAIL FROM:<a\u00a0b@example.org> SMTPUTF8"),
    _mail("utf8-c1-control-in-local-part", "MAIL FROM:<a\u0085b@example.org> SMTPUTF8"),
    _mail("utf8-overlong-encoding", b"MAIL FROM:<\xc0\xafa@example.org> SMTPUTF8"),
    _mail("utf8-encoded-surrogate", b"MAIL FROM:<\xed\xa0\x80@example.org> SMTPUTF8"),
    _mail("utf8-symbol-in-domain", "MAIL FROM:<a@\u2603.example> SMTPUTF8"),
    _mail("utf8-uppercase-u-label", "MAIL FROM:<a@BÜCHER.example> SMTPUTF8"),
    _mail("utf8-ideographic-full-stop", "MAIL FROM:<a@例子\u3002广告> SMTPUTF8"),
    # -- RFC 1870 SIZE ----------------------------------------------------
    _mail("size", "MAIL FROM:<a@example.org> SIZE=1000"),
    _mail("size-zero", "MAIL FROM:<a@example.org> SIZE=0"),
    _mail("size-at-limit", "MAIL FROM:<a@example.org> SIZE=33554432"),
    _mail("size-over-limit", "MAIL FROM:<a@example.org> SIZE=33554433"),
    _mail("size-20-digits", "MAIL FROM:<a@example.org> SIZE=99999999999999999999"),
    _mail("size-21-digits", "MAIL FROM:<a@example.org> SIZE=999999999999999999999"),
    _mail("size-not-a-number", "MAIL FROM:<a@example.org> SIZE=abc"),
    _mail("size-negative", "MAIL FROM:<a@example.org> SIZE=-1"),
    _mail("size-empty-value", "MAIL FROM:<a@example.org> SIZE="),
    _mail("size-no-value", "MAIL FROM:<a@example.org> SIZE"),
    _mail("size-lowercase", "MAIL FROM:<a@example.org> size=10"),
    _mail("size-leading-zeros", "MAIL FROM:<a@example.org> SIZE=0010"),
    # -- RFC 6152 BODY, RFC 3030 BINARYMIME ---------------------------------
    _mail("body-7bit", "MAIL FROM:<a@example.org> BODY=7BIT"),
    _mail("body-8bitmime", "MAIL FROM:<a@example.org> BODY=8BITMIME"),
    _mail("body-lowercase", "MAIL FROM:<a@example.org> body=8bitmime"),
    _mail("body-binarymime-not-offered", "MAIL FROM:<a@example.org> BODY=BINARYMIME"),
    _mail("body-unknown", "MAIL FROM:<a@example.org> BODY=FOO"),
    _mail("body-empty-value", "MAIL FROM:<a@example.org> BODY="),
    _mail("body-no-value", "MAIL FROM:<a@example.org> BODY"),
    # -- RFC 6531 SMTPUTF8 -------------------------------------------------
    _mail("smtputf8", "MAIL FROM:<a@example.org> SMTPUTF8"),
    _mail("smtputf8-with-value", "MAIL FROM:<a@example.org> SMTPUTF8=YES"),
    _mail("all-offered", "MAIL FROM:<a@example.org> SIZE=10 BODY=8BITMIME SMTPUTF8"),
    # -- RFC 3461 DSN and RFC 4954 AUTH= (neither offered) ------------------
    _mail("ret-not-offered", "MAIL FROM:<a@example.org> RET=FULL"),
    _mail("envid-not-offered", "MAIL FROM:<a@example.org> ENVID=abc"),
    _mail("ret-invalid-not-offered", "MAIL FROM:<a@example.org> RET=ALL"),
    _mail("notify-on-mail", "MAIL FROM:<a@example.org> NOTIFY=NEVER"),
    _mail("auth-not-offered", "MAIL FROM:<a@example.org> AUTH=<>"),
    # -- RFC 5321 4.1.2 esmtp-param, 4.1.1.11 -------------------------------
    _mail("unknown-parameter", "MAIL FROM:<a@example.org> XFOO=1"),
    _mail("unknown-parameter-no-value", "MAIL FROM:<a@example.org> XFOO"),
    _mail("unknown-parameter-hyphen", "MAIL FROM:<a@example.org> X-FOO=1"),
    _mail("unknown-parameter-utf8-value", "MAIL FROM:<a@example.org> XFOO=é"),
    _mail("duplicate-size", "MAIL FROM:<a@example.org> SIZE=10 SIZE=20"),
    _mail("duplicate-body", "MAIL FROM:<a@example.org> BODY=7BIT BODY=8BITMIME"),
    _mail("duplicate-smtputf8", "MAIL FROM:<a@example.org> SMTPUTF8 SMTPUTF8"),
    _mail("parameter-no-keyword", "MAIL FROM:<a@example.org> =1"),
    _mail("parameter-two-equals", "MAIL FROM:<a@example.org> SIZE==1"),
    _mail("parameter-value-with-equals", "MAIL FROM:<a@example.org> XFOO=a=b"),
    # -- RFC 5321 4.5.3.1.4 + RFC 1870 4 + RFC 6531 3.4: MAIL line length ------
    # With SIZE and SMTPUTF8 offered a MAIL line may be 512 + 26 + 10 = 548
    # octets including its CRLF, so 546 without.
    _mail("mail-line-546", _padded(b"MAIL FROM:<a@example.org>", 546, b"SIZE=10")),
    _mail("mail-line-547", _padded(b"MAIL FROM:<a@example.org>", 547, b"SIZE=10")),
    _mail("mail-line-548", _padded(b"MAIL FROM:<a@example.org>", 548, b"SIZE=10")),
    _mail("mail-line-549", _padded(b"MAIL FROM:<a@example.org>", 549, b"SIZE=10")),
    # -- RFC 5321 4.1.1.3: the forward path ---------------------------------
    _rcpt("rcpt-plain", "RCPT TO:<bob@example.org>"),
    _rcpt("rcpt-postmaster", "RCPT TO:<Postmaster>"),
    _rcpt("rcpt-postmaster-lowercase", "RCPT TO:<postmaster>"),
    _rcpt("rcpt-postmaster-at-domain", "RCPT TO:<postmaster@example.org>"),
    _rcpt("rcpt-null-path", "RCPT TO:<>"),
    _rcpt("rcpt-no-domain", "RCPT TO:<bob>"),
    _rcpt("rcpt-quoted", 'RCPT TO:<"bob smith"@example.org>'),
    _rcpt("rcpt-ipv6", "RCPT TO:<bob@[IPv6:2001:db8::1]>"),
    _rcpt("rcpt-source-route", "RCPT TO:<@relay.example:bob@example.org>"),
    _rcpt("rcpt-no-brackets", "RCPT TO:bob@example.org"),
    _rcpt("rcpt-space-after-colon", "RCPT TO: <bob@example.org>"),
    _rcpt("rcpt-local-part-65", f"RCPT TO:<{'b' * 65}@example.org>"),
    _rcpt("rcpt-local-double-dot", "RCPT TO:<b..b@example.org>"),
    _rcpt("rcpt-no-colon", "RCPT TO<bob@example.org>"),
    _rcpt("rcpt-from-keyword", "RCPT FROM:<bob@example.org>"),
    _rcpt("rcpt-utf8-after-smtputf8", "RCPT TO:<ünï@example.org>", "MAIL FROM:<a@b.org> SMTPUTF8"),
    _rcpt("rcpt-utf8-without-smtputf8", "RCPT TO:<ünï@example.org>"),
    # -- RFC 3461 4.1, 4.2 (DSN not offered), unknown and misplaced ---------
    _rcpt("rcpt-notify-not-offered", "RCPT TO:<bob@example.org> NOTIFY=SUCCESS"),
    _rcpt("rcpt-orcpt-not-offered", "RCPT TO:<bob@example.org> ORCPT=rfc822;bob@example.org"),
    _rcpt("rcpt-unknown-parameter", "RCPT TO:<bob@example.org> XFOO=1"),
    _rcpt("rcpt-size-parameter", "RCPT TO:<bob@example.org> SIZE=10"),
    _rcpt("rcpt-smtputf8-parameter", "RCPT TO:<bob@example.org> SMTPUTF8"),
    # -- RFC 5321 4.5.3.1.4 (+ RFC 6531 3.4): RCPT line length ---------------
    _rcpt("rcpt-line-510", _padded(b"RCPT TO:<bob@example.org>", 510)),
    _rcpt("rcpt-line-512", _padded(b"RCPT TO:<bob@example.org>", 512)),
    _rcpt("rcpt-line-513", _padded(b"RCPT TO:<bob@example.org>", 513)),
    _rcpt("rcpt-line-520", _padded(b"RCPT TO:<bob@example.org>", 520)),
    _rcpt("rcpt-line-521", _padded(b"RCPT TO:<bob@example.org>", 521)),
)


@dataclass(frozen=True)
class Disagreement:
    """aiosmtpd and the engine part ways on a case, in the listed modes."""

    aiosmtpd_accepts: bool
    why: str
    """Who is right, and the RFC section that says so."""
    modes: frozenset[str] = frozenset({"lenient", "strict"})
    engine_bug: bool = False
    """The RFC sides with aiosmtpd: the engine must be fixed (smtp_core)."""


STRICT_ONLY = frozenset({"strict"})

# Every case on which aiosmtpd 1.4.6 and the engine disagree. aiosmtpd reads
# paths with the RFC 5322 header parser (email._header_value_parser), which
# takes comments, folding white space, obsolete local parts and any domain
# literal; the engine reads RFC 5321's grammar. Lenient mode shares some of
# aiosmtpd's tolerances (a space after the colon, no angle brackets, a bare
# LF, a local part over 64 octets): those disagree in strict mode only.
# No entry is an engine bug (engine_bug=True) so far.
_GRAMMAR = "RFC 5321 4.1.2 (Path, Mailbox, Local-part, Domain): the grammar refuses it"
DISAGREEMENTS: dict[str, Disagreement] = {
    "quoted-unclosed": Disagreement(
        True, f"aiosmtpd takes a quoted string with no closing quote; {_GRAMMAR}"
    ),
    "ipv4-out-of-range": Disagreement(
        True, "RFC 5321 4.1.3: Snum is 0 to 255 (and no ':' makes it a general literal)"
    ),
    "ipv4-three-parts": Disagreement(
        True, 'RFC 5321 4.1.3: IPv4-address-literal = Snum 3("." Snum)'
    ),
    "ipv6-two-compressions": Disagreement(
        True, "RFC 5321 4.1.3: IPv6-comp has one '::'; the IPv6 tag takes only IPv6-addr"
    ),
    "ipv6-nine-groups": Disagreement(True, "RFC 5321 4.1.3: IPv6-full is exactly 8 groups"),
    "ipv6-compressed-too-many": Disagreement(
        True, "RFC 5321 4.1.3: IPv6-comp allows no more than 6 groups besides '::'"
    ),
    "ipv6-five-hex-digits": Disagreement(True, "RFC 5321 4.1.3: IPv6-hex is 1*4HEXDIG"),
    "general-literal-bad-tag": Disagreement(
        True, "RFC 5321 4.1.3: Standardized-tag = Ldh-str, which ends in a letter or digit"
    ),
    "empty-literal": Disagreement(
        True, "RFC 5321 4.1.3: an address literal is IPv4, 'IPv6:' IPv6, or tag ':' 1*dcontent"
    ),
    "source-route-literal": Disagreement(
        True, 'RFC 5321 4.1.2: At-domain = "@" Domain, no address literal in a source route'
    ),
    "source-route-space": Disagreement(
        True, f"aiosmtpd takes white space in the obsolete route; {_GRAMMAR}"
    ),
    "no-brackets": Disagreement(
        True,
        "RFC 5321 4.1.2: Path needs '<' '>'; only strict mode holds to it (lenient takes "
        "what real clients send, as aiosmtpd does)",
        STRICT_ONLY,
    ),
    "space-after-colon": Disagreement(
        True,
        'RFC 5321 4.1.1.2: "MAIL FROM:" Reverse-path, no SP; only strict mode holds to it',
        STRICT_ONLY,
    ),
    "two-spaces-after-verb": Disagreement(
        True, 'RFC 5321 4.1.1.2: "MAIL FROM:" has exactly one SP; aiosmtpd strips the argument'
    ),
    "space-inside-open": Disagreement(
        True, f"aiosmtpd reads it as folding white space; {_GRAMMAR}"
    ),
    "space-inside-close": Disagreement(
        True, f"aiosmtpd reads it as folding white space; {_GRAMMAR}"
    ),
    "space-in-local-part": Disagreement(True, f"Dot-string has no SP; {_GRAMMAR}"),
    "no-domain": Disagreement(True, 'RFC 5321 4.1.2: Mailbox = Local-part "@" Domain'),
    "postmaster-as-sender": Disagreement(
        True, "RFC 5321 4.1.1.3: the domain-less <Postmaster> is a forward path only"
    ),
    "local-part-65": Disagreement(
        True,
        "RFC 5321 4.5.3.1.1: 64 octets at most; strict mode enforces it, lenient mode and "
        "aiosmtpd (local_part_limit=0) take more, which 4.5.3.1 allows",
        STRICT_ONLY,
    ),
    "path-257": Disagreement(
        True,
        "RFC 5321 4.5.3.1.3: a path is at most 256 octets (brackets included); aiosmtpd "
        "has no path limit, which 4.5.3.1 allows: both are compliant",
    ),
    "label-64": Disagreement(True, "RFC 5321 2.3.5 (RFC 1035 2.3.4): a label is at most 63 octets"),
    "domain-leading-hyphen": Disagreement(
        True, "RFC 5321 4.1.2: sub-domain = Let-dig [Ldh-str], it cannot start with '-'"
    ),
    "domain-underscore": Disagreement(True, f"Ldh-str has no '_'; {_GRAMMAR}"),
    "local-trailing-dot": Disagreement(
        True, f"aiosmtpd takes the RFC 5322 obs-local-part; {_GRAMMAR}"
    ),
    "local-leading-dot": Disagreement(
        True, f"aiosmtpd takes the RFC 5322 obs-local-part; {_GRAMMAR}"
    ),
    "local-double-dot": Disagreement(
        True, f"aiosmtpd takes the RFC 5322 obs-local-part; {_GRAMMAR}"
    ),
    "comment-in-local-part": Disagreement(
        True, f"SMTP paths have no RFC 5322 comments; {_GRAMMAR}"
    ),
    "comment-after-path": Disagreement(
        True, "RFC 5321 4.1.2: esmtp-keyword starts with a letter or digit, so '(' is refused"
    ),
    "unclosed-path": Disagreement(True, 'RFC 5321 4.1.2: Path ends with ">"'),
    "control-character": Disagreement(True, "RFC 5321 4.1.2: atext has no control characters"),
    "nul-octet": Disagreement(True, "RFC 5321 4.1.2: atext has no NUL"),
    "invalid-utf8": Disagreement(
        True, "RFC 6531 3.3: non-ASCII in a path is UTF-8 (and needs SMTPUTF8, 3.4)"
    ),
    "tab-before-parameter": Disagreement(
        True, "RFC 5321 4.1.1.2: Reverse-path [SP Mail-parameters], a single SP, not HTAB"
    ),
    "no-space-before-parameter": Disagreement(
        True, "RFC 5321 4.1.1.2: Reverse-path [SP Mail-parameters], the SP is required"
    ),
    "tab-in-quoted-string": Disagreement(
        True, "RFC 5321 4.1.2: qtextSMTP and quoted-pairSMTP have no HTAB"
    ),
    "domain-trailing-hyphen": Disagreement(
        True, "RFC 5321 4.1.2: Ldh-str ends in a letter or digit, so no label ends in '-'"
    ),
    "fullwidth-at-sign": Disagreement(
        True, 'RFC 5321 4.1.2: Mailbox = Local-part "@" Domain; U+FF20 is not "@"'
    ),
    "extra-cr": Disagreement(
        True, "RFC 5321 2.3.8: CR only as part of CRLF; aiosmtpd strips every trailing CR"
    ),
    "bare-lf-ending": Disagreement(
        True,
        "RFC 5321 2.3.8: lines end with CRLF; strict mode refuses a bare LF, lenient mode "
        "takes it as aiosmtpd does",
        STRICT_ONLY,
    ),
    "utf8-quoted-without-smtputf8": Disagreement(
        True, "RFC 6531 3.4: a non-ASCII address needs the SMTPUTF8 parameter (553 5.6.7, 3.5)"
    ),
    "utf8-c1-control-in-local-part": Disagreement(
        True,
        "RFC 6531 3.3's ABNF (UTF8-non-ascii, RFC 6532 3.1) admits U+0085, so the letter of "
        "the grammar is with aiosmtpd; RFC 5198 section 2 forbids C1 controls (U+0080-U+009F) "
        "in network text, which the engine follows on purpose: both defensible",
    ),
    "utf8-overlong-encoding": Disagreement(
        True, "RFC 3629 section 3: an overlong form is not UTF-8 (RFC 6531 3.3 requires UTF-8)"
    ),
    "utf8-encoded-surrogate": Disagreement(
        True, "RFC 3629 section 3: encoded surrogates are not UTF-8 (RFC 6531 3.3)"
    ),
    "utf8-symbol-in-domain": Disagreement(
        True, "RFC 6531 3.3: sub-domain =/ U-label (RFC 5890); U+2603 is DISALLOWED (RFC 5892)"
    ),
    "utf8-ideographic-full-stop": Disagreement(
        True,
        "RFC 5321 4.1.2 / RFC 6531 3.3: labels are separated by '.' only; U+3002 is "
        "DISALLOWED in a U-label (RFC 5892)",
    ),
    "utf8-without-smtputf8": Disagreement(
        True, "RFC 6531 3.4: a non-ASCII address needs the SMTPUTF8 parameter (553 5.6.7, 3.5)"
    ),
    "utf8-domain-without-smtputf8": Disagreement(
        True, "RFC 6531 3.4: a non-ASCII address needs the SMTPUTF8 parameter (553 5.6.7, 3.5)"
    ),
    "duplicate-size": Disagreement(
        True,
        "RFC 5321 4.1.1.11: a server refuses parameters it cannot implement, and two "
        "values for one keyword cannot both be honoured; aiosmtpd keeps the last silently",
    ),
    "duplicate-body": Disagreement(
        True,
        "RFC 5321 4.1.1.11: BODY=7BIT and BODY=8BITMIME together cannot be honoured; "
        "aiosmtpd keeps the last silently",
    ),
    "duplicate-smtputf8": Disagreement(
        True,
        "RFC 5321 4.1.2: each esmtp-keyword names one parameter; the engine refuses a "
        "repeat, aiosmtpd ignores it (no RFC requires either, refusing is the safer reading)",
    ),
    "mail-line-547": Disagreement(
        True,
        "RFC 5321 4.5.3.1.4 counts the CRLF: 512 + 26 (RFC 1870 4) + 10 (RFC 6531 3.4) "
        "= 548 with it, 546 without; aiosmtpd compares 548 with the line without CRLF",
    ),
    "mail-line-548": Disagreement(
        True, "RFC 5321 4.5.3.1.4 counts the CRLF; aiosmtpd's limit is two octets off"
    ),
    "rcpt-null-path": Disagreement(
        True, "RFC 5321 4.1.1.3: Forward-path = Path, and <> is only a reverse path"
    ),
    "rcpt-no-domain": Disagreement(
        True, 'RFC 5321 4.1.2: Mailbox = Local-part "@" Domain (only <Postmaster> may omit it)'
    ),
    "rcpt-no-brackets": Disagreement(
        True, "RFC 5321 4.1.2: Path needs '<' '>'; only strict mode holds to it", STRICT_ONLY
    ),
    "rcpt-space-after-colon": Disagreement(
        True,
        'RFC 5321 4.1.1.3: "RCPT TO:" Forward-path, no SP; only strict mode holds to it',
        STRICT_ONLY,
    ),
    "rcpt-local-part-65": Disagreement(
        True,
        "RFC 5321 4.5.3.1.1: 64 octets at most; strict mode only (4.5.3.1 allows more)",
        STRICT_ONLY,
    ),
    "rcpt-local-double-dot": Disagreement(
        True, f"aiosmtpd takes the RFC 5322 obs-local-part; {_GRAMMAR}"
    ),
    "rcpt-utf8-without-smtputf8": Disagreement(
        True, "RFC 6531 3.4: UTF-8 recipients need SMTPUTF8 on the MAIL command (3.5: 553 5.6.7)"
    ),
    "rcpt-line-513": Disagreement(
        False,
        "RFC 5321 4.5.3.1.4: 512 octets with CRLF; the engine allows RCPT 10 more under "
        "SMTPUTF8, aiosmtpd 512 without CRLF. 4.5.3.1 lets a server take longer lines: "
        "both are compliant",
    ),
    "rcpt-line-520": Disagreement(
        False, "as rcpt-line-513: the engine's SMTPUTF8 allowance on RCPT; both compliant"
    ),
}


def aiosmtpd_verdicts(cases: Sequence[Case]) -> tuple[dict[str, int], list[str]]:
    """The reply code aiosmtpd gives each case, and its EHLO keywords: one
    connection and one EHLO (aiosmtpd raises its MAIL line limit on every
    EHLO), MAIL first for RCPT lines, RSET after each case."""
    codes: dict[str, int] = {}
    port = free_port()
    server = Controller(AiosmtpdHandler(), hostname="127.0.0.1", port=port)
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", port), TIMEOUT) as sock:
            lines = sock.makefile("rb")
            assert _read_code(lines) == 220
            sock.sendall(b"EHLO client.example\r\n")
            ehlo = _read_reply(lines)
            keywords = [line[4:].decode().split(" ")[0] for line in ehlo[1:]]
            for case in cases:
                if case.is_rcpt:
                    sock.sendall(case.mail + b"\r\n")
                    assert _read_code(lines) == 250, case
                sock.sendall(case.line + case.end)
                codes[case.name] = _read_code(lines)
                sock.sendall(b"RSET\r\n")
                assert _read_code(lines) == 250, case
    finally:
        server.stop()
    return codes, keywords


def _read_reply(lines: Any) -> list[bytes]:
    reply = []
    while True:
        line = lines.readline(4096)
        assert line.endswith(b"\r\n"), f"aiosmtpd hung up or sent {line!r}"
        reply.append(line[:-2])
        if line[3:4] != b"-":
            return reply


def _read_code(lines: Any) -> int:
    return int(_read_reply(lines)[0][:3])


def engine_config(strict: bool) -> smtp.ServerConfig:
    """The extensions aiosmtpd 1.4 offers by default: SIZE 33554432, 8BITMIME,
    SMTPUTF8; no PIPELINING, DSN, CHUNKING, AUTH or ENHANCEDSTATUSCODES."""
    return smtp.ServerConfig(
        hostname="localhost",
        strict=strict,
        max_message_size=33554432,
        pipelining=False,
        eightbitmime=True,
        smtputf8=True,
        dsn=False,
        enhanced_status_codes=False,
        chunking=False,
    )


def engine_verdict(case: Case, config: smtp.ServerConfig) -> int:
    """The reply code a ServerConnection gives the case: 250 when it hands out
    the command, the suggested reply's code when it hands out a CommandError."""
    conn = smtp.ServerConnection(config)
    assert conn.next_event() is smtp.PAUSED
    conn.send(conn.greeting())
    conn.receive_data(b"EHLO client.example\r\n")
    assert isinstance(conn.next_event(), smtp.Ehlo)
    conn.send(conn.ehlo_reply())
    if case.is_rcpt:
        conn.receive_data(case.mail + b"\r\n")
        assert isinstance(conn.next_event(), smtp.Mail), case
        conn.send(smtp.Reply(250, "OK"))
    conn.receive_data(case.line + case.end)
    event = conn.next_event()
    if isinstance(event, smtp.CommandError):
        return event.reply.code
    assert isinstance(event, smtp.Rcpt if case.is_rcpt else smtp.Mail), (case, event)
    return 250


def test_corpus_names_are_unique_and_every_listed_disagreement_is_in_the_corpus() -> None:
    names = [case.name for case in CORPUS]
    assert len(names) == len(set(names))
    assert set(DISAGREEMENTS) <= set(names)
    assert all(d.modes <= {"lenient", "strict"} and d.modes for d in DISAGREEMENTS.values())


def test_server_engine_verdicts_match_aiosmtpd_except_the_listed_disagreements() -> None:
    """RFC 5321 4.1.1.2, 4.1.1.3, 4.1.2, 4.1.3, 4.5.3.1; RFC 1870; RFC 6152;
    RFC 6531; RFC 3461: accept (2yz) or refuse (4yz/5yz), MAIL and RCPT lines,
    aiosmtpd 1.4.6 against the engine in lenient and strict mode. A new
    disagreement, or a listed one that went away, fails the test."""
    codes, keywords = aiosmtpd_verdicts(CORPUS)
    config = engine_config(strict=False)
    advertised = smtp.ServerConnection(config).advertised()
    assert [k for k in keywords if k != "HELP"] == [k for k, _ in advertised.keywords]
    assert advertised.max_size == 33554432
    found: set[tuple[str, str, bool]] = set()
    for mode in ("lenient", "strict"):
        config = engine_config(strict=mode == "strict")
        for case in CORPUS:
            theirs = codes[case.name] < 400
            ours = engine_verdict(case, config) < 400
            if theirs != ours:
                found.add((case.name, mode, theirs))
    listed = {
        (name, mode, d.aiosmtpd_accepts) for name, d in DISAGREEMENTS.items() for mode in d.modes
    }
    new = sorted(found - listed)
    gone = sorted(listed - found)
    assert not new and not gone, (
        f"new disagreements (name, mode, aiosmtpd accepts): {new}; listed but gone: {gone}"
    )


@needs_smtp_sink
def test_overlong_smtp_sink_reply_line_is_refused_by_default_and_parsed_when_allowed() -> None:
    """RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF.
    smtp-sink sends its -B refusal text verbatim, here a 712-octet line: the
    client engine's default (ClientConfig.max_reply_line=512) stops with a
    RemoteProtocolError naming the limit; with a larger limit (which 4.5.3.1
    allows) the reply parses as the independent split says."""
    refusal = "550 5.7.1 " + "x" * 700
    with smtp_sink("-f", "MAIL", "-B", refusal) as port, recording_relay(port) as relay:
        with pytest.raises(smtp.RemoteProtocolError, match=r"4\.5\.3\.1\.5"):
            engine_conversation(relay.port)
        relay.take()
        client = engine_conversation(relay.port, max_reply_line=1024)
        check_engine_conversation(client, relay.take())
    refused = [r for r in client.replies if isinstance(r.answers, smtp.Mail)]
    assert refused and all(reply_tuple(r) == (550, ("x" * 700,), "5.7.1") for r in refused)
