# The server session, decided once for every backend.
#
# ``SessionDriver.run`` is a generator: it never reads, writes or awaits. It
# yields what it needs done (Read, Write, Call a handler hook, Close) and is
# sent the outcome, so each backend is a small loop that performs requests,
# and no SMTP rule lives in a backend. The engine (smtp_core) judges the
# protocol; this driver decides what the application is asked and what the
# default replies are.
from __future__ import annotations

import base64
import dataclasses
import logging
import tempfile
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from time import monotonic
from typing import IO, Any

import smtp_core as smtp
from smtp_core import sasl

__all__ = [
    "Call",
    "Lifecycle",
    "StartTls",
    "Close",
    "Envelope",
    "HookFailed",
    "Read",
    "Request",
    "Session",
    "SessionDriver",
    "SessionLimits",
    "Write",
]


@dataclass
class Session:
    """Who is talking, and over what."""

    peer: tuple[str, int] | None = None
    local: tuple[str, int] | None = None
    tls: bool = False
    hello_name: str | None = None
    """The name the client gave in EHLO, HELO or LHLO."""
    tls_info: dict[str, Any] = field(default_factory=dict)
    """What the TLS layer reported: "version", "cipher", "peer_certificate"."""
    authenticated_as: str | None = None
    proxy: smtp.ProxyHeader | None = None
    """The real client as a PROXY header reported it, if the server reads one."""


@dataclass
class Envelope:
    """The transaction a message arrived in."""

    mail: smtp.Mail
    recipients: list[smtp.Rcpt] = field(default_factory=list)

    @property
    def reverse_path(self) -> smtp.Address | None:
        return self.mail.reverse_path


@dataclass(frozen=True)
class SessionLimits:
    """Timeouts (RFC 5321 4.5.3.2) and misbehaviour limits."""

    command_timeout: float = 300.0
    """Waiting for a command (4.5.3.2.7: at least 5 minutes)."""
    data_block_timeout: float = 180.0
    """Waiting for the next block of content (4.5.3.2.6: 3 minutes)."""
    max_connections: int = 1000
    """Sessions at once; more get 421 4.7.0 (needs a backend's Lifecycle)."""
    max_bad_commands: int = 20
    """Permanently refused (5yz) commands before 421 and a close; a 4yz
    refusal is a limit met, not misbehaviour."""
    spool_in_memory: int = 1 << 20
    """Octets of a message kept in memory before it is spooled to disk."""


# Read, Write and Call are made for every step of every session: plain slotted
# classes (not frozen ones, whose __init__ is several times slower).
@dataclass(slots=True)
class Read:
    """Read some bytes; send back bytes (b"" at end of stream), or None when
    ``timeout`` seconds passed with nothing. An ``idle`` read waits for a
    command, so a shutdown may end it early (with None)."""

    timeout: float
    idle: bool = False


@dataclass(slots=True)
class Write:
    """Write these bytes (waiting until the peer takes them)."""

    data: bytes


@dataclass(slots=True)
class Call:
    """Call handler hook ``name`` with ``args`` (awaiting it when it returns
    an awaitable) and send back its result, or ``HookFailed`` if it raised."""

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class StartTls:
    """Run the TLS handshake now (server side after our 220 to STARTTLS,
    client side after the server's); send back a dict of TLS details
    ("version", "cipher", "peer_certificate"), or ``HookFailed`` if it failed."""


@dataclass(frozen=True)
class Close:
    """Close the connection: the session is over."""


@dataclass(frozen=True)
class HookFailed:
    """What a backend sends back when a hook raised."""

    error: BaseException


Request = Read | Write | Call | StartTls | Close
# Hooks that fail and handshakes that fail are told here (the peer only
# hears 451 4.3.0, or the connection ends).
log = logging.getLogger("smtp_core.server")


def describe(error: BaseException) -> str:
    """An error's message; trio wraps an SSLError in a BrokenResourceError
    that says nothing."""
    return str(error) or str(error.__cause__ or "") or type(error).__name__


def _peer(session: Session) -> str:
    if not session.peer:
        return "the peer"
    host, port = session.peer[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_CLOSE = Close()
_START_TLS = StartTls()

_TEMPORARY_FAILURE = smtp.Reply(451, "local error in processing", "4.3.0")
_UNAVAILABLE = smtp.Reply(421, "local error in processing: try again later", "4.3.0")
_AUTHENTICATED = smtp.Reply(235, "authentication successful", "2.7.0")
_TIMEOUT = smtp.Reply(421, "timeout: closing the connection", "4.4.2")
_TOO_MANY_ERRORS = smtp.Reply(421, "too many errors: closing the connection", "4.7.0")
_TOO_MANY_CONNECTIONS = smtp.Reply(421, "too many connections: try again later", "4.7.0")
_SHUTTING_DOWN = smtp.Reply(421, "shutting down: try again later", "4.3.2")
_SENDER_OK = smtp.Reply(250, "sender ok")
_RECIPIENT_OK = smtp.Reply(250, "recipient ok")
_GO_AHEAD = smtp.Reply(354, "end data with <CR><LF>.<CR><LF>")
_QUEUED = smtp.Reply(250, "queued")
_RESET = smtp.Reply(250, "reset")
_BYE = smtp.Reply(221, "bye")
_OK = smtp.Reply(250, "ok")
_CANNOT_VERIFY = smtp.Reply(252, "cannot verify; will accept and try")
_READY_FOR_TLS = smtp.Reply(220, "ready to start TLS")
_HELP = smtp.Reply(214, "commands: see RFC 5321")
_NOT_AVAILABLE = smtp.Reply(502, "command not available", "5.5.1")
_NO_TRANSACTION = smtp.Reply(554, "no transaction", "5.5.1")
_HOOKS = (
    "on_connect",
    "on_ehlo",
    "on_mail",
    "on_rcpt",
    "on_chunk",
    "on_message",
    "on_abandon",
    "on_auth",
    "on_vrfy",
    "on_rset",
    "on_quit",
    "on_starttls",
)


# Up to this size allocations stay on the heap, and twice this much free heap
# is kept, once a block this large has been freed (see Lifecycle).
_HEAP_WARMING = 1 << 20


class Lifecycle:
    """A server's connection count and shutdown flag, shared by its sessions.

    ``admit`` refuses a connection over ``max_connections`` (it gets 421);
    once ``stopping`` is set, sessions between transactions get 421 4.3.2 and
    close, and a message in flight is finished first. A backend wakes
    sessions waiting for a command by ending their Read with None."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.active = 0
        self.stopping = False
        self._lock = threading.Lock()  # the blocking backend's threads share it
        # glibc raises its mmap threshold, and the trim threshold with it, when
        # a large mmapped block is freed (mallopt(3), "dynamic mmap threshold").
        # Until then a server's heap top, the reads and content of a large
        # message, is given back after each message and faulted in again for
        # the next: 14 page faults and some 60 us of system time a 100 KiB message.
        bytearray(_HEAP_WARMING)  # made and freed at once; elsewhere harmless

    def admit(self) -> bool:
        with self._lock:
            if self.active >= self.max_connections:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.active -= 1


Steps = Generator[Request, Any, Any]


class SessionDriver:
    """Runs one session: ``run()`` yields requests until ``Close``."""

    def __init__(
        self,
        handler: object,
        config: smtp.ServerConfig,
        session: Session,
        limits: SessionLimits | None = None,
        auth: sasl.Verifiers | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.handler = handler
        self.lifecycle = lifecycle
        if auth is not None and not config.auth_mechanisms:
            config = dataclasses.replace(config, auth_mechanisms=auth.mechanisms)
        self.auth = auth
        self.mechanism: sasl.ServerMechanism | None = None
        self.config = config
        self.session = session
        self.limits = limits = limits or SessionLimits()
        self.conn = smtp.ServerConnection(config, tls=session.tls)
        self.envelope: Envelope | None = None
        self.spool: IO[bytes] | None = None
        self.bad_commands = 0
        self.chunk_failed = False
        self.receiving = False  # content began and is not yet delivered
        # What the handler implements, looked up once rather than per event.
        self.hooks = frozenset(name for name in _HOOKS if getattr(handler, name, None) is not None)
        self.streaming = "on_chunk" in self.hooks
        # Content is kept for on_message only: without it (or with on_chunk
        # taking the content as it comes) nobody would ever read a spool.
        self.spooling = not self.streaming and "on_message" in self.hooks
        self._read_command = Read(limits.command_timeout, idle=True)
        self._read_content = Read(limits.data_block_timeout)
        self._plain = _plain_answers(self.hooks)

    def run(self) -> Steps:
        lifecycle = self.lifecycle
        admitted = lifecycle is None or lifecycle.admit()
        try:
            if admitted:
                yield from self._converse(self.conn, self.limits, lifecycle)
            else:
                yield from self._send(_TOO_MANY_CONNECTIONS)
        except smtp.RemoteProtocolError as error:
            if error.reply is not None:
                yield Write(error.reply.to_bytes())
            yield from self._abandon(f"protocol error: {error}")
        finally:
            if admitted and lifecycle is not None:
                lifecycle.release()
            self._drop_message()
        yield _CLOSE

    def _hook(self, name: str, *args: Any) -> Generator[Request, Any, smtp.Reply | None]:
        if name not in self.hooks:
            return None
        return self._checked(name, (yield Call(name, args)))

    def _checked(self, name: str, result: object) -> smtp.Reply | None:
        """A hook's result as a reply: 451 4.3.0 (and why, logged) when it
        raised or gave something other than a Reply or None."""
        if result is None or isinstance(result, smtp.Reply):
            return result
        self._hook_failed(name, result)
        return _TEMPORARY_FAILURE

    def _sent(
        self, hook: str, reply: smtp.Reply | None, default: smtp.Reply
    ) -> tuple[bytes, smtp.Reply]:
        """The bytes of a hook's ``reply`` (``default`` for None) and the
        reply they are. One the engine refuses here (a code the command
        cannot take) is logged and becomes 451 4.3.0, or the default where
        even that cannot be: a hook's mistake never ends the session."""
        if reply is None:
            return self.conn.send(default), default
        try:
            return self.conn.send(reply), reply
        except smtp.LocalProtocolError as error:
            log.error(
                "%s returned %r: %s; 451 4.3.0 to %s", hook, reply, error, _peer(self.session)
            )
        try:
            return self.conn.send(_TEMPORARY_FAILURE), _TEMPORARY_FAILURE
        except smtp.LocalProtocolError:
            return self.conn.send(default), default

    def _hook_failed(self, name: str, result: object) -> None:
        """Say why the client gets 451 4.3.0: nowhere else would it show."""
        peer = _peer(self.session)
        if isinstance(result, HookFailed):
            log.error("%s raised; 451 4.3.0 to %s", name, peer, exc_info=result.error)
        else:
            log.error("%s returned %r, not a Reply or None; 451 4.3.0 to %s", name, result, peer)

    def _send(self, reply: smtp.Reply) -> Steps:
        yield Write(self.conn.send(reply))

    def cut_short(self, reason: str, envelope: Envelope | None = None) -> Call | None:
        """The on_abandon call to make now that a message whose content began
        will not be delivered (``envelope``: the message's, when it is no
        longer the driver's); None when none began or the handler does not
        ask. Once per message. A backend whose session ended without the
        driver seeing it (cancelled, or its connection failed) calls this
        itself, then ``report`` with what the hook gave."""
        if not self.receiving:
            return None
        self.receiving = False
        self._drop_message()
        if "on_abandon" not in self.hooks:
            return None
        return Call("on_abandon", (self.session, envelope or self.envelope, reason))

    def report(self, call: Call, outcome: object) -> None:
        """Log a hook's failure (``HookFailed``) that no reply can show."""
        if isinstance(outcome, HookFailed):
            self._hook_failed(call.name, outcome)

    def _abandon(self, reason: str, envelope: Envelope | None = None) -> Steps:
        call = self.cut_short(reason, envelope)
        if call is not None:
            self.report(call, (yield call))

    def _new_spool(self) -> IO[bytes]:
        # Closed by _drop_message, whatever way the message ends.
        return tempfile.SpooledTemporaryFile(self.limits.spool_in_memory)

    def _drop_message(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def _converse(
        self, conn: smtp.ServerConnection, limits: SessionLimits, lifecycle: Lifecycle | None
    ) -> Steps:
        if self.config.proxy_protocol:
            while not isinstance(header := conn.next_event(), smtp.ProxyHeader):
                data = yield Read(limits.command_timeout)
                if not data:
                    return
                conn.receive_data(data)
            self.session.proxy = header
        greeting = yield from self._hook("on_connect", self.session)
        if greeting is _TEMPORARY_FAILURE:  # a greeting is 220, 554 or 421 (RFC 5321 3.1)
            greeting = _UNAVAILABLE
        yield Write(self._sent("on_connect", greeting, conn.greeting())[0])
        plain_answers = self._plain
        next_event = conn.next_event
        receive_data = conn.receive_data
        need_data = smtp.NEED_DATA
        chunk = smtp.MessageChunk
        in_content = (smtp.State.IN_MESSAGE, smtp.State.IN_CHUNKING)
        streaming = self.streaming
        spooling = self.spooling
        # RFC 5321 4.5.3.2.7: the command timeout runs from our last reply
        # to the end of the next command, however the bytes trickle in; a
        # content block has its own timeout (4.5.3.2.6).
        deadline: float | None = None
        while True:  # until the engine says the connection is closed
            event = next_event()
            if event is need_data:
                in_message = conn.state in in_content
                if lifecycle is not None and lifecycle.stopping and not in_message:
                    # Graceful shutdown: between transactions, say so and go.
                    yield from self._send(_SHUTTING_DOWN)
                    return
                if in_message:
                    data = yield self._read_content
                elif deadline is None:
                    deadline = monotonic() + limits.command_timeout
                    data = yield self._read_command
                else:
                    data = yield Read(max(deadline - monotonic(), 0.0), idle=True)
                if data is None:
                    self._drop_message()
                    stopped = lifecycle is not None and lifecycle.stopping
                    yield from self._send(_SHUTTING_DOWN if stopped else _TIMEOUT)
                    yield from self._abandon("shut down" if stopped else "timed out")
                    return
                receive_data(data)
                continue
            kind = type(event)
            if kind is chunk:
                self.receiving = True
                if streaming:
                    # The application takes the content as it comes.
                    outcome = yield Call("on_chunk", (self.session, self.envelope, event.data))  # type: ignore[union-attr]
                    if isinstance(outcome, HookFailed):
                        if not self.chunk_failed:  # said once per message
                            self._hook_failed("on_chunk", outcome)
                        self.chunk_failed = True
                elif spooling:
                    if self.spool is None:
                        self.spool = self._new_spool()
                    self.spool.write(event.data)  # type: ignore[union-attr]
            elif kind is smtp.ConnectionClosed:
                # A message cut short is never delivered.
                yield from self._abandon("the connection closed")
                return
            else:
                plain = plain_answers.get(kind)
                if plain is not None:
                    yield Write(plain(self, event))
                else:
                    yield from _ANSWERS.get(kind, SessionDriver._not_available)(self, event)
                deadline = None  # answered: the wait for the next command starts

    def _refused(self, event: smtp.CommandError) -> Steps:
        self.mechanism = None  # a refused SASL response ends the exchange
        # Only permanent refusals count as misbehaviour: a 4yz is the server's
        # own limit (452 for recipients over the limit, RFC 5321 4.5.3.1.10),
        # which a client may meet in an orderly way any number of times.
        if event.reply.code >= 500:
            self.bad_commands += 1
        if self.bad_commands > self.limits.max_bad_commands:
            yield from self._send(_TOO_MANY_ERRORS)
            return
        yield Write(self.conn.send(event.reply))

    def _hello(self, event: smtp.Ehlo | smtp.Lhlo | smtp.Helo) -> Steps:
        self.session.hello_name = event.domain
        envelope, self.envelope = self.envelope, None
        self._drop_message()
        reply = yield from self._hook("on_ehlo", self.session, event)
        yield Write(self._sent("on_ehlo", reply, self.conn.ehlo_reply())[0])
        yield from self._abandon(f"reset by {type(event).__name__.upper()}", envelope)

    def _mail(self, event: smtp.Mail) -> Steps:
        reply = yield from self._hook("on_mail", self.session, event)
        yield Write(self._mail_answered(event, reply))

    def _mail_answered(self, event: smtp.Mail, reply: smtp.Reply | None = None) -> bytes:
        if reply is None:  # the usual case, without _sent's call
            data = self.conn.send(_SENDER_OK)
            self.envelope = Envelope(event)
            return data
        data, sent = self._sent("on_mail", reply, _SENDER_OK)
        if sent.code < 300:
            self.envelope = Envelope(event)
        return data

    def _rcpt(self, event: smtp.Rcpt) -> Steps:
        reply = yield from self._hook("on_rcpt", self.session, self.envelope, event)
        yield Write(self._rcpt_answered(event, reply))

    def _rcpt_answered(self, event: smtp.Rcpt, reply: smtp.Reply | None = None) -> bytes:
        if reply is None and self.envelope is not None:  # the usual case, as above
            data = self.conn.send(_RECIPIENT_OK)
            self.envelope.recipients.append(event)
            return data
        data, sent = self._sent("on_rcpt", reply, _RECIPIENT_OK)
        if sent.code < 300 and self.envelope is not None:
            self.envelope.recipients.append(event)
        return data

    def _data(self, event: smtp.Data) -> bytes:
        if self.spooling:
            self.spool = self._new_spool()
        self.receiving = True
        return self.conn.send(_GO_AHEAD)

    def _bdat(self, event: smtp.Bdat) -> Steps:
        if event.last:
            yield from self._deliver(event)
        else:
            yield Write(self.conn.send(smtp.Reply(250, f"{event.size} octets received")))

    def _message_refused(self, event: smtp.MessageRefused) -> Steps:
        self._drop_message()
        envelope, self.envelope = self.envelope, None
        yield Write(self.conn.send(event.reply))
        yield from self._abandon(f"content refused: {event.reply}", envelope)

    def _rset(self, event: smtp.Rset) -> Steps:
        reply = yield from self._hook("on_rset", self.session)
        envelope = self.envelope
        yield Write(self._rset_answered(event, reply))
        yield from self._abandon("reset by RSET", envelope)

    def _rset_answered(self, event: smtp.Rset, reply: smtp.Reply | None = None) -> bytes:
        self._drop_message()
        self.envelope = None
        return self._sent("on_rset", reply, _RESET)[0]

    def _quit(self, event: smtp.Quit) -> Steps:
        reply = yield from self._hook("on_quit", self.session)
        yield Write(self._sent("on_quit", reply, _BYE)[0])
        yield from self._abandon("ended by QUIT")

    def _noop(self, event: smtp.Noop) -> bytes:
        return self.conn.send(_OK)

    def _vrfy(self, event: smtp.Vrfy) -> Steps:
        # RFC 5321 3.5.3: 252 when the server will not verify.
        reply = yield from self._hook("on_vrfy", self.session, event)
        yield Write(self._sent("on_vrfy", reply, _CANNOT_VERIFY)[0])

    def _help(self, event: smtp.Help) -> bytes:
        return self.conn.send(_HELP)

    def _not_available(self, event: object) -> Steps:
        # EXPN, and XCLIENT/XFORWARD, which this driver does not take
        # on behalf of applications yet: say so rather than pretend.
        yield Write(self.conn.send(_NOT_AVAILABLE))

    def _starttls(self, event: smtp.StartTls) -> Steps:
        session = self.session
        reply = yield from self._hook("on_starttls", session)
        yield Write(self._sent("on_starttls", reply, _READY_FOR_TLS)[0])
        if self.conn.state is smtp.State.TLS_HANDSHAKE:
            outcome = yield _START_TLS
            if isinstance(outcome, HookFailed):
                reason = describe(outcome.error)
                log.info("TLS handshake with %s failed: %s", _peer(session), reason)
                raise smtp.RemoteProtocolError(f"TLS handshake failed: {reason}")
            # RFC 3207 4.2: everything learnt before the handshake is gone.
            self.conn.tls_started()
            session.tls = True
            session.tls_info = dict(outcome or {})
            session.hello_name = None
            self.envelope = None

    def _authenticate(self, event: smtp.Auth | smtp.AuthResponse | smtp.AuthCancel) -> Steps:
        """RFC 4954: run the SASL exchange with smtp_core.sasl's mechanisms."""
        if isinstance(event, smtp.AuthCancel):
            self.mechanism = None
            yield from self._send(smtp.Reply(501, "authentication cancelled", "5.7.0"))
            return
        if isinstance(event, smtp.Auth):
            if self.auth is None:
                yield from self._send(smtp.Reply(504, "no such mechanism here", "5.5.4"))
                return
            self.mechanism = sasl.server_mechanism(
                event.mechanism, self.auth, hostname=self.config.hostname
            )
            step = self.mechanism.start(event.initial_response)
        else:
            if self.mechanism is None:  # cannot happen: the engine sequences it
                yield from self._send(smtp.Reply(503, "no exchange in progress", "5.5.1"))
                return
            step = self.mechanism.step(event.data)
        if step.challenge is not None:
            text = base64.b64encode(step.challenge).decode("ascii")
            yield from self._send(smtp.Reply(334, text))
            return
        self.mechanism = None
        if step.success:
            self.session.authenticated_as = step.authcid
            reply = yield from self._hook("on_auth", self.session, step)
            yield Write(self._sent("on_auth", reply, _AUTHENTICATED)[0])
        elif step.is_malformed:
            yield from self._send(smtp.Reply(501, "malformed authentication exchange", "5.5.2"))
        else:
            yield from self._send(smtp.Reply(535, "authentication credentials invalid", "5.7.8"))

    def _deliver(self, event: smtp.MessageEnd | smtp.Bdat) -> Steps:
        envelope, spool = self.envelope, self.spool
        self.envelope = None
        failed, self.chunk_failed = self.chunk_failed, False
        if envelope is None:
            self.receiving = False
            yield from self._send(_NO_TRANSACTION)
            return
        if failed:
            yield from self._send(_TEMPORARY_FAILURE)
            yield from self._abandon("on_chunk failed", envelope)
            return
        self.receiving = False
        if spool is not None:
            spool.seek(0)
        elif self.spooling:  # "BDAT 0 LAST" alone: an empty message (RFC 3030 section 2)
            spool = self.spool = self._new_spool()
        # With on_chunk the body went there already and on_message gets None.
        reply: Any = None
        if "on_message" in self.hooks:
            reply = yield Call("on_message", (self.session, envelope, spool))
            self._drop_message()
        count = len(envelope.recipients)
        if not self.config.lmtp or not isinstance(reply, (list, tuple)):
            reply = self._checked("on_message", reply)
            data, sent = self._sent("on_message", reply, _QUEUED)
            if self.config.lmtp:  # RFC 2033 4.2: one reply per accepted recipient
                data += b"".join([self.conn.send(sent) for _ in range(count - 1)])
        elif len(reply) == count and all(r is None or isinstance(r, smtp.Reply) for r in reply):
            # LMTP: the handler's own reply for each recipient, in their order.
            data = b"".join([self._sent("on_message", r, _QUEUED)[0] for r in reply])
        else:
            log.error(
                "on_message returned %r, not one Reply or None for each of the %d "
                "recipients; 451 4.3.0 to %s",
                reply,
                count,
                _peer(self.session),
            )
            data = b"".join([self.conn.send(_TEMPORARY_FAILURE) for _ in range(count)])
        yield Write(data)


# How the driver answers each event, by its type. These may call a hook, so
# each is a generator of requests.
_ANSWERS: dict[type, Callable[[SessionDriver, Any], Steps]] = {
    smtp.CommandError: SessionDriver._refused,
    smtp.Ehlo: SessionDriver._hello,
    smtp.Lhlo: SessionDriver._hello,
    smtp.Helo: SessionDriver._hello,
    smtp.Mail: SessionDriver._mail,
    smtp.Rcpt: SessionDriver._rcpt,
    smtp.Bdat: SessionDriver._bdat,
    smtp.MessageEnd: SessionDriver._deliver,
    smtp.MessageRefused: SessionDriver._message_refused,
    smtp.Rset: SessionDriver._rset,
    smtp.Quit: SessionDriver._quit,
    smtp.Vrfy: SessionDriver._vrfy,
    smtp.StartTls: SessionDriver._starttls,
    smtp.Auth: SessionDriver._authenticate,
    smtp.AuthResponse: SessionDriver._authenticate,
    smtp.AuthCancel: SessionDriver._authenticate,
}
# Answers that call no hook, given as bytes without a generator of their
# own; MAIL, RCPT and RSET are among them when the handler has no hook for
# them (RSET may abandon a message begun by BDAT: then on_abandon is told).
_ALWAYS_PLAIN: dict[type, Callable[[SessionDriver, Any], bytes]] = {
    smtp.Data: SessionDriver._data,
    smtp.Noop: SessionDriver._noop,
    smtp.Help: SessionDriver._help,
}
_PLAIN_UNLESS = (
    (smtp.Mail, ("on_mail",), SessionDriver._mail_answered),
    (smtp.Rcpt, ("on_rcpt",), SessionDriver._rcpt_answered),
    (smtp.Rset, ("on_rset", "on_abandon"), SessionDriver._rset_answered),
)
_PLAIN_DECIDERS = frozenset(hook for _, blockers, _ in _PLAIN_UNLESS for hook in blockers)
_PLAIN_BY_HOOKS: dict[frozenset[str], dict[type, Callable[[SessionDriver, Any], bytes]]] = {}


def _plain_answers(hooks: frozenset[str]) -> dict[type, Callable[[SessionDriver, Any], bytes]]:
    """The answers given without a generator for a handler with ``hooks``,
    worked out once per set of the hooks that decide it (at most 16)."""
    key = hooks & _PLAIN_DECIDERS
    plain = _PLAIN_BY_HOOKS.get(key)
    if plain is None:
        plain = dict(_ALWAYS_PLAIN)
        for kind, blockers, answered in _PLAIN_UNLESS:
            if not key.intersection(blockers):
                plain[kind] = answered
        _PLAIN_BY_HOOKS[key] = plain
    return plain
