"""STARTTLS (RFC 3207) and implicit TLS (RFC 8314) in both engines."""

from __future__ import annotations

import pytest
from helpers import ConnectionPair, drain

from smtp_core import (
    PAUSED,
    Address,
    ClientConfig,
    ClientConnection,
    CommandError,
    Ehlo,
    Helo,
    LocalProtocolError,
    Mail,
    RemoteProtocolError,
    Reply,
    Rset,
    ServerConfig,
    ServerConnection,
    StartTls,
    State,
)

TLS_SERVER = ServerConfig(starttls=True)


def tls_pair(server_config: ServerConfig = TLS_SERVER, **client: object) -> ConnectionPair:
    pair = ConnectionPair(server_config, ClientConfig(**client))  # type: ignore[arg-type]
    pair.hello()
    return pair


def test_starttls_handshake_resets_both_sides():
    """RFC 3207 section 4.2: after the handshake both sides forget what they
    learnt, EHLO is needed again, and STARTTLS is no longer offered."""
    pair = tls_pair()
    assert pair.client.extensions is not None and pair.client.extensions.starttls
    pair.command(StartTls(), Reply(220, "go ahead"))
    assert pair.server.state is pair.client.state is State.TLS_HANDSHAKE
    assert pair.server.next_event() is PAUSED and pair.client.next_event() is PAUSED
    pair.server.tls_started()
    pair.client.tls_started()
    assert pair.server.tls and pair.client.tls
    assert pair.server.state is pair.client.state is State.READY
    assert pair.server.extensions is None and pair.client.extensions is None
    with pytest.raises(LocalProtocolError, match="EHLO"):
        pair.client.send(Mail(None))
    pair.hello()
    assert pair.client.extensions is not None and not pair.client.extensions.starttls
    pair.client.send(Mail(None))  # allowed again after the new EHLO


def test_starttls_again_under_tls_gets_554():
    """Once TLS is on STARTTLS is neither offered nor accepted."""
    server = ServerConnection(TLS_SERVER, tls=True)
    server.send(server.greeting())
    server.receive_data(b"EHLO c\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    assert server.extensions is not None and not server.extensions.starttls
    server.receive_data(b"STARTTLS\r\n")
    event = server.next_event()
    assert isinstance(event, CommandError)
    assert (event.reply.code, event.reply.enhanced) == (554, "5.5.1")


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"STARTTLS now\r\n", 501),  # RFC 3207 section 4: no parameters
        (b"MAIL FROM:<a@b.c>\r\n", None),
    ],
)
def test_starttls_argument_and_transaction(line: bytes, code: int | None):
    """RFC 3207 section 4 (501 for an argument); STARTTLS inside a mail
    transaction is refused with 503."""
    server = ServerConnection(TLS_SERVER)
    server.send(server.greeting())
    server.receive_data(b"EHLO c\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    server.receive_data(line)
    event = server.next_event()
    if code is not None:
        assert isinstance(event, CommandError) and event.reply.code == code
        return
    server.send(Reply(250, "ok"))
    server.receive_data(b"STARTTLS\r\n")
    event = server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == 503


def test_starttls_not_offered_gets_502():
    server = ServerConnection()
    server.send(server.greeting())
    server.receive_data(b"EHLO c\r\nSTARTTLS\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    event = server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == 502


INJECTED = b"MAIL FROM:<attacker@example.com>\r\n"


@pytest.mark.parametrize("cut", range(len(INJECTED) + 1))
def test_server_command_injection_after_starttls_is_an_error(cut: int):
    """Postfix CVE-2011-0411, aiosmtpd CVE-2024-34083: commands sent with
    STARTTLS in plaintext are never executed, wherever the bytes were split,
    a partial line included."""
    server = ServerConnection(TLS_SERVER)
    server.send(server.greeting())
    server.receive_data(b"EHLO c\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    server.receive_data(b"STARTTLS\r\n" + INJECTED[:cut])
    assert server.next_event() == StartTls()
    if cut == 0:
        server.send(Reply(220, "go"))
        server.receive_data(INJECTED)  # arrives before the handshake
        with pytest.raises(RemoteProtocolError, match="plaintext after STARTTLS"):
            server.tls_started()
    else:
        with pytest.raises(RemoteProtocolError, match="plaintext after STARTTLS") as error:
            server.send(Reply(220, "go"))
        assert error.value.reply is not None and error.value.reply.code == 554
    with pytest.raises(RemoteProtocolError):
        server.next_event()


INJECTED_REPLY = b"250-fake\r\n250 PIPELINING\r\n"


@pytest.mark.parametrize("cut", range(len(INJECTED_REPLY) + 1))
def test_client_response_injection_after_220_is_an_error(cut: int):
    """The client-side twin fixed in aiosmtplib 5.1.2: replies that arrive
    in plaintext after the 220 are never taken as replies."""
    client = ClientConnection()
    client.receive_data(b"220 mx\r\n")
    client.next_event()
    client.send(Ehlo("c"))
    client.receive_data(b"250-mx\r\n250 STARTTLS\r\n")
    client.next_event()
    client.send(StartTls())
    client.receive_data(b"220 go\r\n" + INJECTED_REPLY[:cut])
    if cut:
        with pytest.raises(RemoteProtocolError, match="plaintext after STARTTLS"):
            client.next_event()
    else:
        reply = client.next_event()
        assert isinstance(reply, Reply) and reply.answers == StartTls()
        client.receive_data(INJECTED_REPLY)
        with pytest.raises(RemoteProtocolError, match="plaintext after STARTTLS"):
            client.tls_started()


def test_tls_started_only_after_220():
    server = ServerConnection()
    with pytest.raises(LocalProtocolError, match="220"):
        server.tls_started()


def test_starttls_ends_a_pipelined_group():
    """RFC 3207 section 4.2 / RFC 2920: nothing may follow STARTTLS in a group."""
    pair = tls_pair()
    pair.client.send(StartTls())
    with pytest.raises(LocalProtocolError, match="ends a pipelined group"):
        pair.client.send(Rset())


def test_server_tls_required_refuses_mail_before_tls():
    """RFC 3207 section 4: 530 5.7.0 Must issue a STARTTLS command first."""
    server = ServerConnection(ServerConfig(starttls=True, require_tls=True))
    server.send(server.greeting())
    server.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.c>\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    event = server.next_event()
    assert isinstance(event, CommandError)
    assert (event.reply.code, event.reply.enhanced) == (530, "5.7.0")


def test_implicit_tls_satisfies_tls_required():
    """RFC 8314: a connection that starts under TLS is secure from the start."""
    server = ServerConnection(ServerConfig(require_tls=True), tls=True)
    server.send(server.greeting())
    server.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.c>\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    assert server.next_event() == Mail(Address("a", "b.c"))
    client = ClientConnection(ClientConfig(require_tls=True), tls=True)
    assert client.tls


@pytest.mark.parametrize("scenario", ["not offered", "454", "502", "ehlo refused"])
def test_client_tls_required_never_goes_on_in_plaintext(scenario: str):
    """RFC 3207 section 6: a client that requires TLS must not fall back to
    plaintext however STARTTLS fails (the downgrade attacks)."""
    client = ClientConnection(ClientConfig(require_tls=True))
    client.receive_data(b"220 mx\r\n")
    client.next_event()
    if scenario == "ehlo refused":
        client.send(Ehlo("c"))
        client.receive_data(b"502 no\r\n")
        client.next_event()
        client.send(Helo("c"))
        client.receive_data(b"250 mx\r\n")
    else:
        client.send(Ehlo("c"))
        offered = b"250-mx\r\n250 STARTTLS\r\n" if scenario != "not offered" else b"250 mx\r\n"
        client.receive_data(offered)
        client.next_event()
        if scenario != "not offered":
            client.send(StartTls())
            client.receive_data(scenario.encode() + b" not now\r\n")
    drain(client)
    assert client.state is State.GREETED and not client.tls
    with pytest.raises(LocalProtocolError, match="STARTTLS"):
        client.send(Mail(None))
