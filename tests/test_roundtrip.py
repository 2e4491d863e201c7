"""Round trips: an event written by one engine is parsed back equal by the other.

Commands go from a ClientConnection to a ServerConnection (RFC 5321 4.1.1),
replies from a ServerConnection (or ``write_reply``) to a ClientConnection
(RFC 5321 4.2, RFC 2034, RFC 3463).
"""

from __future__ import annotations

import dataclasses

import pytest
from helpers import ConnectionPair, drain
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import addresses, mail_params, rcpt_params

from smtp_core import (
    Address,
    Command,
    CommandError,
    ConnectionClosed,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    LocalProtocolError,
    Mail,
    MailParams,
    MessageChunk,
    MessageEnd,
    Noop,
    Quit,
    Rcpt,
    RcptParams,
    Reply,
    Rset,
    ServerConfig,
    State,
    Vrfy,
)
from smtp_core._writers import write_command, write_reply

# RFC 5321 4.5.3.1.4 and the extensions in force in these tests: SIZE (+26),
# SMTPUTF8 (+10) and DSN (+100 on MAIL, +500 on RCPT).
MAIL_LINE_LIMIT = 512 + 26 + 10 + 100
RCPT_LINE_LIMIT = 512 + 10 + 500

domains = addresses(allow_utf8=True).map(lambda address: address.domain)
postmasters = st.sampled_from(["Postmaster", "postmaster", "POSTMASTER"]).map(
    lambda local_part: Address(local_part, None)
)

# Text a command argument may carry: no C0 control, DEL or surrogate.
argument_characters = st.characters(
    exclude_categories=["Cs"], exclude_characters="".join(map(chr, [*range(32), 127]))
)
arguments = st.text(argument_characters, max_size=40)
nonblank_arguments = arguments.filter(lambda text: text.strip(" \t") != "")

# RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39.
reply_codes = st.integers(200, 559).filter(lambda code: (code // 10) % 10 <= 5)
reply_line_text = st.text(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0xA0, exclude_categories=["Cs"]),
    ),
    max_size=60,
)
reply_lines = st.lists(reply_line_text, min_size=1, max_size=5)


@st.composite
def replies(draw: st.DrawFn, codes: st.SearchStrategy[int] = reply_codes) -> Reply:
    """A Reply with 1..5 lines, with or without an RFC 3463 enhanced code."""
    code = draw(codes)
    lines = draw(reply_lines)
    enhanced = None
    if code // 100 != 3 and draw(st.booleans()):
        subject = draw(st.integers(0, 999))
        detail = draw(st.integers(0, 999))
        enhanced = f"{code // 100}.{subject}.{detail}"
    return Reply(code, lines, enhanced)


def server_config(**changes: object) -> ServerConfig:
    """A server that accepts every parameter the strategies draw.

    DSN on (RET, ENVID, NOTIFY, ORCPT), no fixed SIZE maximum, BINARYMIME so
    that BODY=BINARYMIME is acceptable, AUTH (for AUTH=), and the relay
    extensions REQUIRETLS, MT-PRIORITY, DELIVERBY and RRVS.
    """
    options: dict[str, object] = {
        "dsn": True,
        "max_message_size": None,
        "binarymime": True,
        "auth_mechanisms": ("SCRAM-SHA-256",),
        "extra_extensions": ("REQUIRETLS", "MT-PRIORITY", "DELIVERBY", "RRVS"),
    }
    options.update(changes)
    return ServerConfig(**options)  # type: ignore[arg-type]


def only_reply(pair: ConnectionPair, events: list) -> Reply:
    """The one Reply in ``events``; a ConnectionClosed follows it exactly when
    the reply closed the connection (221 to QUIT, 421: RFC 5321 3.8)."""
    assert isinstance(events[0], Reply), events
    closed = pair.client.state is State.CLOSED
    assert events[1:] == ([ConnectionClosed()] if closed else []), events
    return events[0]


def assert_round_trip(pair: ConnectionPair, command: Command) -> None:
    """``command`` sent by the client arrives equal at the server, and the
    wire carries exactly the command line."""
    before = len(pair.wire_to_server)
    received = pair.send(command)
    assert received == [command]
    assert bytes(pair.wire_to_server[before:]) == write_command(command)


@settings(max_examples=100, deadline=None)
@given(
    domain=domains,
    hello=st.sampled_from([Ehlo, Helo]),
    strict=st.booleans(),
    greeted=st.booleans(),
)
def test_ehlo_and_helo_round_trip(domain: str, hello: type, strict: bool, greeted: bool):
    """RFC 5321 4.1.1.1: ehlo = "EHLO" SP ( Domain / address-literal ) CRLF."""
    pair = ConnectionPair(ServerConfig(strict=strict))
    if greeted:
        pair.hello()
    command = hello(domain)
    assert_round_trip(pair, command)
    answers = pair.reply(pair.server.ehlo_reply())
    assert [reply.answers for reply in answers] == [command]  # type: ignore[union-attr]
    assert pair.client.state is pair.server.state is State.GREETED


@settings(max_examples=200, deadline=None)
@given(
    path=st.none() | addresses(allow_utf8=True),
    params=mail_params(relay_extensions=True),
    strict=st.booleans(),
)
def test_mail_round_trips(path: Address | None, params: MailParams, strict: bool):
    """RFC 5321 4.1.1.2 with the parameters of RFC 1870, 6152, 3030, 6531 and
    3461: "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF."""
    if path is not None and not path.is_ascii:
        # RFC 6531 3.4: a UTF-8 address needs the SMTPUTF8 parameter.
        params = dataclasses.replace(params, smtputf8=True)
    command = Mail(path, params)
    assume(len(write_command(command)) <= MAIL_LINE_LIMIT)
    config = server_config(
        strict=strict, extra_mail_parameters=frozenset(k for k, _ in params.extra)
    )
    pair = ConnectionPair(config)
    pair.hello()
    assert_round_trip(pair, command)
    pair.reply(Reply(250, "sender ok"))
    assert pair.server.transaction == pair.client.transaction == command


@settings(max_examples=200, deadline=None)
@given(
    path=addresses(allow_utf8=True) | postmasters,
    params=rcpt_params(relay_extensions=True),
    strict=st.booleans(),
)
def test_rcpt_round_trips(path: Address, params: RcptParams, strict: bool):
    """RFC 5321 4.1.1.3 with the RFC 3461 parameters: "RCPT TO:" ( "<Postmaster@"
    Domain ">" / "<Postmaster>" / Forward-path ) [SP Rcpt-parameters] CRLF."""
    command = Rcpt(path, params)
    assume(len(write_command(command)) <= RCPT_LINE_LIMIT)
    config = server_config(
        strict=strict, extra_rcpt_parameters=frozenset(k for k, _ in params.extra)
    )
    pair = ConnectionPair(config)
    pair.hello()
    sender = Mail(Address("sender", "example.com"), MailParams(smtputf8=not path.is_ascii))
    pair.command(sender, Reply(250, "sender ok"))
    assert_round_trip(pair, command)
    pair.reply(Reply(250, "recipient ok"))
    assert pair.server.recipients == pair.client.recipients
    assert len(pair.server.recipients) == 1


@settings(max_examples=120, deadline=None)
@given(
    command=st.one_of(
        st.builds(Vrfy, nonblank_arguments),
        st.builds(Expn, nonblank_arguments),
        st.builds(Help, arguments),
        st.builds(Noop, arguments),
    ),
    strict=st.booleans(),
    greeted=st.booleans(),
)
def test_text_commands_round_trip(command: Command, strict: bool, greeted: bool):
    """RFC 5321 4.1.1.6 to 4.1.1.9: VRFY and EXPN take a string, HELP and NOOP
    an optional one; the text arrives as it was sent, spaces included."""
    pair = ConnectionPair(ServerConfig(strict=strict))
    if greeted:
        pair.hello()
    assert_round_trip(pair, command)
    answer = pair.reply(Reply(250, "ok"))
    assert [reply.answers for reply in answer] == [command]  # type: ignore[union-attr]


# The commands of a conversation, weighted towards the ones that open and
# fill a transaction so that every state is reached often.
ascii_addresses = addresses()
command_strategies: dict[str, st.SearchStrategy[Command]] = {
    "mail": st.builds(Mail, st.none() | ascii_addresses),
    "rcpt": st.builds(Rcpt, ascii_addresses | postmasters),
    "data": st.just(Data()),
    "ehlo": st.builds(Ehlo, domains),
    "helo": st.builds(Helo, domains),
    "rset": st.just(Rset()),
    "noop": st.builds(Noop, arguments),
    "help": st.builds(Help, arguments),
    "vrfy": st.builds(Vrfy, nonblank_arguments),
    "expn": st.builds(Expn, nonblank_arguments),
    "quit": st.just(Quit()),
}
command_weights = ["mail"] * 3 + ["rcpt"] * 5 + ["data"] * 3 + list(command_strategies)
any_commands = st.sampled_from(command_weights).flatmap(command_strategies.__getitem__)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(any_commands, st.sampled_from([250] * 6 + [451, 550]), st.binary(max_size=20)),
        min_size=3,
        max_size=16,
    ),
    hello_first=st.sampled_from([True, True, True, False]),
)
def test_every_command_round_trips_in_every_state_it_may_be_sent(
    steps: list[tuple[Command, int, bytes]], hello_first: bool
):
    """RFC 5321 4.1.1 and 4.1.4: in any state, a command the client agrees to
    send arrives equal at the server, and one it refuses to send is one the
    server would refuse too (the role-blind table, RFC 5321 4.3.2)."""
    pair = ConnectionPair(server_config())
    if hello_first:
        pair.hello()
    for command, code, body in steps:
        try:
            data = pair.client.send(command)
        except LocalProtocolError:
            # The same line sent anyway gets a CommandError from the server,
            # whose reply the client never sees (it never sent the line).
            pair.server.receive_data(write_command(command))
            refused = drain(pair.server)
            assert len(refused) == 1 and isinstance(refused[0], CommandError), refused
            assert refused[0].reply.code >= 400
            pair.server.send(refused[0].reply)
            assert pair.client.state is pair.server.state
            continue
        pair.wire_to_server += data
        pair.server.receive_data(data)
        assert drain(pair.server) == [command]
        if isinstance(command, (Ehlo, Helo)):
            reply = pair.server.ehlo_reply() if code == 250 else Reply(code, "no")
        elif isinstance(command, Quit):
            reply = Reply(221, "bye")
        elif isinstance(command, Data):
            reply = Reply(354 if code == 250 else code, "go on")
        else:
            reply = Reply(code, "done")
        answer = only_reply(pair, pair.reply(reply))
        assert answer.answers == command
        assert pair.client.state is pair.server.state
        if pair.server.state is State.IN_MESSAGE:
            assert pair.send(MessageChunk(body), MessageEnd())[-1] == MessageEnd()
            pair.reply(Reply(250, "queued"))
            assert pair.client.state is pair.server.state is State.GREETED
        if pair.server.state is State.CLOSED:
            break


def client_awaiting(
    code: int, enhanced_status_codes: bool = True
) -> tuple[ConnectionPair, Command]:
    """A pair whose client awaits a reply that ``code`` may answer: DATA for
    3yz (RFC 5321 4.3.2), NOOP otherwise."""
    pair = ConnectionPair(ServerConfig(enhanced_status_codes=enhanced_status_codes))
    pair.hello()
    command: Command
    if code // 100 == 3:
        pair.command(Mail(Address("a", "example.com")), Reply(250, "ok"))
        pair.command(Rcpt(Address("b", "example.com")), Reply(250, "ok"))
        command = Data()
    else:
        command = Noop()
    assert pair.send(command) == [command]
    return pair, command


@settings(max_examples=200, deadline=None)
@given(reply=replies())
def test_written_reply_is_parsed_back_equal(reply: Reply):
    """RFC 5321 4.2 and 4.2.1: a reply of one or more lines, each with the same
    code, "-" on all but the last; RFC 2034 section 4: the enhanced code
    starts the text of every line."""
    pair, command = client_awaiting(reply.code)
    pair.client.receive_data(write_reply(reply))
    received = only_reply(pair, drain(pair.client))
    assert received == reply
    assert (received.code, received.lines, received.enhanced) == (
        reply.code,
        reply.lines,
        reply.enhanced,
    )
    assert received.answers == command


@settings(max_examples=200, deadline=None)
@given(reply=replies(), enhanced_status_codes=st.booleans())
def test_reply_sent_by_server_is_received_equal_by_client(
    reply: Reply, enhanced_status_codes: bool
):
    """RFC 5321 4.2; RFC 2034 section 3: once ENHANCEDSTATUSCODES is in force
    the server adds a code to a reply without one, except to 3yz replies:
    the one RFC 4954 section 6 names for the AUTH/TLS codes, X.0.0 (RFC 3463)
    otherwise."""
    pair, command = client_awaiting(reply.code, enhanced_status_codes)
    expected = reply
    named = {454: "4.7.0", 530: "5.7.0", 534: "5.7.9", 535: "5.7.8", 538: "5.7.11"}
    if enhanced_status_codes and reply.enhanced is None and reply.code // 100 != 3:
        default = named.get(reply.code, f"{reply.code // 100}.0.0")
        expected = Reply(reply.code, reply.lines, default)
    received = only_reply(pair, pair.reply(reply))
    assert received == expected
    assert received.enhanced == expected.enhanced
    assert received.answers == command
    assert pair.client.state is pair.server.state


@settings(max_examples=120, deadline=None)
@given(reply=replies(reply_codes.filter(lambda code: code // 100 != 3)))
def test_greeting_round_trips_unchanged(reply: Reply):
    """RFC 5321 4.2 and 3.1: the greeting (220, or 554/4yz refusing service)
    reaches the client as sent; RFC 2034 section 3 exempts it from the
    enhanced code."""
    pair = ConnectionPair(greet=False)
    received = only_reply(pair, pair.reply(reply))
    assert received == reply
    assert received.enhanced == reply.enhanced
    assert received.answers is None
    expected_state = {2: State.READY, 4: State.REFUSED, 5: State.REFUSED}[reply.code // 100]
    if reply.code == 421:
        expected_state = State.CLOSED
    assert pair.client.state is pair.server.state is expected_state


def test_code_only_reply_lines_round_trip():
    """RFC 5321 4.2: "250" CRLF alone is a complete reply; "250-" CRLF
    continues one."""
    reply = Reply(250, ["", "", ""])
    assert write_reply(reply) == b"250-\r\n250-\r\n250\r\n"
    pair, _ = client_awaiting(250)
    pair.client.receive_data(write_reply(reply))
    assert drain(pair.client) == [reply]


# Engine faults found while writing these tests: an event that can be built
# but not written must be refused with LocalProtocolError (DESIGN.md: "send
# raises LocalProtocolError if that event is not allowed now").


@pytest.mark.parametrize(
    "build",
    [
        lambda: Vrfy("caf\udce9"),
        lambda: Noop("\ud800"),
        lambda: Help("x\udfff"),
        lambda: Ehlo("host\ud800.example"),
    ],
    ids=["vrfy", "noop", "help", "ehlo"],
)
def test_command_with_a_lone_surrogate_is_refused_locally(build):
    """RFC 5321 2.3.1 / RFC 6531 3.3: a command line is octets (UTF-8 at
    most); text that cannot be encoded must give LocalProtocolError, when the
    event is built or when it is sent, and leave the client unchanged."""
    pair = ConnectionPair()
    pair.hello()
    try:
        command = build()
    except LocalProtocolError:
        return
    with pytest.raises(LocalProtocolError):
        pair.client.send(command)
    assert pair.client.pending == ()


def test_reply_with_a_lone_surrogate_is_refused_locally():
    """RFC 5321 4.2 / RFC 6531 3.7.4.2: reply text must be encodable; a
    server asked to send text it cannot write raises LocalProtocolError."""
    try:
        reply = Reply(250, "caf\ud800")
    except LocalProtocolError:
        return
    pair = ConnectionPair(greet=False)
    with pytest.raises(LocalProtocolError):
        pair.server.send(reply)
