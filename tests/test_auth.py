"""AUTH framing in both engines (RFC 4954)."""

from __future__ import annotations

import base64

import pytest
from helpers import ConnectionPair

from smtp_core import (
    PAUSED,
    Auth,
    AuthCancel,
    AuthResponse,
    ClientConfig,
    ClientConnection,
    CommandError,
    Ehlo,
    LocalProtocolError,
    Mail,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
    State,
)

AUTH_SERVER = ServerConfig(auth_mechanisms=("SCRAM-SHA-256", "PLAIN", "LOGIN"))


def server_after_ehlo(config: ServerConfig = AUTH_SERVER, *, tls: bool = False):
    server = ServerConnection(config, tls=tls)
    server.send(server.greeting())
    server.receive_data(b"EHLO c\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    return server


def event_for(server: ServerConnection, line: bytes):
    server.receive_data(line)
    return server.next_event()


def test_plaintext_mechanisms_only_under_tls():
    """RFC 4954 section 4 and 6: PLAIN/LOGIN are not offered before TLS, and
    using one anyway gets 538 5.7.11."""
    server = server_after_ehlo()
    assert server.extensions is not None
    assert server.extensions.auth_mechanisms == ("SCRAM-SHA-256",)
    event = event_for(server, b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
    assert isinstance(event, CommandError)
    assert (event.reply.code, event.reply.enhanced) == (538, "5.7.11")
    secure = server_after_ehlo(tls=True)
    assert secure.extensions is not None
    assert secure.extensions.auth_mechanisms == ("SCRAM-SHA-256", "PLAIN", "LOGIN")
    event = event_for(secure, b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
    assert event == Auth("PLAIN", b"\0alice\0secret")


@pytest.mark.parametrize(
    ("line", "code", "enhanced"),
    [
        (b"AUTH CRAM-MD5\r\n", 504, "5.5.4"),  # not offered
        (b"AUTH SCRAM-SHA-256 !!notbase64\r\n", 501, "5.5.2"),
        (b"AUTH\r\n", 501, "5.5.4"),
        (b"AUTH SCRAM-SHA-256 a b\r\n", 501, "5.5.4"),
    ],
)
def test_bad_auth_commands(line: bytes, code: int, enhanced: str):
    """RFC 4954 section 4 (504 for an unknown mechanism, 501 for bad base64)."""
    event = event_for(server_after_ehlo(), line)
    assert isinstance(event, CommandError)
    assert (event.reply.code, event.reply.enhanced) == (code, enhanced)


def test_empty_initial_response_is_an_equals_sign():
    """RFC 4954 section 4: "=" is an initial response of zero length."""
    server = server_after_ehlo()
    assert event_for(server, b"AUTH SCRAM-SHA-256 =\r\n") == Auth("SCRAM-SHA-256", b"")
    assert event_for(server_after_ehlo(), b"auth scram-sha-256\r\n") == Auth("SCRAM-SHA-256")


def test_auth_not_offered_gets_502_and_in_a_transaction_503():
    """RFC 4954 section 4: AUTH is not permitted during a mail transaction."""
    plain = server_after_ehlo(ServerConfig())
    event = event_for(plain, b"AUTH PLAIN =\r\n")
    assert isinstance(event, CommandError) and event.reply.code == 502
    server = server_after_ehlo()
    event_for(server, b"MAIL FROM:<a@b.c>\r\n")
    server.send(Reply(250, "ok"))
    event = event_for(server, b"AUTH SCRAM-SHA-256\r\n")
    assert isinstance(event, CommandError) and event.reply.code == 503


def test_full_exchange_over_a_pair_and_second_auth_refused():
    """RFC 4954 section 4: 334 continuations, 235 2.7.0 success, then a second
    AUTH gets 503."""
    pair = ConnectionPair(ServerConfig(auth_mechanisms=("LOGIN",)), greet=True)
    pair.hello()
    assert pair.client.extensions is not None
    assert pair.client.extensions.auth_mechanisms == ()  # LOGIN hidden before TLS
    tls = ConnectionPair(ServerConfig(auth_mechanisms=("LOGIN",), auth_requires_tls=False))
    tls.hello()
    answer = tls.command(Auth("LOGIN"), Reply(334, base64.b64encode(b"Username:").decode()))
    assert answer.code == 334
    assert tls.client.state is tls.server.state is State.AUTH_EXCHANGE
    tls.command(AuthResponse(b"alice"), Reply(334, base64.b64encode(b"Password:").decode()))
    final = tls.command(AuthResponse("sécret".encode()), Reply(235, "welcome"))
    assert final.enhanced == "2.7.0"  # added by the engine (RFC 4954 section 6)
    assert tls.client.authenticated and tls.server.authenticated
    assert tls.client.state is State.GREETED
    with pytest.raises(LocalProtocolError, match="already authenticated"):
        tls.client.send(Auth("LOGIN"))
    tls.server.receive_data(b"AUTH LOGIN\r\n")
    event = tls.server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == 503


def exchange_started() -> ServerConnection:
    server = server_after_ehlo()
    assert event_for(server, b"AUTH SCRAM-SHA-256\r\n") == Auth("SCRAM-SHA-256")
    server.send(Reply(334, ""))
    assert server.state is State.AUTH_EXCHANGE
    return server


def test_cancel_must_be_answered_501():
    """RFC 4954 section 4: "*" cancels and the server MUST reply 501."""
    server = exchange_started()
    assert event_for(server, b"*\r\n") == AuthCancel()
    with pytest.raises(LocalProtocolError, match="4yz or 5yz"):
        server.send(Reply(235, "ok"))
    server.send(Reply(501, "cancelled"))
    assert server.state is State.GREETED and not server.authenticated


def test_response_lines_are_not_commands():
    """RFC 4954 section 4: the line after a 334 is a response, even if it
    reads like a command, and bad base64 ends the exchange with 501 5.5.2."""
    server = exchange_started()
    assert event_for(server, b"\r\n") == AuthResponse(b"")
    server.send(Reply(334, "bW9yZQ=="))
    event = event_for(server, b"MAIL FROM:<a@b.c>\r\n")
    assert isinstance(event, CommandError)
    assert (event.reply.code, event.reply.enhanced) == (501, "5.5.2")
    server.send(event.reply)
    assert server.state is State.GREETED


def test_failure_is_535_and_leaves_the_exchange():
    """RFC 4954 section 6: 535 5.7.8 authentication credentials invalid."""
    server = exchange_started()
    assert event_for(server, b"Zm9v\r\n") == AuthResponse(b"foo")
    assert server.send(Reply(535, "bad credentials")) == b"535 5.7.8 bad credentials\r\n"
    assert server.state is State.GREETED and not server.authenticated


def test_auth_lines_may_be_12288_octets():
    """RFC 4954 section 4: AUTH lines up to 12288 octets."""
    server = exchange_started()
    payload = base64.b64encode(b"x" * 9000)
    assert len(payload) < 12286
    assert event_for(server, payload + b"\r\n") == AuthResponse(b"x" * 9000)


def test_client_checks_334_is_base64_and_hides_credentials_in_repr():
    client = ClientConnection()
    client.receive_data(b"220 mx\r\n")
    client.next_event()
    client.send(Ehlo("c"))
    client.receive_data(b"250-mx\r\n250 AUTH SCRAM-SHA-256\r\n")
    client.next_event()
    assert client.send(Auth("SCRAM-SHA-256", b"")) == b"AUTH SCRAM-SHA-256 =\r\n"
    client.receive_data(b"334 not base64!\r\n")
    with pytest.raises(RemoteProtocolError, match="base64"):
        client.next_event()
    assert "secret" not in repr(AuthResponse(b"secret"))


def test_client_sends_responses_only_after_334():
    client = ClientConnection(ClientConfig())
    client.receive_data(b"220 mx\r\n")
    client.next_event()
    with pytest.raises(LocalProtocolError):
        client.send(AuthResponse(b"x"))
    client.send(Ehlo("c"))
    client.receive_data(b"250-mx\r\n250 AUTH PLAIN\r\n")
    client.next_event()
    client.send(Auth("PLAIN"))
    with pytest.raises(LocalProtocolError, match="wait for the reply to AUTH"):
        client.send(AuthResponse(b"x"))
    client.receive_data(b"334 \r\n")
    client.next_event()
    assert client.send(AuthResponse(b"\0u\0p")) == b"AHUAcA==\r\n"
    client.receive_data(b"235 2.7.0 ok\r\n")
    client.next_event()
    assert client.authenticated
    assert client.send(Mail(None)) == b"MAIL FROM:<>\r\n"


def test_server_pauses_during_exchange_until_reply():
    server = server_after_ehlo()
    server.receive_data(b"AUTH SCRAM-SHA-256\r\nbWFu\r\n")
    assert server.next_event() == Auth("SCRAM-SHA-256")
    assert server.next_event() is PAUSED
