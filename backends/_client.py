# The client side, decided once for every backend.
#
# Like the server's session driver, ``ClientDriver``'s methods are
# generators of Read and Write requests, so each backend's client only moves
# bytes. The engine (smtp_core) refuses anything the protocol forbids; this
# driver chooses the commands: EHLO with HELO fallback, one pipelined group
# when PIPELINING is offered, the parameters a message needs, and the
# per-recipient outcome.
from __future__ import annotations

import base64
import contextlib
import dataclasses
import ssl
from collections.abc import Callable, Generator, Iterable, Sequence
from copy import copy as shallow_copy
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from email.utils import getaddresses
from io import BytesIO
from time import monotonic
from typing import Any, TypeVar

import smtp_core as smtp
from smtp_core import sasl

from ._session import HookFailed, Read, Request, StartTls, Write, describe

__all__ = [
    "AuthenticationFailed",
    "ClientDriver",
    "DataRefused",
    "RecipientsRefused",
    "SendResult",
    "SenderRefused",
    "ServiceRefused",
    "SMTPError",
    "message_parts",
    "prepare",
]

Steps = Generator[Request, Any, Any]
_K = TypeVar("_K")
_V = TypeVar("_V")


class SMTPError(Exception):
    """The server refused something; ``reply`` says what it answered."""

    def __init__(self, message: str, reply: smtp.Reply | None) -> None:
        super().__init__(f"{message}: {reply.code} {reply.text}" if reply else message)
        self.reply = reply


class ServiceRefused(SMTPError):
    """The greeting, EHLO/HELO or the connection itself failed."""


class SenderRefused(SMTPError):
    """MAIL was refused."""


class RecipientsRefused(SMTPError):
    """Every RCPT was refused; ``results`` has each recipient's reply."""

    def __init__(self, results: dict[smtp.Address, smtp.Reply]) -> None:
        last = next(reversed(results.values())) if results else None
        super().__init__("every recipient was refused", last)
        self.results = results


class AuthenticationFailed(SMTPError):
    """AUTH failed, or the server could not prove itself (SCRAM)."""


class DataRefused(SMTPError):
    """DATA or the message content was refused."""


@dataclass
class SendResult:
    """What became of one message: each recipient's RCPT reply, and the
    reply to the content (per recipient in LMTP: ``delivered``)."""

    recipients: dict[smtp.Address, smtp.Reply] = field(default_factory=dict)
    reply: smtp.Reply | None = None
    delivered: dict[smtp.Address, smtp.Reply] = field(default_factory=dict)

    @property
    def refused(self) -> dict[smtp.Address, smtp.Reply]:
        """Recipients whose RCPT or (LMTP) delivery was refused."""
        out = {a: r for a, r in self.recipients.items() if not r.is_positive}
        if self.delivered:  # LMTP only
            out.update({a: r for a, r in self.delivered.items() if not r.is_positive})
        return out


def _remember(cache: dict[_K, _V], key: _K, make: Callable[[_K], _V]) -> _V:
    """``make(key)``, made once: addresses and commands are immutable and a
    sender uses the same ones again and again. Each cache is emptied when
    full (1024 entries), so values that all differ cost one lookup."""
    value = cache.get(key)
    if value is None:
        value = make(key)
        if len(cache) >= 1024:
            cache.clear()
        cache[key] = value
    return value


def _address(value: str | smtp.Address) -> smtp.Address:
    if isinstance(value, smtp.Address):
        return value
    return _remember(_PARSED, value, smtp.Address.parse)


def _mail(
    reverse: smtp.Address | None, size: int | None, body: smtp.Body | None, smtputf8: bool
) -> smtp.Mail:
    return _remember(
        _MAILS,
        (reverse, size, body, smtputf8),
        lambda key: smtp.Mail(key[0], smtp.MailParams(size=key[1], body=key[2], smtputf8=key[3])),
    )


def _rcpt(recipient: str | smtp.Address) -> smtp.Rcpt:
    return _remember(_RCPTS, recipient, lambda key: smtp.Rcpt(_address(key)))


_PARSED: dict[str, smtp.Address] = {}
_MAILS: dict[tuple[smtp.Address | None, int | None, smtp.Body | None, bool], smtp.Mail] = {}
_RCPTS: dict[str | smtp.Address, smtp.Rcpt] = {}
# Commands without arguments are all alike.
_DATA = smtp.Data()
# Where a call that ran to its end never leaves the connection.
_MID_EXCHANGE = frozenset(
    {
        smtp.State.IN_TRANSACTION,
        smtp.State.HAS_RECIPIENTS,
        smtp.State.IN_MESSAGE,
        smtp.State.IN_CHUNKING,
        smtp.State.CHUNKING_FAILED,
        smtp.State.AUTH_EXCHANGE,
        smtp.State.TLS_HANDSHAKE,
    }
)
_MESSAGE_END = smtp.MessageEnd()


class ClientDriver:
    """One client connection's decisions."""

    def __init__(
        self,
        config: smtp.ClientConfig | None = None,
        *,
        timeout: float = 60.0,
        tls: bool = False,
    ) -> None:
        self.config = config or smtp.ClientConfig()
        self.conn = smtp.ClientConnection(self.config, tls=tls)
        self.timeout = timeout

    def _replies(self, count: int) -> Generator[Request, Any, list[smtp.Reply]]:
        """The next ``count`` replies, reading as needed: each within the
        timeout, however slowly its bytes trickle in."""
        conn = self.conn
        replies: list[smtp.Reply] = []
        deadline = monotonic() + self.timeout
        while len(replies) < count:
            event = conn.next_event()
            if isinstance(event, smtp.Reply):
                replies.append(event)
                deadline = monotonic() + self.timeout
            elif event is smtp.NEED_DATA:
                data = yield Read(max(deadline - monotonic(), 0.0))
                if data is None:
                    raise ServiceRefused(f"no reply within {self.timeout} s", None)
                conn.receive_data(data)
            else:
                # Its last word, if it was a 421 (RFC 5321 3.8), says why.
                last = replies[-1] if replies and replies[-1].code == 421 else None
                raise ServiceRefused("the server closed the connection", last)
        return replies

    def _reply(self) -> Generator[Request, Any, smtp.Reply]:
        [reply] = yield from self._replies(1)
        return reply

    def _exchange(
        self, commands: Sequence[smtp.Command]
    ) -> Generator[Request, Any, list[smtp.Reply]]:
        """Send ``commands`` (as one group when pipelining is allowed) and
        return one reply per command."""
        conn = self.conn
        if conn.extensions is not None and conn.extensions.pipelining:
            # All or nothing: a command refused here leaves nothing half sent.
            yield Write(conn.send_group(commands))
            return (yield from self._replies(len(commands)))
        replies: list[smtp.Reply] = []
        for command in commands:
            yield Write(conn.send(command))
            replies.append((yield from self._reply()))
        return replies

    def handshake(self, starttls: str = "none") -> Generator[Request, Any, smtp.Reply]:
        """Read the greeting and say EHLO, falling back to HELO on 500/502
        (RFC 5321 3.2), then STARTTLS when ``starttls`` is "required" or
        "opportunistic" (RFC 3207); returns the EHLO reply in force."""
        greeting = yield from self._reply()
        if not greeting.is_positive:
            raise ServiceRefused("the server refused service", greeting)
        reply = yield from self.hello()
        conn = self.conn
        if starttls == "none" or conn.tls:
            return reply
        required = starttls == "required"
        if conn.extensions is None or not conn.extensions.starttls:
            if required:
                raise ServiceRefused("STARTTLS is required but not offered", reply)
            return reply
        [answer] = yield from self._exchange([smtp.StartTls()])
        if answer.code != 220:
            if required:
                raise ServiceRefused("STARTTLS is required but was refused", answer)
            return reply
        outcome = yield StartTls()
        if isinstance(outcome, HookFailed):
            raise ServiceRefused(f"TLS handshake failed: {describe(outcome.error)}", None)
        conn.tls_started()  # RFC 3207 4.2: forget, then EHLO again
        return (yield from self.hello())

    def hello(self) -> Generator[Request, Any, smtp.Reply]:
        name = self.config.local_hostname
        lmtp = self.config.lmtp
        [reply] = yield from self._exchange([smtp.Lhlo(name) if lmtp else smtp.Ehlo(name)])
        if not reply.is_positive and reply.code in (500, 502) and not lmtp:
            [reply] = yield from self._exchange([smtp.Helo(name)])
        if not reply.is_positive:
            raise ServiceRefused("EHLO/HELO was refused", reply)
        return reply

    def login(
        self, username: str, password: str, mechanism: str | None = None
    ) -> Generator[Request, Any, smtp.Reply]:
        """AUTH with the strongest mechanism offered (RFC 4954), or the one
        named; PLAIN and LOGIN only under TLS unless named."""
        self._check_in_step()
        conn = self.conn
        if conn.state is smtp.State.CLOSED:
            raise smtp.LocalProtocolError("the connection is closed")
        offered = conn.extensions.auth_mechanisms if conn.extensions else ()
        if mechanism is None:
            available = None if conn.tls else [m for m in offered if m not in ("PLAIN", "LOGIN")]
            mechanism = sasl.strongest(offered, available)
            if mechanism is None:
                if not offered:
                    raise AuthenticationFailed("the server offers no AUTH", None)
                raise AuthenticationFailed(
                    f"no usable mechanism among {', '.join(offered)}"
                    + ("" if conn.tls else " (PLAIN and LOGIN go only over TLS, unless named)"),
                    None,
                )
        client = sasl.client_mechanism(mechanism, username=username, password=password)
        yield Write(conn.send(smtp.Auth(client.name, client.initial_response())))
        while True:
            reply = yield from self._reply()
            if reply.code != 334:
                break
            try:
                answer = client.respond(base64.b64decode(reply.text))
            except sasl.SaslError as error:
                yield Write(conn.send(smtp.AuthCancel()))
                yield from self._reply()
                raise AuthenticationFailed(f"the server failed SASL: {error}", reply) from None
            yield Write(conn.send(smtp.AuthResponse(answer)))
        if not reply.is_positive:
            raise AuthenticationFailed("authentication failed", reply)
        if not client.is_complete:
            # SCRAM: a 235 before the server proved itself is no success.
            raise AuthenticationFailed("the server did not prove itself", reply)
        return reply

    def send(
        self,
        sender: str | smtp.Address | None,
        recipients: Iterable[str | smtp.Address],
        content: bytes | Iterable[bytes],
    ) -> Generator[Request, Any, SendResult]:
        """One transaction; raises SMTPError subclasses when it cannot go on."""
        self._check_in_step()
        if isinstance(content, str):  # checked before MAIL: nothing goes half way
            raise TypeError("the message content is bytes or an iterable of bytes, not str")
        conn = self.conn
        extensions = conn.extensions or smtp.Extensions()
        reverse = None if sender is None or sender == "" else _address(sender)
        rcpts = [_rcpt(r) for r in recipients]
        if not rcpts:
            raise ValueError("a message needs at least one recipient")
        forward = [rcpt.forward_path for rcpt in rcpts]
        whole = content if isinstance(content, bytes) else None  # else chunks
        ascii_content = whole is not None and whole.isascii()
        size = len(whole) if whole is not None else None
        # RFC 3030: content that is not text (NUL, bare CR or LF) goes by BDAT
        # as BINARYMIME when the server takes it, octet for octet.
        binary = (
            whole is not None
            and extensions.chunking
            and extensions.binarymime
            and _is_binary(whole)
        )
        eightbitmime = extensions.eightbitmime
        body = smtp.Body.EIGHT_BIT_MIME if not ascii_content and eightbitmime else None
        utf8 = (reverse is not None and not reverse.is_ascii) or not all(
            a.is_ascii for a in forward
        )
        # What would fail half way is refused before anything is sent.
        if utf8 and not extensions.smtputf8:
            raise smtp.LocalProtocolError(
                "a non-ASCII address needs SMTPUTF8 (RFC 6531), which the server does not offer"
            )
        seven_bit_only = not eightbitmime and not binary
        if seven_bit_only and whole is not None and not ascii_content:
            raise smtp.LocalProtocolError(
                "8-bit content needs 8BITMIME (RFC 6152 section 3), which the server does "
                "not offer: send it 7-bit (send_message converts an EmailMessage)"
            )
        if (
            whole is not None
            and not binary
            and self.config.bare_line_ending is smtp.BareLinePolicy.REJECT
            and _has_bare_line_ending(whole)
        ):
            raise smtp.LocalProtocolError(
                "bare CR or LF in the message (the client's policy is REJECT): "
                "lines must end with CRLF"
            )
        mail = _mail(
            reverse,
            size if extensions.size and size is not None else None,
            smtp.Body.BINARY_MIME if binary else body,
            utf8,
        )
        pipelining = extensions.pipelining
        result = SendResult()
        if binary:
            assert whole is not None
            return (yield from self._send_chunked(mail, rcpts, forward, whole, result))
        if pipelining:
            # RFC 2920: MAIL, every RCPT and DATA in one group.
            replies = yield from self._exchange([mail, *rcpts, _DATA])
            mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
        else:
            [mail_reply] = yield from self._exchange([mail])
            rcpt_replies = []
            if mail_reply.is_positive:
                for rcpt in rcpts:
                    rcpt_replies += yield from self._exchange([rcpt])
            data_reply = None
        if not mail_reply.is_positive:
            yield from self._reset()
            raise SenderRefused("MAIL was refused", mail_reply)
        result.recipients = dict(zip(forward, rcpt_replies, strict=True))
        if not any(reply.is_positive for reply in rcpt_replies):
            if data_reply is not None and data_reply.code == 354:
                # A server that says 354 with no recipient: end it empty.
                yield Write(conn.send(_MESSAGE_END))
                yield from self._reply()
            yield from self._reset()
            raise RecipientsRefused(result.recipients)
        if data_reply is None:
            [data_reply] = yield from self._exchange([_DATA])
        if data_reply.code != 354:
            yield from self._reset()
            raise DataRefused("DATA was refused", data_reply)
        chunks = [content] if isinstance(content, bytes) else content
        held = b""  # the last piece goes out with the end: one write fewer
        try:
            for chunk in chunks:
                if seven_bit_only and not chunk.isascii():
                    raise smtp.LocalProtocolError(
                        "8-bit content needs 8BITMIME (RFC 6152 section 3), which the "
                        "server does not offer: the connection is dropped mid-message"
                    )
                data = conn.send(smtp.MessageChunk(chunk))
                if held:
                    yield Write(held)
                held = data
            end = conn.send(_MESSAGE_END)
        except BaseException:
            # Content cannot be taken back: the only safe way out of DATA is
            # to drop the connection, so the server delivers nothing.
            with contextlib.suppress(smtp.ProtocolError):
                conn.send(smtp.ConnectionClosed())
            raise
        yield Write(held + end)
        return (yield from self._finish(result))

    def _finish(self, result: SendResult) -> Generator[Request, Any, SendResult]:
        """Collect the replies to the content (per recipient in LMTP)."""
        conn = self.conn
        while conn.pending:
            reply = yield from self._reply()
            if isinstance(reply.answers, smtp.Rcpt):
                result.delivered[reply.answers.forward_path] = reply
            result.reply = reply
            if isinstance(reply.answers, smtp.Bdat) and not reply.is_positive:
                break  # RFC 3030 section 2: a refused chunk ends the transfer
        while conn.pending:  # chunks already pipelined behind the refused one
            yield from self._reply()
        final = result.reply
        if final is not None and not final.is_positive and not self.config.lmtp:
            yield from self._reset()
            raise DataRefused("the message was refused", final)
        return result

    def _send_chunked(
        self,
        mail: smtp.Mail,
        rcpts: list[smtp.Rcpt],
        forward: list[smtp.Address],
        content: bytes,
        result: SendResult,
    ) -> Generator[Request, Any, SendResult]:
        conn = self.conn
        replies = yield from self._exchange([mail, *rcpts])
        if not replies[0].is_positive:
            yield from self._reset()
            raise SenderRefused("MAIL was refused", replies[0])
        result.recipients = dict(zip(forward, replies[1:], strict=True))
        if not any(reply.is_positive for reply in replies[1:]):
            yield from self._reset()
            raise RecipientsRefused(result.recipients)
        step = 1 << 20
        offsets = range(0, max(len(content), 1), step)
        for offset in offsets:
            piece = content[offset : offset + step]
            last = offset + step >= len(content)
            yield Write(
                conn.send(smtp.Bdat(len(piece), last)) + conn.send(smtp.MessageChunk(piece))
            )
            if not conn.extensions or not conn.extensions.pipelining:
                reply = yield from self._reply()
                result.reply = reply
                if not reply.is_positive:
                    break
        return (yield from self._finish(result))

    def _out_of_step(self) -> bool:
        return bool(self.conn.pending) or self.conn.state in _MID_EXCHANGE

    def _check_in_step(self) -> None:
        """A call cut short (cancelled, or ended by an error of the
        connection) leaves replies owed, or a transaction, content or an
        exchange half done: what the server says next would be taken for the
        answers to this call. Such a connection is of no more use."""
        if self._out_of_step():
            raise ServiceRefused(
                "the connection is out of step: an earlier call was cut short "
                f"in state {self.conn.state.name}; connect again",
                None,
            )

    def _reset(self) -> Steps:
        if self.conn.state is not smtp.State.CLOSED:
            yield from self._exchange([smtp.Rset()])

    def quit(self) -> Generator[Request, Any, smtp.Reply | None]:
        """QUIT, unless the connection is closed or out of step (see
        ``_check_in_step``): then nothing is said, and None returned."""
        if self.conn.state is smtp.State.CLOSED or self._out_of_step():
            return None
        [reply] = yield from self._exchange([smtp.Quit()])
        return reply


def envelope_of(
    msg: Message,
    from_addr: str | smtp.Address | None,
    to_addrs: Sequence[str | smtp.Address] | None,
) -> tuple[str | smtp.Address, list[str | smtp.Address]]:
    """The envelope of ``msg``: what was given, else from its headers (as
    smtplib does: Sender or From; To, Cc and Bcc). ValueError when the
    headers hold no sender or no recipient: the null reverse path is never
    chosen unasked (no bounce could come back); ask for it with ""."""
    if from_addr is None:
        source = msg["Sender"] or msg["From"]
        found = getaddresses([str(source)]) if source is not None else []
        if not found or not found[0][1]:
            raise ValueError(
                "the message has no address in Sender or From: "
                'give a sender ("" for the null reverse path)'
            )
        from_addr = found[0][1]
    if to_addrs is None:
        fields = [str(v) for name in ("To", "Cc", "Bcc") for v in msg.get_all(name, [])]
        to_addrs = [address for _, address in getaddresses(fields) if address]
        if not to_addrs:
            raise ValueError("the message has no address in To, Cc or Bcc: give the recipients")
    return from_addr, list(to_addrs)


def message_parts(
    msg: EmailMessage,
    from_addr: str | smtp.Address | None,
    to_addrs: Sequence[str | smtp.Address] | None,
    extensions: smtp.Extensions | None = None,
) -> tuple[str | smtp.Address | None, list[str | smtp.Address], bytes]:
    """The envelope and the bytes of ``msg`` (as smtplib derives them: Sender
    or From; To, Cc and Bcc; Bcc never sent).

    The bytes are the message's own, unless they are 8-bit and the server
    (its ``extensions``) offers no 8BITMIME: then RFC 6152 section 3 has the
    client convert them, and 8-bit parts are re-encoded (base64 or
    quoted-printable) and 8-bit headers as encoded words."""
    from_addr, to_addrs = envelope_of(msg, from_addr, to_addrs)
    copy = msg
    if "Bcc" in msg or "Resent-Bcc" in msg:
        copy = shallow_copy(msg)  # the other headers stay exactly as they were
        del copy["Bcc"]
        del copy["Resent-Bcc"]
    out = BytesIO()
    # linesep CRLF as SMTP wants; headers are written as they were set.
    policy = msg.policy.clone(linesep="\r\n")
    if isinstance(policy, EmailPolicy):
        # Headers as they came: no refolding, so DKIM signatures survive.
        policy = policy.clone(refold_source="none")
    BytesGenerator(out, policy=policy).flatten(copy, linesep="\r\n")
    content = out.getvalue()
    if extensions is not None and not extensions.eightbitmime and not content.isascii():
        out = BytesIO()
        BytesGenerator(out, policy=policy.clone(cte_type="7bit")).flatten(copy, linesep="\r\n")
        content = out.getvalue()
    return from_addr, list(to_addrs), content


_STARTTLS = {
    "none": "none",
    "implicit": "none",
    "starttls": "required",
    "opportunistic": "opportunistic",
}


def prepare(
    tls: str, ssl_context: ssl.SSLContext | None, config: smtp.ClientConfig | None
) -> tuple[smtp.ClientConfig, ssl.SSLContext | None, str]:
    """A client's config, TLS context and STARTTLS mode for a ``tls`` choice.

    "starttls" and "implicit" set ``require_tls``, so that the engine itself
    refuses MAIL, RCPT, DATA and AUTH in plaintext whatever goes wrong."""
    if tls not in _STARTTLS:
        raise ValueError(f"tls must be one of {sorted(_STARTTLS)}, got {tls!r}")
    base = config or smtp.ClientConfig()
    if tls in ("starttls", "implicit") and not base.require_tls:
        base = dataclasses.replace(base, require_tls=True)
    if tls != "none" and ssl_context is None:
        ssl_context = ssl.create_default_context()
    return base, ssl_context, _STARTTLS[tls]


def _has_bare_line_ending(content: bytes) -> bool:
    pairs = content.count(b"\r\n")
    return content.count(b"\r") != pairs or content.count(b"\n") != pairs


def _is_binary(content: bytes) -> bool:
    """Whether ``content`` is not CRLF text: a NUL, or a bare CR or LF."""
    pairs = content.count(b"\r\n")
    return b"\0" in content or content.count(b"\r") != pairs or content.count(b"\n") != pairs
