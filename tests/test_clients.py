"""The blocking and asyncio clients, against the project's own servers and
against aiosmtpd; the project's server against aiosmtplib. All on 127.0.0.1."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from test_asyncio_server import free_port, running

import smtp_core as smtp
from backends import asyncio as asyncio_backend
from backends import sync as sync_backend
from backends._client import RecipientsRefused, SenderRefused


class Collector:
    """Keeps every message; refuses nobody@ and sender bounce@."""

    def __init__(self) -> None:
        self.messages: list[tuple[smtp.Address | None, list[smtp.Address], bytes]] = []
        self.hellos: list[str] = []

    def on_ehlo(self, session, event):  # type: ignore[no-untyped-def]
        self.hellos.append(type(event).__name__)
        return None

    def on_mail(self, session, mail):  # type: ignore[no-untyped-def]
        if mail.reverse_path is not None and mail.reverse_path.local_part == "bounce":
            return smtp.Reply(550, "sender blocked", "5.7.1")
        return None

    def on_rcpt(self, session, envelope, rcpt):  # type: ignore[no-untyped-def]
        if rcpt.forward_path.local_part == "nobody":
            return smtp.Reply(550, "no such user", "5.1.1")
        return None

    def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        recipients = [r.forward_path for r in envelope.recipients]
        self.messages.append((envelope.reverse_path, recipients, body.read()))


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.org>"
    msg["To"] = "bob@example.net, nobody@example.net"
    msg["Bcc"] = "carol@example.net"
    msg["Subject"] = "hello"
    msg.set_content("Hi.\n.dot line\n")
    return msg


def test_sync_client_to_the_asyncio_server_pipelines_and_reports_each_recipient():
    """RFC 2920 group, per-recipient outcome, Bcc never sent (as smtplib)."""
    handler = Collector()
    with running(handler) as port, sync_backend.connect("127.0.0.1", port, timeout=10) as client:
        assert client.extensions is not None and client.extensions.pipelining
        result = client.send_message(message())
    bob, nobody, carol = (smtp.Address.parse(a) for a in (
        "bob@example.net", "nobody@example.net", "carol@example.net"
    ))  # fmt: skip
    assert result.recipients[nobody].code == 550
    assert set(result.refused) == {nobody}
    assert result.reply is not None and result.reply.code == 250
    [(sender, recipients, body)] = handler.messages
    assert sender == smtp.Address.parse("alice@example.org")
    assert recipients == [bob, carol]
    assert b"Bcc" not in body and b"\r\n.dot line\r\n" in body


def test_sender_and_all_recipients_refused_raise_with_the_reply():
    handler = Collector()
    with running(handler) as port, sync_backend.connect("127.0.0.1", port, timeout=10) as client:
        with pytest.raises(SenderRefused) as refused:
            client.sendmail("bounce@example.org", ["bob@example.net"], b"x\r\n")
        assert refused.value.reply is not None and refused.value.reply.code == 550
        with pytest.raises(RecipientsRefused) as nobody:
            client.sendmail("a@example.org", ["nobody@example.net"], b"x\r\n")
        assert next(iter(nobody.value.results.values())).code == 550
        # The session goes on after both.
        result = client.sendmail("a@example.org", "bob@example.net", [b"chunk one\r\n", b"two"])
        assert result.reply is not None and result.reply.is_positive
    assert handler.messages[-1][2] == b"chunk one\r\ntwo\r\n"


def test_helo_fallback_when_ehlo_is_refused():
    """RFC 5321 3.2: a client falls back to HELO when EHLO gets 500/502."""

    class OldServer(Collector):
        def on_ehlo(self, session, event):  # type: ignore[no-untyped-def]
            super().on_ehlo(session, event)
            return smtp.Reply(502, "what?") if isinstance(event, smtp.Ehlo) else None

    handler = OldServer()
    with running(handler) as port, sync_backend.connect("127.0.0.1", port, timeout=10) as client:
        assert client.extensions == smtp.Extensions()
        client.sendmail("a@example.org", ["b@example.org"], b"old school\r\n")
    assert handler.hellos == ["Ehlo", "Helo"]
    assert handler.messages[0][2] == b"old school\r\n"


def test_asyncio_client_to_the_sync_server_with_utf8_addresses():
    """RFC 6531: SMTPUTF8 is added when an address needs it."""
    handler = Collector()
    server = sync_backend.start_server(handler, "127.0.0.1", 0)
    try:

        async def send() -> None:
            async with await asyncio_backend.connect("127.0.0.1", server.port, timeout=10) as c:
                result = await c.sendmail("jörg@bücher.example", ["ünï@example.org"], b"hi\r\n")
                assert result.reply is not None and result.reply.code == 250

        asyncio.run(send())
    finally:
        server.shutdown()
        server.server_close()
    assert handler.messages == [
        (smtp.Address("jörg", "bücher.example"), [smtp.Address("ünï", "example.org")], b"hi\r\n")
    ]


class AiosmtpdHandler:
    def __init__(self) -> None:
        self.envelopes: list[object] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.envelopes.append(envelope)
        return "250 OK"


def test_sync_client_against_aiosmtpd():
    """Interop: aiosmtpd (PyPI) as the server."""
    handler = AiosmtpdHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with sync_backend.connect("127.0.0.1", port, timeout=10) as client:
            result = client.send_message(message(), to_addrs=["bob@example.net"])
        assert result.reply is not None and result.reply.code == 250
    finally:
        controller.stop()
    [envelope] = handler.envelopes
    assert envelope.mail_from == "alice@example.org"  # type: ignore[attr-defined]
    assert envelope.rcpt_tos == ["bob@example.net"]  # type: ignore[attr-defined]
    assert b".dot line" in envelope.content  # type: ignore[attr-defined]


def test_aiosmtplib_against_the_asyncio_server():
    """Interop: aiosmtplib (PyPI) as the client, pipelining included."""
    handler = Collector()
    with running(handler) as port:

        async def send() -> None:
            errors, _ = await aiosmtplib.send(
                message(), hostname="127.0.0.1", port=port, timeout=10, start_tls=False
            )
            assert set(errors) == {"nobody@example.net"}

        asyncio.run(send())
    [(_, recipients, body)] = handler.messages
    assert [str(r) for r in recipients] == ["bob@example.net", "carol@example.net"]
    assert b"Subject: hello" in body


@pytest.mark.parametrize("size", [10, 2_500_000])
def test_binary_content_goes_by_bdat_as_binarymime(size: int):
    """RFC 3030: content with NUL and bare line endings is sent with BDAT
    and BODY=BINARYMIME when offered, arriving octet for octet."""
    handler = Collector()
    config = smtp.ServerConfig(binarymime=True, max_message_size=None)
    content = (b"\x00\n\r\xffbinary" * (size // 10 + 1))[:size]
    with running(handler, config) as port, sync_backend.connect("127.0.0.1", port) as client:
        result = client.sendmail("a@example.org", ["b@example.org"], content)
        assert result.reply is not None and result.reply.code == 250
        assert isinstance(result.reply.answers, smtp.Bdat) and result.reply.answers.last
    assert handler.messages[0][2] == content


@pytest.mark.parametrize(
    ("headers", "given", "expected"),
    [
        ("To: b@example.org\r\n", {}, "no address in Sender or From"),
        ("From: a@example.org\r\n", {}, "no address in To, Cc or Bcc"),
        ("To: b@example.org\r\n", {"from_addr": ""}, None),  # the null path, asked for
    ],
)
def test_send_message_never_guesses_the_null_reverse_path(
    headers: str, given: dict[str, str], expected: str | None
):
    """A message with no sender in its headers went out as MAIL FROM:<>, so
    no bounce could ever come back: now it is refused before MAIL, unless
    the null reverse path is asked for with from_addr=""."""
    from email import message_from_string, policy

    msg = message_from_string(f"{headers}Subject: x\r\n\r\nbody\r\n", policy=policy.default)
    handler = Collector()
    with running(handler) as port, sync_backend.connect("127.0.0.1", port, timeout=10) as client:
        if expected is None:
            client.send_message(msg, **given)  # type: ignore[arg-type]
        else:
            with pytest.raises(ValueError, match=expected):
                client.send_message(msg, **given)  # type: ignore[arg-type]
    assert [sender for sender, _, _ in handler.messages] == ([None] if expected is None else [])


def test_login_after_quit_says_the_connection_is_closed():
    """Not "the server offers no AUTH": the reason is the closed connection."""
    with running(Collector()) as port:
        client = sync_backend.connect("127.0.0.1", port, timeout=10)
        client.quit()
        with pytest.raises(smtp.LocalProtocolError, match="the connection is closed"):
            client.login("ann", "s3cret")


def test_a_str_message_is_refused_before_mail():
    """Content is bytes: a str used to fail in the middle of DATA, which
    drops the connection; now nothing is sent and the client goes on."""
    handler = Collector()
    with running(handler) as port, sync_backend.connect("127.0.0.1", port, timeout=10) as client:
        with pytest.raises(TypeError, match="not str"):
            client.sendmail("a@example.org", ["b@example.org"], "Subject: x\r\n\r\nhi\r\n")  # type: ignore[arg-type]
        client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    assert len(handler.messages) == 1
