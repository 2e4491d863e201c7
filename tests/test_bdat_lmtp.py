"""CHUNKING/BDAT and BINARYMIME (RFC 3030), and LMTP (RFC 2033), both engines."""

from __future__ import annotations

import pytest
from helpers import ConnectionPair, drain
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_core import (
    PAUSED,
    Address,
    Bdat,
    Body,
    ClientConfig,
    ClientConnection,
    CommandError,
    Data,
    Ehlo,
    Lhlo,
    LocalProtocolError,
    Mail,
    MailParams,
    MessageChunk,
    MessageEnd,
    MessageRefused,
    Noop,
    Rcpt,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
    State,
)

OK = Reply(250, "ok")


def server_with_recipient(config: ServerConfig | None = None) -> ServerConnection:
    server = ServerConnection(config)
    server.send(server.greeting())
    server.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    server.next_event()
    server.send(OK)
    server.next_event()
    server.send(OK)
    return server


def test_bdat_chunks_are_raw_and_followed_by_their_command():
    """RFC 3030 section 2: exactly the announced octets, nothing un-stuffed or
    ended by CRLF.CRLF; the reply is owed once the chunk has been read."""
    server = server_with_recipient()
    chunk = b"a\r\n.\r\n..b\n\x00"
    server.receive_data(b"BDAT %d\r\n" % len(chunk) + chunk + b"BDAT 0 LAST\r\nNOOP\r\n")
    assert drain(server) == [MessageChunk(chunk), Bdat(len(chunk))]
    server.send(Reply(250, "chunk ok"))
    assert server.state is State.IN_CHUNKING
    assert drain(server) == [Bdat(0, last=True)]
    server.send(Reply(250, "queued"))
    assert server.state is State.GREETED
    assert server.next_event() == Noop()


@pytest.mark.parametrize(
    ("line", "expected"),
    [(b"DATA\r\n", 503), (b"MAIL FROM:<x@y.z>\r\n", 503), (b"RCPT TO:<x@y.z>\r\n", 503)],
)
def test_no_data_mail_or_rcpt_between_chunks(line: bytes, expected: int):
    """RFC 3030 section 2: DATA after BDAT, and MAIL before BDAT LAST, get 503."""
    server = server_with_recipient()
    server.receive_data(b"BDAT 1\r\nx" + line)
    drain(server)
    server.send(OK)
    event = server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == expected


def test_chunks_behind_a_refused_chunk_are_read_and_discarded():
    """RFC 3030 section 2: after a failed BDAT the pipelined chunks behind it
    are consumed, refused with 503, and the command stream stays in step."""
    server = server_with_recipient()
    server.receive_data(b"BDAT 3\r\nabcBDAT 4 LAST\r\nwxyzRSET\r\n")
    assert drain(server) == [MessageChunk(b"abc"), Bdat(3)]
    server.send(Reply(554, "no"))
    assert server.state is State.CHUNKING_FAILED
    [refused] = drain(server)
    assert isinstance(refused, CommandError) and refused.reply.code == 503
    server.send(refused.reply)
    assert server.next_event() == __import__("smtp_core").Rset()


def test_bdat_without_recipients_discards_its_octets():
    """RFC 3030 section 2 with RFC 5321 3.3: refused, yet its octets are read."""
    server = ServerConnection()
    server.send(server.greeting())
    server.receive_data(b"EHLO c\r\nBDAT 5 LAST\r\nNOOP!NOOP\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    [event] = drain(server)
    assert isinstance(event, CommandError) and event.reply.code == 503
    server.send(event.reply)
    assert server.next_event() == Noop()


def test_line_limit_is_back_after_a_chunk():
    """go-smtp GO-2026-7029: after a chunk, a newline-free flood is bounded."""
    server = server_with_recipient()
    server.receive_data(b"BDAT 2\r\nok")
    drain(server)
    server.send(OK)
    for _ in range(50):
        server.receive_data(b"z" * 65536)
        assert drain(server) == []
        assert len(server._buffer) < 16384
    server.receive_data(b"\r\n")
    [event] = drain(server)
    assert isinstance(event, CommandError) and event.reply.code == 500


def test_unreadable_bdat_size_ends_the_session():
    """RFC 3030: a chunk size that cannot be read leaves no way to find the
    next command, so the connection must close (with a reply to send)."""
    server = server_with_recipient()
    server.receive_data(b"BDAT lots\r\n")
    with pytest.raises(RemoteProtocolError, match="BDAT") as error:
        server.next_event()
    assert error.value.reply is not None and error.value.reply.code == 501


def test_binarymime_needs_bdat():
    """RFC 3030 section 3: BODY=BINARYMIME content only with BDAT."""
    server = ServerConnection(ServerConfig(binarymime=True))
    server.send(server.greeting())
    server.receive_data(
        b"EHLO c\r\nMAIL FROM:<a@b.c> BODY=BINARYMIME\r\nRCPT TO:<d@e.f>\r\nDATA\r\n"
    )
    for reply in (None, OK, OK):
        event = server.next_event()
        server.send(reply or server.ehlo_reply())
    event = server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == 503
    assert isinstance(Body.BINARY_MIME, Body)


def test_chunks_over_the_size_limit_are_refused_after_the_chunk():
    """RFC 1870 with RFC 3030: content over the limit gets 552 5.3.4."""
    server = server_with_recipient(ServerConfig(max_message_size=10))
    server.receive_data(b"BDAT 8\r\n12345678BDAT 8 LAST\r\nabcdefgh")
    assert drain(server) == [MessageChunk(b"12345678"), Bdat(8)]
    server.send(OK)
    [refused] = drain(server)
    assert isinstance(refused, MessageRefused) and refused.reply.code == 552
    with pytest.raises(LocalProtocolError):
        server.send(OK)
    server.send(refused.reply)
    assert server.state is State.GREETED  # LAST ends the transaction anyway


def client_with_recipient() -> ClientConnection:
    client = ClientConnection()
    client.receive_data(b"220 mx\r\n")
    client.next_event()
    client.send(Ehlo("c"))
    client.receive_data(b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
    client.next_event()
    client.send(Mail(None))
    client.send(Rcpt(Address("d", "e.f")))
    client.receive_data(b"250 ok\r\n250 ok\r\n")
    drain(client)
    return client


def test_client_sends_exactly_the_announced_octets():
    """RFC 3030 section 2: the chunk is the BDAT's size, no more, no less."""
    client = client_with_recipient()
    assert client.send(Bdat(4)) == b"BDAT 4\r\n"
    with pytest.raises(LocalProtocolError, match="4 more octets"):
        client.send(MessageChunk(b"12345"))
    with pytest.raises(LocalProtocolError, match="still needs 4"):
        client.send(Noop())
    assert client.send(MessageChunk(b"12")) == b"12"
    assert client.send(MessageChunk(b".\r")) == b".\r"  # raw: no stuffing
    assert client.send(Bdat(0, last=True)) == b"BDAT 0 LAST\r\n"
    client.receive_data(b"250 ok\r\n250 queued\r\n")
    replies = drain(client)
    assert [r.answers for r in replies] == [Bdat(4), Bdat(0, True)]  # type: ignore[attr-defined]
    assert client.state is State.GREETED


def test_client_refuses_bdat_without_chunking_and_data_for_binarymime():
    client = ClientConnection()
    client.receive_data(b"220 mx\r\n")
    client.next_event()
    client.send(Ehlo("c"))
    client.receive_data(b"250-mx\r\n250 BINARYMIME\r\n")
    client.next_event()
    client.send(Mail(None, MailParams(body=Body.BINARY_MIME)))
    client.receive_data(b"250 ok\r\n")
    client.next_event()
    client.send(Rcpt(Address("d", "e.f")))
    client.receive_data(b"250 ok\r\n")
    client.next_event()
    with pytest.raises(LocalProtocolError, match="BDAT"):
        client.send(Data())
    with pytest.raises(LocalProtocolError, match="CHUNKING"):
        client.send(Bdat(1, last=True))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5), st.integers(1, 97))
def test_binary_bodies_arrive_identical_through_bdat(chunks: list[bytes], piece: int):
    """RFC 3030: whatever the octets, BDAT carries them unchanged."""
    pair = ConnectionPair()
    pair.hello()
    pair.command(Mail(None), OK)
    pair.command(Rcpt(Address("d", "e.f")), OK)
    wire = b""
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        wire += pair.client.send(Bdat(len(chunk), last)) + pair.client.send(MessageChunk(chunk))
    received = b""
    for start in range(0, len(wire), piece):
        pair.server.receive_data(wire[start : start + piece])
        while (event := pair.server.next_event()) is not PAUSED:
            if isinstance(event, MessageChunk):
                received += event.data
            elif isinstance(event, Bdat):
                pair.client.receive_data(
                    pair.server.send(OK if not event.last else Reply(250, "q"))
                )
            else:
                break
    assert received == b"".join(chunks)
    replies = drain(pair.client)
    assert len(replies) == len(chunks)
    assert pair.client.state is pair.server.state is State.GREETED


LMTP = ServerConfig(lmtp=True)


def test_lmtp_uses_lhlo_only():
    """RFC 2033 section 4.1: LHLO; HELO and EHLO are not LMTP."""
    server = ServerConnection(LMTP)
    assert server.send(server.greeting()) == b"220 localhost LMTP\r\n"
    server.receive_data(b"EHLO c\r\n")
    event = server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == 500
    server.send(event.reply)
    server.receive_data(b"LHLO c\r\n")
    assert server.next_event() == Lhlo("c")
    server.send(server.ehlo_reply())
    assert server.state is State.GREETED
    smtp = ServerConnection()
    smtp.send(smtp.greeting())
    smtp.receive_data(b"LHLO c\r\n")
    event = smtp.next_event()
    assert isinstance(event, CommandError) and event.reply.code == 500


def test_lmtp_one_reply_per_accepted_recipient_in_order():
    """RFC 2033 section 4.2: after the content, one reply for each RCPT that
    was accepted, in order, mixed outcomes allowed; the client pairs each
    with its recipient."""
    pair = ConnectionPair(LMTP, ClientConfig(lmtp=True))
    pair.send(Lhlo("c"))
    pair.reply(pair.server.ehlo_reply())
    ann, bob, eve = (Rcpt(Address(n, "example.org")) for n in ("ann", "bob", "eve"))
    pair.command(Mail(None), OK)
    pair.command(ann, OK)
    pair.command(eve, Reply(550, "no such user"))
    pair.command(bob, OK)
    pair.command(Data(), Reply(354, "go"))
    assert pair.send(MessageChunk(b"hi\r\n"), MessageEnd()) == [
        MessageChunk(b"hi\r\n"),
        MessageEnd(),
    ]
    assert pair.server.recipients == (ann, bob)
    first = pair.reply(Reply(250, "delivered to ann"))
    assert pair.server.next_event() is PAUSED  # one more reply is owed
    assert pair.server.state is State.IN_MESSAGE
    second = pair.reply(Reply(452, "bob is over quota"))
    assert [r.answers for r in first + second] == [ann, bob]  # type: ignore[attr-defined]
    assert pair.server.state is pair.client.state is State.GREETED
    assert pair.client.pending == ()
