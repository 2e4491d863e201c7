"""ClientConnection: reply parsing, pairing, pipelining and what it refuses to send.

Each test names the RFC rule it defends.
"""

from __future__ import annotations

import pytest
from helpers import ConnectionPair, drain

from smtp_core import (
    NEED_DATA,
    Address,
    ClientConfig,
    ClientConnection,
    ConnectionClosed,
    Data,
    Ehlo,
    Helo,
    LocalProtocolError,
    Mail,
    MailParams,
    MessageChunk,
    MessageEnd,
    Noop,
    OriginalRecipient,
    Quit,
    Rcpt,
    RcptParams,
    RemoteProtocolError,
    Reply,
    Rset,
    State,
    Vrfy,
)

EHLO_REPLY = (
    b"250-mx.example hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
    b"250-SMTPUTF8\r\n250-AUTH PLAIN login\r\n250-X-CUSTOM a b\r\n250 ENHANCEDSTATUSCODES\r\n"
)


def receive(client: ClientConnection, data: bytes) -> list[object]:
    client.receive_data(data)
    return drain(client)


def greeted_client(ehlo_reply: bytes | None = EHLO_REPLY, **config: object) -> ClientConnection:
    client = ClientConnection(ClientConfig(**config))  # type: ignore[arg-type]
    assert receive(client, b"220 mx.example ESMTP\r\n") == [Reply(220, "mx.example ESMTP")]
    if ehlo_reply is not None:
        client.send(Ehlo("c.example"))
        [reply] = receive(client, ehlo_reply)
        assert isinstance(reply, Reply) and reply.code == 250
    return client


def test_multiline_greeting_and_code_only_lines():
    """RFC 5321 4.2: multiline replies; a code alone is a complete line."""
    client = ClientConnection()
    events = receive(client, b"220-mx.example\r\n220-second\r\n220\r\n")
    assert events == [Reply(220, ("mx.example", "second", ""))]
    assert isinstance(events[0], Reply) and events[0].answers is None
    assert client.state is State.READY


def test_commands_wait_for_the_greeting():
    """RFC 5321 3.1: the client waits for the 220 before speaking."""
    client = ClientConnection()
    with pytest.raises(LocalProtocolError, match="greeting"):
        client.send(Ehlo("c.example"))


def test_ehlo_reply_parses_into_typed_extensions():
    """RFC 5321 4.1.1.1; RFC 1870 (SIZE), RFC 4954 (AUTH): keywords are
    case-insensitive and unknown ones are kept."""
    client = greeted_client()
    extensions = client.extensions
    assert extensions is not None
    assert extensions.pipelining and extensions.eightbitmime and extensions.smtputf8
    assert extensions.max_size == 1000
    assert extensions.auth_mechanisms == ("PLAIN", "LOGIN")
    assert extensions.params("x-custom") == ("a", "b")
    assert "x-custom" in extensions and not extensions.dsn
    assert client.state is State.GREETED


def test_ehlo_refused_then_helo_fallback():
    """RFC 5321 4.1.4 / 3.2: a server that does not know EHLO says 500 or
    502; the client then falls back to HELO and has no extensions."""
    client = greeted_client(ehlo_reply=None)
    client.send(Ehlo("c.example"))
    [reply] = receive(client, b"502 5.5.1 what?\r\n")
    assert isinstance(reply, Reply) and reply.code == 502 and reply.answers == Ehlo("c.example")
    assert client.state is State.READY and client.extensions is None
    client.send(Helo("c.example"))
    [reply] = receive(client, b"250 mx.example\r\n")
    assert client.state is State.GREETED
    assert client.extensions is not None and not client.extensions.keywords
    with pytest.raises(LocalProtocolError, match="SIZE"):
        client.send(Mail(None, MailParams(size=10)))


def test_replies_are_paired_with_the_commands_they_answer():
    """RFC 2920 section 3: replies come in the order of the commands."""
    client = greeted_client()
    mail = Mail(Address("a", "example.com"))
    first = Rcpt(Address("x", "example.com"))
    second = Rcpt(Address("y", "example.com"))
    wire = b"".join(client.send(c) for c in (mail, first, second, Data()))
    assert wire == (
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.com>\r\n"
        b"RCPT TO:<y@example.com>\r\nDATA\r\n"
    )
    assert client.pending == (mail, first, second, Data())
    replies = receive(client, b"250 2.1.0 ok\r\n550 5.1.1 no\r\n250 2.1.5 ok\r\n354 go\r\n")
    assert [r.answers for r in replies] == [mail, first, second, Data()]  # type: ignore[attr-defined]
    assert client.state is State.IN_MESSAGE and len(client.recipients) == 1


def test_without_pipelining_each_command_waits():
    """RFC 2920: a client may only send ahead when PIPELINING is offered."""
    client = greeted_client(ehlo_reply=b"250-mx\r\n250 8BITMIME\r\n")
    client.send(Mail(None))
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        client.send(Rcpt(Address("x", "example.com")))


@pytest.mark.parametrize("ender", [Data(), Noop(), Vrfy("x"), Ehlo("c"), Quit()])
def test_group_enders_must_be_last(ender: object):
    """RFC 2920 section 3.1: EHLO, DATA, VRFY, EXPN, TURN, QUIT and NOOP end
    a group."""
    client = greeted_client()
    client.send(Mail(None))
    client.send(Rcpt(Address("x", "example.com")))
    client.send(ender)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="ends a pipelined group"):
        client.send(Rset())


def test_client_refuses_what_the_projected_state_forbids():
    """RFC 5321 4.1.4: RCPT needs MAIL; DATA needs a recipient."""
    client = greeted_client()
    with pytest.raises(LocalProtocolError, match="need MAIL"):
        client.send(Rcpt(Address("x", "example.com")))
    client.send(Mail(None))
    with pytest.raises(LocalProtocolError, match="no valid recipients"):
        client.send(Data())
    with pytest.raises(LocalProtocolError, match="nested MAIL"):
        client.send(Mail(None))


def test_client_refuses_unadvertised_parameters_and_oversize():
    """RFC 5321 4.1.1.11 (only advertised parameters), RFC 1870 section 6.1,
    RFC 3461 (DSN), RFC 6531 section 3.4 (SMTPUTF8 for UTF-8 addresses)."""
    client = greeted_client()
    with pytest.raises(LocalProtocolError, match="fixed maximum"):
        client.send(Mail(None, MailParams(size=1001)))
    with pytest.raises(LocalProtocolError, match="DSN"):
        client.send(Mail(None, MailParams(envid="x")))
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        client.send(Mail(Address("jö", "example.com")))
    client.send(Mail(Address("jö", "example.com"), MailParams(smtputf8=True)))
    with pytest.raises(LocalProtocolError, match="DSN"):
        client.send(
            Rcpt(Address("x", "example.com"), RcptParams(orcpt=OriginalRecipient("rfc822", "x@y")))
        )
    assert client.send(Rcpt(Address("ü", "exämple.com"))) == "RCPT TO:<ü@exämple.com>\r\n".encode()


def test_utf8_rcpt_refused_when_mail_lacked_smtputf8():
    """RFC 6531 section 3.4."""
    client = greeted_client()
    client.send(Mail(None))
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        client.send(Rcpt(Address("ü", "example.com")))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Ehlo("c.example\r\nMAIL FROM:<x@y>"),
        lambda: Helo("a\nb"),
        lambda: Noop("x\r\nRSET"),
        lambda: Vrfy("a\x00b"),
        lambda: Rcpt(Address("a\r\nb", "example.com")),
        lambda: Rcpt(Address("a", "example.com\r\nDATA")),
        lambda: Mail(None, MailParams(envid="a\r\nb")),
        lambda: Mail(None, MailParams(extra=(("XFOO", "a\r\nRCPT"),))),
        lambda: Rcpt(Address("a", "b.c"), RcptParams(orcpt=OriginalRecipient("rfc822", "x\ny"))),
    ],
)
def test_crlf_and_nul_injection_is_refused_in_every_argument(build):
    """CRLF injection into MAIL FROM/RCPT TO and other arguments (e.g.
    CVE-2015-9097 class bugs in mail libraries): refused on building."""
    with pytest.raises(LocalProtocolError):
        build()


def test_wire_never_carries_cr_or_lf_inside_a_command():
    """Defence in depth: the writer refuses any line holding CR/LF/NUL."""
    from smtp_core._writers import write_command

    sneaky = Noop.__new__(Noop)
    object.__setattr__(sneaky, "text", "a\r\nQUIT")
    with pytest.raises(LocalProtocolError, match="CR, LF or NUL"):
        write_command(sneaky)


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n",  # no code
        b"25\r\n",  # too short
        b"2500 x\r\n",  # no separator
        b"199 x\r\n",  # 1yz is not SMTP
        b"600 x\r\n",  # out of range
        b"260 x\r\n",  # second digit above 5
        b"250_x\r\n",  # bad separator
    ],
)
def test_malformed_reply_lines_raise_remote_protocol_error(data: bytes):
    """RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39, then SP, - or CRLF."""
    client = ClientConnection()
    client.receive_data(data)
    with pytest.raises(RemoteProtocolError, match="expected a reply line"):
        client.next_event()
    with pytest.raises(RemoteProtocolError):  # the connection stays broken
        client.next_event()


def test_multiline_reply_lines_must_share_the_code():
    """RFC 5321 4.2.1: every line of a multiline reply has the same code."""
    client = ClientConnection()
    client.receive_data(b"220-a\r\n250 b\r\n")
    with pytest.raises(RemoteProtocolError, match="same code"):
        client.next_event()


def test_reply_line_too_long_is_bounded():
    """RFC 5321 4.5.3.1.5: 512 octets with CRLF; no unbounded buffering."""
    client = ClientConnection()
    client.receive_data(b"220 " + b"x" * 600)
    with pytest.raises(RemoteProtocolError, match="longer than 512"):
        client.next_event()


def test_unsolicited_reply_is_an_error_but_421_closes():
    """RFC 5321 3.8: 421 may come at any time and ends the session."""
    client = greeted_client()
    client.receive_data(b"250 surprise\r\n")
    with pytest.raises(RemoteProtocolError, match="no command awaited"):
        client.next_event()
    client = greeted_client()
    [reply, closed] = receive(client, b"421 4.4.2 timeout\r\n")
    assert closed == ConnectionClosed()
    assert isinstance(reply, Reply) and reply.code == 421 and reply.answers is None
    assert client.state is State.CLOSED
    assert client.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError, match="closed"):
        client.send(Noop())


def test_421_answers_a_pending_command_and_closes():
    client = greeted_client()
    client.send(Mail(None))
    [reply, _closed] = receive(client, b"421 4.3.2 shutting down\r\n")
    assert isinstance(reply, Reply) and reply.answers == Mail(None)
    assert client.state is State.CLOSED and client.pending == ()


def test_reply_of_the_wrong_class_is_a_remote_error():
    """RFC 5321 4.3.2: DATA is answered 354 (or an error), never 250."""
    client = greeted_client()
    client.send(Mail(None))
    client.send(Rcpt(Address("x", "example.com")))
    client.send(Data())
    client.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n")
    drain_ok = [client.next_event(), client.next_event()]
    assert all(isinstance(r, Reply) for r in drain_ok)
    with pytest.raises(RemoteProtocolError, match="DATA must be answered 3yz"):
        client.next_event()


def test_server_accepting_rcpt_without_transaction_is_caught():
    """RFC 5321 4.1.4: after MAIL was refused there is no transaction, so a
    250 to the RCPT pipelined behind it is the server's fault."""
    client = greeted_client()
    client.send(Mail(None))
    client.send(Rcpt(Address("x", "example.com")))
    client.receive_data(b"550 no\r\n250 ok\r\n")
    assert isinstance(client.next_event(), Reply)
    with pytest.raises(RemoteProtocolError, match="RCPT cannot be accepted"):
        client.next_event()


def test_content_only_after_354():
    """RFC 5321 4.1.1.4: content follows the 354 reply."""
    client = greeted_client()
    client.send(Mail(None))
    client.send(Rcpt(Address("x", "example.com")))
    client.send(Data())
    with pytest.raises(LocalProtocolError, match="354"):
        client.send(MessageChunk(b"too early"))
    receive(client, b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert client.send(MessageChunk(b".hi\n")) == b"..hi\r\n"
    with pytest.raises(LocalProtocolError, match="content"):
        client.send(Rset())
    assert client.send(MessageEnd()) == b".\r\n"
    with pytest.raises(LocalProtocolError):
        client.send(MessageChunk(b"after the end"))
    [reply] = receive(client, b"250 queued\r\n")
    assert isinstance(reply, Reply) and reply.answers == MessageEnd()
    assert client.state is State.GREETED


def test_strict_client_refuses_bare_lf_reply_lines():
    """RFC 5321 2.3.8: lines end with CRLF."""
    lenient = ClientConnection()
    assert receive(lenient, b"220 ok\n") == [Reply(220, "ok")]
    strict = ClientConnection(ClientConfig(strict=True))
    strict.receive_data(b"220 ok\n")
    with pytest.raises(RemoteProtocolError, match="CRLF"):
        strict.next_event()


def test_peer_close_gives_connection_closed():
    client = greeted_client()
    client.receive_data(b"")
    assert client.next_event() == ConnectionClosed()
    assert client.state is State.CLOSED


def test_quit_then_221_closes():
    """RFC 5321 4.1.1.10."""
    pair = ConnectionPair()
    pair.hello()
    reply = pair.command(Quit(), Reply(221, "bye"))
    assert reply.code == 221 and pair.client.state is State.CLOSED
    assert pair.client.next_event() == ConnectionClosed()
    assert pair.client.next_event() is not NEED_DATA


def test_next_transaction_may_follow_the_end_of_content_in_one_group():
    """RFC 2920 section 3.1: message content may be the first 'command' of a
    group, so MAIL/RCPT/DATA can follow the end of data without waiting."""
    client = greeted_client()
    for command in (Mail(None), Rcpt(Address("x", "example.com")), Data()):
        client.send(command)
    receive(client, b"250 ok\r\n250 ok\r\n354 go\r\n")
    group = (
        MessageChunk(b"hi\r\n"),
        MessageEnd(),
        Mail(None),
        Rcpt(Address("y", "example.com")),
        Data(),
    )
    wire = b"".join(client.send(event) for event in group)
    assert wire == b"hi\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<y@example.com>\r\nDATA\r\n"
    with pytest.raises(LocalProtocolError, match="ends a pipelined group"):
        client.send(Rset())
    replies = receive(client, b"250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert [r.answers for r in replies] == list(group[1:])  # type: ignore[attr-defined]
    assert client.state is State.IN_MESSAGE
    assert client.send(MessageChunk(b"second")) == b"second"


def test_client_refuses_command_lines_over_the_limit():
    """RFC 5321 4.5.3.1.4: 512 octets with CRLF, more for MAIL while SIZE and
    SMTPUTF8 are in force (RFC 1870 section 4, RFC 6531 section 3.4)."""
    client = greeted_client()
    with pytest.raises(LocalProtocolError, match="at most 512"):
        client.send(Vrfy("x" * 600))
    assert client.pending == ()
    client.send(Noop("x" * (512 - 7)))
    padding = (("XPAD", "x" * 480),)
    long_mail = Mail(Address("a", "example.com"), MailParams(size=10, extra=padding))
    client = greeted_client()
    assert 512 < len(client.send(long_mail)) <= 512 + 26 + 10
    helo_client = greeted_client(ehlo_reply=b"250-mx\r\n250 PIPELINING\r\n")
    with pytest.raises(LocalProtocolError, match="at most 512"):
        helo_client.send(Mail(Address("a", "example.com"), MailParams(extra=padding)))


def test_blank_vrfy_and_expn_cannot_be_built():
    """RFC 5321 4.1.1.6/4.1.1.7: the argument is a string, not blanks."""
    from smtp_core import Expn

    with pytest.raises(LocalProtocolError, match="blank"):
        Vrfy(" ")
    with pytest.raises(LocalProtocolError, match="blank"):
        Expn("  ")
    # RFC 5321 4.1.2: no control character on a command line, not even HTAB
    # (a server refuses the line with 501).
    with pytest.raises(LocalProtocolError, match="tab"):
        Expn("\t")


def test_a_hello_domain_over_255_octets_cannot_be_built():
    """RFC 5321 4.5.3.1.2: a domain is at most 255 octets; the server refuses
    a longer one with 501, so the client never sends it."""
    from smtp_core import Ehlo, Helo, Lhlo

    for kind in (Ehlo, Helo, Lhlo):
        assert kind("d" * 255).domain == "d" * 255
        with pytest.raises(LocalProtocolError, match="255 octets"):
            kind("d" * 256)


def test_a_broken_connection_takes_no_more_data():
    """After a RemoteProtocolError nothing more is buffered (bounded memory)."""
    client = ClientConnection()
    client.receive_data(b"hello\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()
    with pytest.raises(RemoteProtocolError):
        client.receive_data(b"x" * 65536)
    assert len(client._buffer) <= len(b"hello\r\n")


def test_ehlo_keywords_are_ascii_and_junk_lines_are_skipped():
    """RFC 5321 4.1.1.1: ehlo-keyword is ASCII letters, digits and '-'; a
    keyword that only upper-cases into SIZE (U+017F) is not SIZE."""
    client = greeted_client(ehlo_reply="250-mx\r\n250-\u017fIZE 10\r\n250 PIPELINING\r\n".encode())
    assert client.extensions is not None
    assert client.extensions.keywords == (("PIPELINING", ()),)
    assert client.state is State.GREETED


@pytest.mark.parametrize("junk", [b"\x00", b"\r", b"\x1b", b"\x7f"])
def test_a_control_character_in_a_reply_fails_the_connection(junk: bytes):
    """RFC 5321 4.2: reply text is HT and printable characters. A NUL or a
    bare CR is not skipped: it fails the connection, since what follows it
    may be an injected line (a bare CR ends a line on some peers)."""
    client = ClientConnection()
    client.receive_data(b"220 mx" + junk + b"250 injected\r\n")
    with pytest.raises(RemoteProtocolError, match="control character"):
        client.next_event()
    with pytest.raises(RemoteProtocolError):
        client.next_event()  # the connection stays failed


def test_a_pipelined_group_is_sent_all_or_nothing():
    """RFC 2920 3.1: a group goes out whole. When one of its commands cannot
    be sent (a UTF-8 recipient without SMTPUTF8, RFC 6531 3.4), send_group
    raises and records nothing, so the MAIL before it was never "sent"."""
    client = greeted_client()
    group = [Mail(Address("a", "example.org")), Rcpt(Address("jörg", "example.org"))]
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        client.send_group(group)
    assert client.pending == ()
    data = client.send_group([Mail(Address("a", "example.org")), Rcpt(Address("b", "example.org"))])
    assert data == b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
    assert [type(command) for command in client.pending] == [Mail, Rcpt]
