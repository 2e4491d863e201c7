"""Arbitrary bytes into either engine raise only the documented errors.

DESIGN.md: bad input always gets a clear error (a reply for a peer, a
ProtocolError for a caller), never a traceback, a hang or unbounded memory.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_core import (
    NEED_DATA,
    PAUSED,
    ClientConnection,
    CommandError,
    ConnectionClosed,
    Data,
    Ehlo,
    Helo,
    Mail,
    MessageEnd,
    MessageRefused,
    Quit,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
)

LINES = st.sampled_from(
    [
        b"EHLO x\r\n",
        b"HELO x\r\n",
        b"MAIL FROM:<a@b.c>\r\n",
        b"RCPT TO:<d@e.f>\r\n",
        b"DATA\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b".\r\n",
        b"\r\n.\r\n",
        b"x\n",
        b"\x00\xff\r\n",
        b"MAIL FROM:<\xc3\xa4@b.c> SMTPUTF8\r\n",
        b"A" * 700,
        b"\r",
        b"\n",
    ]
)
INPUT = st.lists(st.binary(max_size=64) | LINES, max_size=40)


def answer(server: ServerConnection, event: object) -> None:
    """The reply policy of a plain application."""
    if isinstance(event, (CommandError, MessageRefused)):
        server.send(event.reply)
    elif isinstance(event, (Ehlo, Helo)):
        server.send(server.ehlo_reply())
    elif isinstance(event, Data):
        server.send(Reply(354, "go"))
    elif isinstance(event, Quit):
        server.send(Reply(221, "bye"))
    elif isinstance(event, (Mail, MessageEnd)) or type(event).__name__ in (
        "Rcpt",
        "Rset",
        "Noop",
        "Vrfy",
        "Expn",
        "Help",
    ):
        server.send(Reply(250, "ok"))


@settings(max_examples=300, deadline=None)
@given(INPUT, st.booleans())
def test_server_answers_anything_without_raising(pieces: list[bytes], strict: bool):
    server = ServerConnection(ServerConfig(strict=strict, max_message_size=2000))
    server.send(server.greeting())
    try:
        feed_server(server, pieces)
    except RemoteProtocolError as error:
        # Documented: a BDAT whose size cannot be read ends the session
        # (RFC 3030: the stream cannot be resynchronised), with a reply.
        assert error.reply is not None and "BDAT" in str(error)


def feed_server(server: ServerConnection, pieces: list[bytes]) -> None:
    for piece in [*pieces, b""]:
        server.receive_data(piece)
        for _ in range(10_000):  # bounded: every event consumes input or ends
            event = server.next_event()
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                break
            assert event is not PAUSED
            answer(server, event)
        else:
            raise AssertionError("the server never asked for more data")
        assert len(server._buffer) <= 2048
        if isinstance(event, ConnectionClosed):
            break


@settings(max_examples=300, deadline=None)
@given(INPUT)
def test_client_raises_only_remote_protocol_error(pieces: list[bytes]):
    client = ClientConnection()
    try:
        for piece in [*pieces, b""]:
            client.receive_data(piece)
            for _ in range(10_000):
                event = client.next_event()
                if event is NEED_DATA or isinstance(event, ConnectionClosed):
                    break
                assert isinstance(event, Reply)
            if isinstance(event, ConnectionClosed):
                break
    except RemoteProtocolError as error:
        assert str(error)
