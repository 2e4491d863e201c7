"""A ClientConnection and a ServerConnection back to back must agree.

RFC 2920 (pipelining): replies come in the order of the commands and the
client pairs each with its command; RFC 5321 3.3 and 4.1.4: both sides move
on the reply, so a refused MAIL or RCPT moves neither. RFC 5321 4.5.2
(transparency) and 2.3.8 (CRLF): a body arrives as it was sent, CRLF-clean.
"""

from __future__ import annotations

from helpers import ConnectionPair, drain
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_core import (
    Address,
    BareLinePolicy,
    Command,
    CommandError,
    Data,
    Event,
    Mail,
    MessageChunk,
    MessageEnd,
    Rcpt,
    Reply,
    Rset,
    ServerConfig,
    State,
)
from smtp_core._writers import write_command

SENDER = Mail(Address("sender", "example.com"))
RECIPIENTS = [Rcpt(Address(f"rcpt{index}", "example.net")) for index in range(8)]


def assert_agree(pair: ConnectionPair) -> None:
    """Both engines are in the same place of the conversation."""
    client, server = pair.client, pair.server
    assert client.state is server.state
    assert client.transaction == server.transaction
    assert client.recipients == server.recipients
    assert client.extensions == server.extensions


def expected_server_event(
    command: Command, mail_accepted: bool, recipients: int
) -> tuple[type, int | None]:
    """What the server hands out for a command of the group: the command
    itself, or a CommandError with the code RFC 5321 4.3.2 / 3.3 gives it."""
    if isinstance(command, Mail):
        return Mail, None
    if isinstance(command, Rcpt):
        return (Rcpt, None) if mail_accepted else (CommandError, 503)
    if not mail_accepted:
        return CommandError, 503
    if recipients == 0:
        return CommandError, 554
    return Data, None


transactions = st.tuples(
    st.sampled_from([250, 250, 250, 451, 550]),  # MAIL
    st.lists(st.sampled_from([250, 251, 450, 452, 550, 553]), min_size=1, max_size=6),  # RCPTs
    st.sampled_from([354, 354, 451, 554]),  # DATA, when the server hands it out
    st.sampled_from([250, 250, 452, 554]),  # the end of the message
    st.binary(max_size=200),  # content
    st.booleans(),  # start the group with RSET
)


@settings(max_examples=300, deadline=None)
@given(transactions=st.lists(transactions, min_size=1, max_size=3))
def test_pipelined_transactions_keep_both_engines_in_step(transactions: list[tuple]):
    """RFC 2920 section 3: MAIL, RCPTs and DATA sent as one group; the server
    accepts or refuses each; RFC 5321 3.3: DATA with no accepted recipient is
    refused (554), RCPT without MAIL too (503). After every reply the states
    agree and each client Reply answers the right command."""
    pair = ConnectionPair(ServerConfig(bare_line_ending=BareLinePolicy.ALLOW))
    pair.hello()
    assert_agree(pair)
    for mail_code, rcpt_codes, data_code, end_code, content, rset_first in transactions:
        group: list[Command] = [SENDER, *RECIPIENTS[: len(rcpt_codes)], Data()]
        if rset_first or pair.client.state is not State.GREETED:
            group.insert(0, Rset())
        server_events = pair.send(*group)
        assert pair.client.pending == tuple(group)
        mail_accepted = False
        recipients = 0
        codes = iter(rcpt_codes)
        for position, command in enumerate(group):
            assert len(server_events) == 1, server_events
            event = server_events[0]
            if isinstance(command, Rset):
                assert event == command
                reply = Reply(250, "reset")
            else:
                kind, refusal_code = expected_server_event(command, mail_accepted, recipients)
                assert type(event) is kind, (command, event)
                if isinstance(event, CommandError):
                    assert event.line == write_command(command)[:-2]
                    assert event.reply.code == refusal_code
                    reply = event.reply
                    if isinstance(command, Rcpt):
                        next(codes)
                else:
                    assert event == command
                    if isinstance(command, Mail):
                        reply = Reply(mail_code, "sender")
                    elif isinstance(command, Rcpt):
                        reply = Reply(next(codes), "recipient")
                    else:
                        reply = Reply(data_code, "data")
            answers = pair.reply(reply)
            assert len(answers) == 1
            answer = answers[0]
            assert isinstance(answer, Reply)
            assert answer.answers is command
            assert pair.client.pending == tuple(group[position + 1 :])
            if isinstance(command, Mail):
                mail_accepted = reply.code < 300
            elif isinstance(command, Rcpt) and reply.code < 300:
                recipients += 1
            assert_agree(pair)
            assert len(pair.server.recipients) == recipients
            assert (pair.server.transaction is not None) == mail_accepted
            server_events = drain(pair.server)
        assert server_events == []
        if pair.server.state is State.IN_MESSAGE:
            received = pair.send(MessageChunk(content), MessageEnd())
            assert received[-1] == MessageEnd()
            answers = pair.reply(Reply(end_code, "done"))
            assert [answer.answers for answer in answers] == [MessageEnd()]  # type: ignore[union-attr]
            assert pair.client.state is pair.server.state is State.GREETED
        assert_agree(pair)


def normalized(body: bytes) -> bytes:
    """The content a server must receive for ``body``: every bare CR and LF
    made CRLF, and a final CRLF added when the last line lacks one (RFC 5321
    2.3.8 and 4.1.1.4)."""
    body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


line_pieces = st.sampled_from(
    [b"", b".", b"..", b"...", b".x", b"x.", b". ", b"text", b"\r", b"\n", b".\r", b"\r."]
)
separators = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""])
structured_bodies = st.lists(st.tuples(line_pieces, separators), max_size=20).map(
    lambda parts: b"".join(piece + separator for piece, separator in parts)
)
bodies = st.one_of(st.binary(max_size=2000), structured_bodies)
chunk_sizes = st.lists(st.integers(0, 64), min_size=1, max_size=10)


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut at the given sizes (cycled; a 0 gives an empty piece)."""
    if not any(sizes):
        sizes = [*sizes, 1]
    out = []
    position = 0
    index = 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        out.append(data[position : position + size])
        position += size
        index += 1
    return out


def in_message(policy: BareLinePolicy) -> ConnectionPair:
    """A pair whose client may send content: DATA was answered 354."""
    config = ServerConfig(bare_line_ending=policy, max_text_line=None, max_message_size=None)
    pair = ConnectionPair(config)
    pair.hello()
    pair.command(SENDER, Reply(250, "ok"))
    pair.command(RECIPIENTS[0], Reply(250, "ok"))
    pair.command(Data(), Reply(354, "go ahead"))
    assert pair.client.state is pair.server.state is State.IN_MESSAGE
    return pair


@settings(max_examples=400, deadline=None)
@given(
    body=bodies,
    client_sizes=chunk_sizes,
    wire_sizes=chunk_sizes.map(lambda sizes: [size or 1 for size in sizes]),
    policy=st.sampled_from(BareLinePolicy),
)
def test_body_arrives_byte_identical_after_crlf_normalisation(
    body: bytes, client_sizes: list[int], wire_sizes: list[int], policy: BareLinePolicy
):
    """RFC 5321 4.5.2: the client dot-stuffs and the server un-stuffs, so
    lines starting with "." and lines of only "." arrive intact; RFC 5321
    2.3.8: the client sends CRLF only, so the server's bare-LF policy (even
    REJECT) never fires. Any chunking on either side gives the same content."""
    pair = in_message(policy)
    events: list[Event] = []
    wire = bytearray()
    for piece in [*cut(body, client_sizes), b""]:
        data = pair.client.send(MessageChunk(piece))
        wire += data
        for part in cut(data, wire_sizes):
            pair.server.receive_data(part)
            events += drain(pair.server)
    end = pair.client.send(MessageEnd())
    wire += end
    for part in cut(end, wire_sizes):
        pair.server.receive_data(part)
        events += drain(pair.server)
    assert events[-1] == MessageEnd(), events[-3:]
    chunks = events[:-1]
    assert all(isinstance(event, MessageChunk) for event in chunks)
    content = b"".join(event.data for event in chunks)  # type: ignore[union-attr]
    assert content == normalized(body)
    # On the wire: CRLF only, stuffed, and exactly one end of data, at the end.
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    assert wire.count(b"\n") == wire.count(b"\r\n") == wire.count(b"\r")
    assert (b"\r\n" + wire).find(b"\r\n.\r\n") == len(wire) - 3
    answers = pair.reply(Reply(250, "queued"))
    assert [answer.answers for answer in answers] == [MessageEnd()]  # type: ignore[union-attr]
    assert pair.client.state is pair.server.state is State.GREETED


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(st.sampled_from([b".", b"..", b".\r\n.", b"x"]), min_size=1, max_size=12),
    final_crlf=st.booleans(),
)
def test_lines_of_dots_survive_default_configs(lines: list[bytes], final_crlf: bool):
    """RFC 5321 4.5.2, with both engines on their defaults (the server's
    REJECT policy and 1000-octet line limit): bodies of dot lines arrive
    intact and are never mistaken for the end of data."""
    body = b"\r\n".join(lines) + (b"\r\n" if final_crlf else b"")
    pair = ConnectionPair()
    pair.hello()
    pair.command(SENDER, Reply(250, "ok"))
    pair.command(RECIPIENTS[0], Reply(250, "ok"))
    pair.command(Data(), Reply(354, "go ahead"))
    events = pair.send(MessageChunk(body), MessageEnd())
    assert events[-1] == MessageEnd()
    content = b"".join(event.data for event in events[:-1])  # type: ignore[union-attr]
    assert content == normalized(body)
