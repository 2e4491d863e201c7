"""XCLIENT and XFORWARD (Postfix XCLIENT_README, XFORWARD_README)."""

from __future__ import annotations

import pytest
from helpers import ConnectionPair

from smtp_core import (
    CommandError,
    LocalProtocolError,
    Mail,
    Reply,
    ServerConfig,
    ServerConnection,
    State,
    Xclient,
    Xforward,
)

FRONT_END = ServerConfig(xclient=True, xforward=True)


def server_after_ehlo(config: ServerConfig = FRONT_END) -> ServerConnection:
    server = ServerConnection(config)
    server.send(server.greeting())
    server.receive_data(b"EHLO proxy\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    return server


def test_off_by_default():
    """Only trusted front ends may use them: not offered unless configured."""
    server = server_after_ehlo(ServerConfig())
    assert server.extensions is not None and "XCLIENT" not in server.extensions
    server.receive_data(b"XCLIENT ADDR=192.0.2.1\r\n")
    event = server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == 502


def test_xclient_restarts_the_session_with_a_new_greeting():
    """XCLIENT_README: values are xtext; success is a 220 greeting, after
    which the client must send EHLO again."""
    pair = ConnectionPair(FRONT_END)
    pair.hello()
    assert pair.client.extensions is not None
    assert pair.client.extensions.params("XCLIENT") == (
        "NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT"
    )  # fmt: skip
    command = Xclient((("ADDR", "2001:db8::1"), ("NAME", "[UNAVAILABLE]"), ("HELO", "a b+c")))
    assert pair.client.send(command) == (
        b"XCLIENT ADDR=2001:db8::1 NAME=[UNAVAILABLE] HELO=a+20b+2Bc\r\n"
    )
    pair.server.receive_data(b"XCLIENT ADDR=2001:db8::1 NAME=[UNAVAILABLE] HELO=a+20b+2Bc\r\n")
    event = pair.server.next_event()
    assert event == command and isinstance(event, Xclient) and event.get("helo") == "a b+c"
    data = pair.server.send(Reply(220, "mx.example ESMTP"))
    assert data == b"220 mx.example ESMTP\r\n"  # a greeting: no enhanced code
    pair.client.receive_data(data)
    pair.client.next_event()
    assert pair.client.state is pair.server.state is State.READY
    assert pair.server.extensions is None
    with pytest.raises(LocalProtocolError, match="EHLO"):
        pair.client.send(Mail(None))


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"XCLIENT\r\n", 501),
        (b"XCLIENT ADDR\r\n", 501),
        (b"XCLIENT ADDR=1 ADDR=2\r\n", 501),
        (b"XCLIENT COLOR=blue\r\n", 501),  # not an advertised attribute
        (b"XCLIENT NAME=+zz\r\n", 501),  # bad xtext
        (b"XFORWARD LOGIN=x\r\n", 501),  # LOGIN is XCLIENT's, not XFORWARD's
    ],
)
def test_bad_attribute_lists_get_501(line: bytes, code: int):
    server = server_after_ehlo()
    server.receive_data(line)
    event = server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == code


def test_xforward_is_answered_250_and_not_inside_a_transaction():
    """XFORWARD_README: before MAIL; the session goes on."""
    server = server_after_ehlo()
    server.receive_data(b"XFORWARD ADDR=192.0.2.7 PROTO=ESMTP\r\n")
    event = server.next_event()
    assert event == Xforward((("ADDR", "192.0.2.7"), ("PROTO", "ESMTP")))
    assert server.send(Reply(250, "ok")) == b"250 2.0.0 ok\r\n"
    assert server.state is State.GREETED
    server.receive_data(b"MAIL FROM:<a@b.c>\r\n")
    server.next_event()
    server.send(Reply(250, "ok"))
    server.receive_data(b"XFORWARD NAME=x\r\n")
    event = server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == 503


def test_attribute_values_are_validated_when_built():
    with pytest.raises(LocalProtocolError):
        Xclient((("ADDR", "1.2.3.4\r\nMAIL FROM:<x@y>"),))
    with pytest.raises(LocalProtocolError):
        Xclient(())
    with pytest.raises(LocalProtocolError):
        Xforward((("name", "x"),))
