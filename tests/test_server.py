"""ServerConnection: command parsing, sequence, parameters and limits.

Each test names the RFC rule it defends.
"""

from __future__ import annotations

import itertools

import pytest
from helpers import drain
from hypothesis import example, given
from hypothesis import strategies as st

from smtp_core import (
    NEED_DATA,
    PAUSED,
    Address,
    Auth,
    Body,
    CommandError,
    ConnectionClosed,
    Data,
    Ehlo,
    Expn,
    Extensions,
    Helo,
    Help,
    Lhlo,
    LocalProtocolError,
    Mail,
    MailParams,
    MessageChunk,
    MessageEnd,
    MessageRefused,
    Noop,
    Quit,
    Rcpt,
    Reply,
    Rset,
    ServerConfig,
    ServerConnection,
    State,
    Vrfy,
    _connection,
    _state,
)
from smtp_core._state import Session, command_line_limit


def greeted(config: ServerConfig | None = None, *, hello: str | None = "EHLO c.example"):
    server = ServerConnection(config)
    assert server.next_event() is PAUSED  # the greeting is owed first
    server.send(server.greeting())
    if hello is not None:
        server.receive_data(hello.encode() + b"\r\n")
        event = server.next_event()
        assert isinstance(event, (Ehlo, Helo))
        server.send(server.ehlo_reply())
    return server


def one(server: ServerConnection, line: bytes):
    """Feed one line; return the single event it gives."""
    server.receive_data(line)
    event = server.next_event()
    assert event is not NEED_DATA and event is not PAUSED, event
    return event


def refused(server: ServerConnection, line: bytes) -> Reply:
    event = one(server, line)
    assert isinstance(event, CommandError), event
    assert event.line == line.rstrip(b"\r\n")
    server.send(event.reply)
    return event.reply


def accept(server: ServerConnection, line: bytes, reply: Reply | None = None):
    event = one(server, line)
    assert not isinstance(event, CommandError), event
    server.send(reply or Reply(250, "ok"))
    return event


def in_transaction(config: ServerConfig | None = None) -> ServerConnection:
    server = greeted(config)
    accept(server, b"MAIL FROM:<a@example.com>\r\n")
    accept(server, b"RCPT TO:<b@example.com>\r\n")
    return server


def in_message(config: ServerConfig | None = None) -> ServerConnection:
    """A server that has answered DATA with 354."""
    server = in_transaction(config)
    assert one(server, b"DATA\r\n") == Data()
    server.send(Reply(354, "go"))
    return server


def test_greeting_is_owed_before_anything_is_read():
    """RFC 5321 3.1: the server speaks first; the client waits for it."""
    server = ServerConnection()
    server.receive_data(b"EHLO early\r\n")
    assert server.next_event() is PAUSED
    assert server.send(server.greeting()) == b"220 localhost ESMTP\r\n"
    assert server.next_event() == Ehlo("early")


def test_554_greeting_allows_only_quit():
    """RFC 5321 3.1: after a 554 greeting the server answers 503 until QUIT."""
    server = ServerConnection()
    server.send(Reply(554, "no service here"))
    assert server.state is State.REFUSED
    assert refused(server, b"EHLO x\r\n").code == 503
    assert refused(server, b"MAIL FROM:<a@b.c>\r\n").code == 503
    assert one(server, b"QUIT\r\n") == Quit()
    server.send(Reply(221, "bye"))
    assert server.state is State.CLOSED


def test_ehlo_reply_is_built_from_the_config():
    """RFC 5321 4.1.1.1 and 2.2.2: the EHLO reply lists the extensions."""
    server = ServerConnection(ServerConfig(hostname="mx.example", max_message_size=1000, dsn=True))
    server.send(server.greeting())
    server.receive_data(b"EHLO client.example\r\n")
    assert server.next_event() == Ehlo("client.example")
    data = server.send(server.ehlo_reply())
    assert data == (
        b"250-mx.example greets client.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
        b"250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n"
        b"250 CHUNKING\r\n"
    )
    assert server.extensions is not None and server.extensions.max_size == 1000
    assert server.state is State.GREETED


_OFFER_FLAGS = (
    "pipelining",
    "eightbitmime",
    "smtputf8",
    "dsn",
    "enhanced_status_codes",
    "chunking",
    "binarymime",
    "starttls",
    "requiretls",
    "xclient",
    "xforward",
    "auth_requires_tls",
    "lmtp",
)


@given(
    flags=st.fixed_dictionaries({name: st.booleans() for name in _OFFER_FLAGS}),
    mechanisms=st.lists(st.sampled_from(["PLAIN", "LOGIN", "SCRAM-SHA-256"]), unique=True),
    size=st.one_of(st.none(), st.integers(1, 10**9)),
    extra=st.lists(st.sampled_from(["XFOO bar", "X-ONE", "x\x01bad", "AUTH=LOGIN"]), unique=True),
    tls=st.booleans(),
)
def test_ehlo_reply_is_the_checked_reply_of_what_the_config_offers(
    flags: dict[str, bool], mechanisms: list[str], size: int | None, extra: list[str], tls: bool
):
    """RFC 5321 4.1.1.1: the reply to EHLO (LHLO, RFC 2033 section 4.1) is
    the greeting line and a line per extension; STARTTLS is offered only
    before TLS (RFC 3207 section 4.2), REQUIRETLS only under it (RFC 8689
    section 4.1), PLAIN and LOGIN only under it when so configured (RFC 4954
    section 4). Worked out once per config, the reply must still be the one
    built and checked afresh, and what is then in force is what it says."""
    config = ServerConfig(
        hostname="mx.example",
        max_message_size=size,
        auth_mechanisms=tuple(mechanisms),
        extra_extensions=tuple(extra),
        **flags,
    )
    for _ in range(2):  # the first connection works the offer out; the second reuses it
        server = ServerConnection(config, tls=tls)
        server.send(server.greeting())
        server.receive_data(b"LHLO c.example\r\n" if config.lmtp else b"EHLO c.example\r\n")
        assert type(server.next_event()) is (Lhlo if config.lmtp else Ehlo)
        offered = _connection._advertise(config, tls=tls, everything=False)
        assert server.advertised() == offered
        reply = server.ehlo_reply()
        assert reply == Reply(250, ("mx.example greets c.example", *offered.lines()))
        server.send(reply)
        assert server.extensions == Extensions.from_lines(offered.lines())
        keywords = {keyword for keyword, _ in offered.keywords}
        assert ("STARTTLS" in keywords) == (config.starttls and not tls)
        assert ("REQUIRETLS" in keywords) == (config.requiretls and tls)
        if "AUTH=LOGIN" not in extra:  # the application's own line offers what it says
            plaintext = {"PLAIN", "LOGIN"} & set(offered.auth_mechanisms)
            assert not plaintext or tls or not config.auth_requires_tls


def test_every_config_gets_its_own_offer_however_many_come_and_go():
    """RFC 1870 section 4: the SIZE a server advertises is its own limit;
    the offers remembered per config must never lend one config's to
    another, as configs are made and dropped past what is remembered."""
    for size in range(1000, 1000 + 3 * _connection._OFFERS_SIZE):
        hostname = f"mx{size}.example"
        server = ServerConnection(ServerConfig(hostname=hostname, max_message_size=size))
        assert server.greeting() == Reply(220, f"{hostname} ESMTP")
        assert server.advertised().max_size == size
        assert len(_connection._OFFERS) <= _connection._OFFERS_SIZE


@pytest.mark.parametrize("hostname", ["mx\x07.example", "mx\x7f", "mx\x1b[31m", "two words"])
def test_a_hostname_with_controls_is_refused_in_the_config(hostname: str):
    """RFC 5321 4.2: reply text has no control characters, and the hostname
    goes into the greeting and every EHLO reply: refused where it is given."""
    with pytest.raises(LocalProtocolError, match=r"one word .* no control characters"):
        ServerConfig(hostname=hostname)


@given(
    lines=st.lists(
        st.sampled_from(
            ["PIPELINING", "SIZE 10", "size 20", "AUTH PLAIN", "AUTH=LOGIN", "X\x01", ""]
        ),
        max_size=_state._EXTENSIONS_KEPT_LINES + 5,
    ).map(tuple)
)
@example(lines=tuple(f"X-{n}" for n in range(_state._EXTENSIONS_KEPT_LINES + 1)))
def test_extensions_of_an_ehlo_reply_are_what_its_lines_say_each_time(lines: tuple[str, ...]):
    """RFC 5321 4.1.1.1: the extensions in force are read from the reply's
    lines; remembered per reply, they must be the same each time, and a
    long reply is not kept (memory stays small whatever a peer sends)."""
    expected = Extensions.from_lines(lines)
    assert _state._extensions_in(lines) == expected
    assert _state._extensions_in(tuple(lines)) == expected
    kept = _state._EXTENSIONS_IN.get(lines)
    assert kept is None or kept == expected
    if len(lines) > _state._EXTENSIONS_KEPT_LINES:
        assert kept is None
    assert len(_state._EXTENSIONS_IN) <= _state._EXTENSIONS_IN_SIZE


def test_what_is_in_force_comes_from_the_reply_actually_sent():
    """RFC 5321 4.1.1.1: the EHLO reply defines the extensions, so an
    application that sends its own reply gets exactly what it advertised."""
    server = greeted(hello=None)
    one(server, b"EHLO x.example\r\n")
    server.send(Reply(250, ["mx", "PIPELINING"]))
    assert server.extensions is not None and not server.extensions.size
    assert refused(server, b"MAIL FROM:<a@b.c> SIZE=10\r\n").code == 555
    # No ENHANCEDSTATUSCODES advertised: no code is added.
    event = one(server, b"NOOP\r\n")
    assert event == Noop()
    assert server.send(Reply(250, "ok")) == b"250 ok\r\n"


def test_helo_gives_no_extensions():
    """RFC 5321 4.1.1.1: HELO means no service extensions."""
    server = greeted(hello="HELO old.example")
    assert server.extensions is not None and not server.extensions.keywords
    assert refused(server, b"MAIL FROM:<a@b.c> BODY=8BITMIME\r\n").code == 555
    event = one(server, b"NOOP\r\n")
    assert event == Noop()
    assert server.send(Reply(250, "ok")) == b"250 ok\r\n"  # no enhanced code after HELO


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"MAIL FROM:<a@b.c>\r\n", 503),
        (b"RCPT TO:<a@b.c>\r\n", 503),
        (b"DATA\r\n", 503),
    ],
)
def test_mail_rcpt_data_need_hello_first(line: bytes, expected: int):
    """RFC 5321 4.1.4: a session with transactions starts with EHLO/HELO."""
    server = greeted(hello=None)
    reply = refused(server, line)
    assert reply.code == expected and reply.enhanced == "5.5.1"
    assert server.state is State.READY


def test_commands_out_of_sequence_get_503():
    """RFC 5321 4.1.4 and 3.3: RCPT needs MAIL; MAIL cannot nest."""
    server = greeted()
    assert refused(server, b"RCPT TO:<a@b.c>\r\n").code == 503
    assert refused(server, b"DATA\r\n").code == 503
    accept(server, b"MAIL FROM:<a@b.c>\r\n")
    assert refused(server, b"MAIL FROM:<x@b.c>\r\n").code == 503


def test_data_without_accepted_recipients_gets_554():
    """RFC 5321 3.3: DATA with no valid recipient gets 554 (or 503)."""
    server = greeted()
    accept(server, b"MAIL FROM:<a@b.c>\r\n")
    one(server, b"RCPT TO:<x@b.c>\r\n")
    server.send(Reply(550, "no such user"))
    reply = refused(server, b"DATA\r\n")
    assert (reply.code, reply.enhanced) == (554, "5.5.1")


def test_state_moves_on_the_reply_not_the_command():
    """RFC 5321 4.1.4 / RFC 2920 section 3: MAIL answered 550 opens nothing."""
    server = greeted()
    one(server, b"MAIL FROM:<a@b.c>\r\n")
    assert server.state is State.GREETED
    server.send(Reply(550, "go away"))
    assert server.state is State.GREETED
    assert refused(server, b"RCPT TO:<a@b.c>\r\n").code == 503
    accept(server, b"MAIL FROM:<a@b.c>\r\n")
    assert server.state is State.IN_TRANSACTION


def test_second_ehlo_resets_the_transaction():
    """RFC 5321 4.1.4: EHLO in a transaction clears it as RSET would."""
    server = in_transaction()
    accept(server, b"EHLO again.example\r\n")
    assert server.state is State.GREETED and server.transaction is None
    assert refused(server, b"RCPT TO:<a@b.c>\r\n").code == 503


def test_rset_clears_the_transaction():
    """RFC 5321 4.1.1.5."""
    server = in_transaction()
    assert one(server, b"RSET\r\n") == Rset()
    server.send(Reply(250, "reset"))
    assert server.state is State.GREETED and server.recipients == ()


def test_a_reply_must_fit_the_command():
    """RFC 5321 4.3.2: DATA is answered 354 or an error; MAIL never 354."""
    server = greeted()
    one(server, b"MAIL FROM:<a@b.c>\r\n")
    with pytest.raises(LocalProtocolError, match="354"):
        server.send(Reply(354, "go on"))
    server.send(Reply(250, "ok"))
    accept(server, b"RCPT TO:<x@b.c>\r\n")
    one(server, b"DATA\r\n")
    with pytest.raises(LocalProtocolError, match="DATA must be answered 3yz"):
        server.send(Reply(250, "ok"))
    assert server.state is State.HAS_RECIPIENTS  # unchanged by the refused send
    server.send(Reply(354, "go ahead"))
    assert server.state is State.IN_MESSAGE


def test_a_refused_command_cannot_be_accepted():
    server = greeted()
    event = one(server, b"BOGUS\r\n")
    assert isinstance(event, CommandError)
    with pytest.raises(LocalProtocolError, match="4yz or 5yz"):
        server.send(Reply(250, "sure"))
    server.send(Reply(502, "nope"))


def test_reply_without_a_command_is_refused_but_421_is_always_allowed():
    """RFC 5321 3.8: 421 may be sent at any time, and closes."""
    server = greeted()
    with pytest.raises(LocalProtocolError, match="no command awaits"):
        server.send(Reply(250, "unasked"))
    assert server.send(Reply(421, "shutting down")) == b"421 4.0.0 shutting down\r\n"
    assert server.state is State.CLOSED
    assert server.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError, match="closed"):
        server.send(Reply(250, "x"))


def test_quit_must_be_answered_221_and_closes():
    """RFC 5321 4.1.1.10."""
    server = greeted()
    assert one(server, b"quit\r\n") == Quit()
    with pytest.raises(LocalProtocolError, match="221"):
        server.send(Reply(250, "bye"))
    assert server.send(Reply(221, "bye")) == b"221 2.0.0 bye\r\n"
    assert server.state is State.CLOSED


def test_enhanced_codes_are_added_after_ehlo_with_command_specific_subjects():
    """RFC 2034 section 3 and RFC 3463 3.2 (X.1.0 sender, X.1.5 recipient)."""
    server = greeted()
    one(server, b"MAIL FROM:<a@b.c>\r\n")
    assert server.send(Reply(250, "ok")) == b"250 2.1.0 ok\r\n"
    one(server, b"RCPT TO:<x@b.c>\r\n")
    assert server.send(Reply(550, "no")) == b"550 5.0.0 no\r\n"
    one(server, b"RCPT TO:<y@b.c>\r\n")
    assert server.send(Reply(250, "2.1.5 fine")) == b"250 2.1.5 fine\r\n"
    one(server, b"DATA\r\n")
    assert server.send(Reply(354, "go")) == b"354 go\r\n"  # 3yz carries none


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"EHLO [192.0.2.1]\r\n", Ehlo("[192.0.2.1]")),
        (b"helo x.example\r\n", Helo("x.example")),
        (b"NOOP\r\n", Noop()),
        (b"NOOP anything at all\r\n", Noop("anything at all")),
        (b"HELP\r\n", Help()),
        (b"HELP MAIL\r\n", Help("MAIL")),
        (b"VRFY postmaster\r\n", Vrfy("postmaster")),
        (b"EXPN staff\r\n", Expn("staff")),
        (b"Rset\r\n", Rset()),
        (b"QUIT\r\n", Quit()),
    ],
)
def test_commands_parse_into_typed_events(line: bytes, event: object):
    """RFC 5321 4.1.1: verbs are case-insensitive; each command has its event."""
    server = greeted()
    assert one(server, line) == event


def test_mail_and_rcpt_parse_addresses_and_parameters():
    """RFC 5321 4.1.2, RFC 1870, RFC 6152."""
    server = greeted()
    event = one(server, b'MAIL FROM:<"john doe"@example.com> SIZE=1200 BODY=8bitmime\r\n')
    assert event == Mail(
        Address("john doe", "example.com"), MailParams(size=1200, body=Body.EIGHT_BIT_MIME)
    )
    server.send(Reply(250, "ok"))
    assert one(server, b"RCPT TO:<Postmaster>\r\n") == Rcpt(Address("Postmaster", None))


def test_null_reverse_path_is_none():
    """RFC 5321 4.5.5: MAIL FROM:<> for notifications."""
    server = greeted()
    assert one(server, b"MAIL FROM:<>\r\n") == Mail(None)


@pytest.mark.parametrize(
    ("line", "code", "enhanced"),
    [
        (b"MAIL FROM:<a@b.c> SIZE=1 SIZE=2\r\n", 501, "5.5.4"),  # given twice
        (b"MAIL FROM:<a@b.c> XFOO=1\r\n", 555, "5.5.4"),  # not advertised
        (b"MAIL FROM:<a@b.c> RET=HDRS\r\n", 555, "5.5.4"),  # DSN is off by default
        (b"MAIL FROM:<a@b.c> SIZE=99999999999\r\n", 552, "5.3.4"),  # over SIZE
        (b"MAIL FROM:<a@b.c> BODY=BINARYMIME\r\n", 555, "5.5.4"),  # no BINARYMIME
        (b"MAIL FROM:<a@@b.c>\r\n", 501, "5.1.7"),
        (b"MAIL FROM <a@b.c>\r\n", 501, "5.5.4"),
        (b"RCPT TO:<>\r\n", 503, "5.5.1"),  # out of sequence is judged first
    ],
)
def test_bad_mail_lines_get_the_rfc_reply(line: bytes, code: int, enhanced: str):
    """RFC 5321 4.1.1.11 (555), RFC 1870 section 6 (552), RFC 3463 codes."""
    server = greeted()
    reply = refused(server, line)
    assert (reply.code, reply.enhanced) == (code, enhanced), reply


def test_null_forward_path_and_bad_rcpt_parameters_are_refused():
    """RFC 5321 4.1.1.3: RCPT needs a real forward path."""
    server = greeted(ServerConfig(dsn=True))
    accept(server, b"MAIL FROM:<a@b.c>\r\n")
    assert refused(server, b"RCPT TO:<>\r\n").code == 501
    assert refused(server, b"RCPT TO:<x@b.c> NOTIFY=NEVER,SUCCESS\r\n").code == 501
    assert refused(server, b"RCPT TO:<x@b.c> SIZE=10\r\n").code == 555
    event = one(server, b"RCPT TO:<x@b.c> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+40b.c\r\n")
    assert isinstance(event, Rcpt)
    assert event.params.orcpt is not None and event.params.orcpt.address == "x@b.c"


def test_extra_parameters_the_application_handles_are_kept():
    server = greeted(ServerConfig(extra_mail_parameters=frozenset({"XTRACE"})))
    event = one(server, b"MAIL FROM:<a@b.c> xtrace=42\r\n")
    assert isinstance(event, Mail) and event.params.extra == (("XTRACE", "42"),)


def test_utf8_addresses_need_smtputf8():
    """RFC 6531 section 3.4: UTF-8 addresses only with the SMTPUTF8 parameter."""
    server = greeted()
    line = "MAIL FROM:<jöran@exämple.com>\r\n".encode()
    assert refused(server, line).code == 553
    event = one(server, "MAIL FROM:<jöran@exämple.com> SMTPUTF8\r\n".encode())
    assert isinstance(event, Mail) and event.params.smtputf8
    server.send(Reply(250, "ok"))
    assert isinstance(one(server, "RCPT TO:<ü@exämple.com>\r\n".encode()), Rcpt)


def test_utf8_rcpt_without_smtputf8_transaction_is_refused():
    """RFC 6531 section 3.4."""
    server = greeted()
    accept(server, b"MAIL FROM:<a@b.c>\r\n")
    assert refused(server, "RCPT TO:<ü@b.c>\r\n".encode()).code == 553


def test_smtputf8_parameter_refused_when_not_offered():
    server = greeted(ServerConfig(smtputf8=False))
    assert refused(server, "MAIL FROM:<ä@b.c> SMTPUTF8\r\n".encode()).code == 555


def test_invalid_utf8_and_control_characters_are_refused():
    """RFC 6531 section 3.3 (valid UTF-8 only); RFC 5321 2.3.8 (no controls)."""
    server = greeted()
    assert refused(server, b"MAIL FROM:<\xff@b.c> SMTPUTF8\r\n").code == 501
    assert refused(server, b"MAIL FROM:<a\x00@b.c>\r\n").code == 501
    assert refused(server, b"NOOP a\rb\r\n").code == 501


def test_unknown_and_unimplemented_verbs():
    """RFC 5321 4.2.4: 500 for unrecognised, 502 for not implemented."""
    server = greeted()
    assert refused(server, b"FROB\r\n").code == 500
    assert refused(server, b"TURN\r\n").code == 502
    assert refused(server, b"\r\n").code == 500


def test_arguments_where_none_are_allowed():
    """RFC 5321 4.1.1.4/4.1.1.5/4.1.1.10: DATA, RSET and QUIT take none."""
    server = in_transaction()
    assert refused(server, b"DATA now\r\n").code == 501
    assert refused(server, b"QUIT please\r\n").code == 501
    assert one(server, b"RSET  \r\n") == Rset()  # trailing spaces are tolerated


def test_vrfy_and_ehlo_need_an_argument():
    """RFC 5321 4.1.1.6 and 4.1.1.1."""
    server = greeted()
    assert refused(server, b"VRFY\r\n").code == 501
    assert refused(server, b"EHLO\r\n").code == 501


def test_strict_mode_wants_exact_grammar():
    """RFC 5321 4.1.2 (no space before the path) and 2.3.8 (CRLF)."""
    lenient = greeted()
    assert one(lenient, b"MAIL FROM: <a@b.c>\r\n") == Mail(Address("a", "b.c"))
    lenient.send(Reply(250, "ok"))
    strict = greeted(ServerConfig(strict=True))
    assert refused(strict, b"MAIL FROM: <a@b.c>\r\n").code == 501
    assert refused(strict, b"NOOP\n").code == 500
    assert refused(strict, b"EHLO not_a_domain!\r\n").code == 501
    assert one(lenient, b"RSET\n") == Rset()  # lenient: a bare LF ends a command


def test_recipient_limit_gives_452():
    """RFC 5321 4.5.3.1.8 and 4.5.3.1.10: at least 100, then 452 4.5.3."""
    server = greeted(ServerConfig(max_recipients=3))
    accept(server, b"MAIL FROM:<a@b.c>\r\n")
    for n in range(3):
        accept(server, b"RCPT TO:<r%d@b.c>\r\n" % n)
    reply = refused(server, b"RCPT TO:<r4@b.c>\r\n")
    assert (reply.code, reply.enhanced) == (452, "4.5.3")
    assert len(server.recipients) == 3


def test_default_recipient_limit_is_100():
    assert ServerConfig().max_recipients == 100


def test_command_line_limit_is_512_with_crlf():
    """RFC 5321 4.5.3.1.4: 512 octets including CRLF."""
    server = greeted()
    ok = b"NOOP " + b"x" * (512 - 7) + b"\r\n"
    assert len(ok) == 512
    assert isinstance(one(server, ok), Noop)
    server.send(Reply(250, "ok"))
    reply = refused_long(server, b"NOOP " + b"x" * (512 - 6) + b"\r\n")
    assert (reply.code, reply.enhanced) == (500, "5.5.2")


def refused_long(server: ServerConnection, line: bytes) -> Reply:
    event = one(server, line)
    assert isinstance(event, CommandError)
    server.send(event.reply)
    return event.reply


def test_mail_line_limit_grows_with_size_smtputf8_and_dsn():
    """RFC 1870 section 4 (+26), RFC 6531 section 3.4 (+10), RFC 3461 section 5."""
    config = ServerConfig(dsn=True, extra_mail_parameters=frozenset({"XPAD"}))
    server = greeted(config)
    local = "a" * 60
    base = f"MAIL FROM:<{local}@example.com> SIZE=1000 XPAD="
    line = base + "x" * (512 + 26 + 10 + 100 - len(base) - 2)
    assert len(line) + 2 == 648
    assert isinstance(one(server, line.encode() + b"\r\n"), Mail)
    server.send(Reply(250, "ok"))
    server.receive_data(b"RSET\r\n")
    server.next_event()
    server.send(Reply(250, "ok"))
    assert refused_long(server, (line + "y").encode() + b"\r\n").code == 500


@pytest.mark.parametrize("offered", list(itertools.product((False, True), repeat=4)))
def test_mail_and_rcpt_line_limits_for_every_mix_of_extensions(offered: tuple[bool, ...]):
    """What each extension adds to the 512 octets of RFC 5321 4.5.3.1.4:
    SIZE +26 on MAIL (RFC 1870 section 4), SMTPUTF8 +10 on both (RFC 6531
    section 3.4), DSN +100 on MAIL and +500 on RCPT (RFC 3461 section 5),
    AUTH +500 on MAIL (RFC 4954 section 5); other commands get none."""
    size, utf8, dsn, auth = offered
    names = [n for n, on in zip(("SIZE", "SMTPUTF8", "DSN", "AUTH"), offered, strict=True) if on]
    session = Session()
    session.extensions = Extensions(tuple((name, ()) for name in names))
    mail = 512 + 26 * size + 10 * utf8 + 100 * dsn + 500 * auth
    rcpt = 512 + 10 * utf8 + 500 * dsn
    assert command_line_limit(Mail, session, 512) == mail
    assert command_line_limit(Rcpt, session, 512) == rcpt
    assert command_line_limit(Noop, session, 512) == 512


def test_over_long_line_tail_is_never_run_as_a_command():
    """RFC 5321 4.5.3.1.4: the rest of an over-long line is discarded, even
    when it looks like a command (a classic injection through truncation)."""
    server = greeted()
    payload = b"NOOP " + b"x" * 600 + b"RSET\r\nQUIT\r\n"
    events = []
    for byte in range(len(payload)):
        server.receive_data(payload[byte : byte + 1])
        for event in drain(server):
            events.append(event)
            if isinstance(event, CommandError):
                server.send(event.reply)
    assert len(events) == 2
    assert isinstance(events[0], CommandError) and events[0].reply.code == 500
    # The head, cut to the longest line this config allows (MAIL with SIZE
    # and SMTPUTF8: 512 + 26 + 10), whichever way the bytes came.
    assert events[0].line == payload[:548]
    assert events[1] == Quit()


def test_megabytes_without_newline_cost_bounded_memory():
    server = greeted()
    for _ in range(100):
        server.receive_data(b"A" * 65536)
        assert server.next_event() is NEED_DATA
        assert len(server._buffer) < 2048
    server.receive_data(b"\r\nNOOP\r\n")
    event = server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == 500
    server.send(event.reply)
    assert server.next_event() == Noop()


def test_pipelined_commands_come_out_in_order_and_nothing_is_lost():
    """RFC 2920 section 3: the server reads ahead but answers in order."""
    server = greeted()
    server.receive_data(
        b"MAIL FROM:<a@b.c>\r\nRCPT TO:<x@b.c>\r\nRCPT TO:<y@b.c>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n"
    )
    seen = []
    replies = {Mail: Reply(250, "ok"), Rcpt: Reply(250, "ok"), Data: Reply(354, "go")}
    while (event := server.next_event()) is not NEED_DATA:
        assert event is not PAUSED
        seen.append(event)
        if type(event) in replies:
            server.send(replies[type(event)])
        elif isinstance(event, MessageEnd):
            server.send(Reply(250, "queued"))
        elif isinstance(event, Quit):
            server.send(Reply(221, "bye"))
            break
    assert seen == [
        Mail(Address("a", "b.c")),
        Rcpt(Address("x", "b.c")),
        Rcpt(Address("y", "b.c")),
        Data(),
        MessageChunk(b"hello\r\n"),
        MessageEnd(),
        Quit(),
    ]


def test_paused_until_the_reply_is_sent():
    """The meaning of the bytes after DATA depends on the reply (DESIGN)."""
    server = in_transaction()
    server.receive_data(b"DATA\r\nMAIL FROM:<a@b.c>\r\n")
    assert server.next_event() == Data()
    assert server.next_event() is PAUSED
    server.send(Reply(554, "no"))
    # 554: what followed DATA is read as commands.
    event = server.next_event()
    assert isinstance(event, CommandError) and event.reply.code == 503


def test_content_after_354_and_the_pipelined_command_behind_it():
    """RFC 5321 4.1.1.4 and RFC 2920: commands after CRLF.CRLF are read."""
    server = in_transaction()
    server.receive_data(b"DATA\r\n..dot\r\nend\r\n.\r\nNOOP\r\n")
    assert server.next_event() == Data()
    server.send(Reply(354, "go"))
    assert server.next_event() == MessageChunk(b".dot\r\nend\r\n")
    assert server.next_event() == MessageEnd()
    assert server.next_event() is PAUSED
    server.send(Reply(250, "queued"))
    assert server.state is State.GREETED
    assert server.next_event() == Noop()


def test_refused_message_must_get_an_error_reply():
    """Policy refusals (bare LF by default) come after the real end of data."""
    server = in_message()
    server.receive_data(b"line one\nline two\r\n.\r\n")
    events = drain(server)
    assert isinstance(events[-1], MessageRefused)
    assert events[-1].reply.code == 550
    with pytest.raises(LocalProtocolError, match="4yz or 5yz"):
        server.send(Reply(250, "ok"))
    server.send(events[-1].reply)
    assert server.state is State.GREETED


def test_size_limit_while_reading_content():
    """RFC 1870 section 6.3: over the limit: read to the end, then 552."""
    server = in_message(ServerConfig(max_message_size=100))
    events = []
    for line in [b"x" * 70 + b"\r\n"] * 3 + [b".\r\nNOOP\r\n"]:
        server.receive_data(line)
        events += drain(server)
    # Content before the fault is handed out as it came, CRLF and all.
    assert events[0] == MessageChunk(b"x" * 70 + b"\r\n")
    assert isinstance(events[-1], MessageRefused) and events[-1].reply.code == 552
    server.send(events[-1].reply)
    assert server.next_event() == Noop()


def test_peer_closing_mid_message_delivers_no_end():
    server = in_message()
    server.receive_data(b"partial\r\n")
    server.receive_data(b"")
    # The content is handed out as it came, but no MessageEnd follows: the
    # application must not take a message cut short as complete.
    assert drain(server) == [MessageChunk(b"partial\r\n"), ConnectionClosed()]
    assert server.state is State.CLOSED


def test_data_after_close_is_a_local_error():
    server = greeted()
    server.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"more")


def test_server_sends_only_replies():
    server = greeted()
    with pytest.raises(LocalProtocolError, match="Reply"):
        server.send(Noop())  # type: ignore[arg-type]


def test_reply_lines_over_512_octets_are_refused():
    """RFC 5321 4.5.3.1.5: reply lines are at most 512 octets with CRLF."""
    server = greeted()
    one(server, b"NOOP\r\n")
    with pytest.raises(LocalProtocolError, match="512"):
        server.send(Reply(250, "x" * 600))
    server.send(Reply(250, "ok"))


def test_ehlo_domain_longer_than_255_octets_is_refused():
    """RFC 5321 4.5.3.1.2: a domain is at most 255 octets, and the reply to
    any accepted EHLO fits the 512-octet reply line."""
    server = greeted(hello=None)
    assert refused(server, b"EHLO " + b"h" * 256 + b"\r\n").code == 501
    event = one(server, b"EHLO " + b"h" * 255 + b"\r\n")
    assert isinstance(event, Ehlo)
    data = server.send(server.ehlo_reply())
    assert max(len(line) for line in data.split(b"\r\n")) + 2 <= 512


def test_suggested_replies_fit_the_reply_line_limit_whatever_they_quote():
    """RFC 5321 4.5.3.1.5: a suggested refusal that quotes a long bad
    argument is cut so that the application can always send it."""
    server = greeted()
    event = one(server, b"MAIL FROM:<a@example.com>" + b"Z" * 480 + b"\r\n")
    assert isinstance(event, CommandError) and event.reply.code == 501
    data = server.send(event.reply)
    assert len(data) <= 512 and data.endswith(b"...\r\n")


@pytest.mark.parametrize(
    ("line", "needs"),
    [
        (b"MAIL FROM:<a@b.c> AUTH=<>\r\n", "AUTH"),  # RFC 4954 section 5
        (b"MAIL FROM:<a@b.c> REQUIRETLS\r\n", "REQUIRETLS"),  # RFC 8689 section 4.1
        (b"MAIL FROM:<a@b.c> MT-PRIORITY=3\r\n", "MT-PRIORITY"),  # RFC 6710
        (b"MAIL FROM:<a@b.c> BY=120;R\r\n", "DELIVERBY"),  # RFC 2852
    ],
)
def test_relay_parameters_need_their_extension(line: bytes, needs: str):
    """RFC 5321 4.1.1.11: a parameter of an extension not offered gets 555."""
    reply = refused(greeted(), line)
    assert reply.code == 555 and needs in reply.text


def test_relay_parameters_are_typed_when_offered():
    config = ServerConfig(
        auth_mechanisms=("SCRAM-SHA-256",),
        requiretls=True,
        extra_extensions=("MT-PRIORITY", "DELIVERBY", "RRVS"),
    )
    server = ServerConnection(config, tls=True)
    server.send(server.greeting())
    server.receive_data(b"EHLO c\r\n")
    server.next_event()
    server.send(server.ehlo_reply())
    assert server.extensions is not None and server.extensions.requiretls
    event = one(server, b"MAIL FROM:<a@b.c> AUTH=<> REQUIRETLS MT-PRIORITY=-2 BY=60;NT\r\n")
    assert isinstance(event, Mail)
    params = event.params
    assert (params.auth, params.requiretls, params.mt_priority) == ("<>", True, -2)
    assert params.deliver_by is not None and params.deliver_by.seconds == 60
    server.send(Reply(250, "ok"))
    event = one(server, b"RCPT TO:<d@e.f> RRVS=2014-04-03T23:01:00Z;C\r\n")
    assert isinstance(event, Rcpt) and event.params.rrvs is not None


def test_requiretls_is_offered_only_under_tls():
    """RFC 8689 section 4.1: REQUIRETLS is advertised only over TLS."""
    server = greeted(ServerConfig(requiretls=True))
    assert server.extensions is not None and not server.extensions.requiretls


def _mail_verdicts(lines: list[tuple[bool, bytes]]) -> list[object]:
    verdicts: list[object] = []
    for strict, line in lines:
        server = ServerConnection(ServerConfig(strict=strict))
        server.send(server.greeting())
        server.receive_data(b"EHLO client.example\r\n")
        server.next_event()
        server.send(server.ehlo_reply())
        server.receive_data(line)
        verdicts.append(server.next_event())
    return verdicts


def test_a_mail_argument_seen_before_is_judged_as_the_first_time():
    # Command lines are read once and remembered: the verdict
    # must still depend on the server's strictness (RFC 5321 4.1.2 has no
    # space after the colon), a refusal must be given again, and a
    # remembered command must equal a freshly parsed one.
    spaced = b"MAIL FROM: <a@example.org>\r\n"
    bad = b"MAIL FROM:<a@@example.org>\r\n"
    verdicts = _mail_verdicts(
        [(False, spaced), (True, spaced), (False, spaced), (False, bad), (False, bad)]
    )
    lenient, strict, again, refused, refused_again = verdicts
    assert isinstance(lenient, Mail) and lenient == again
    assert lenient.reverse_path == Address("a", "example.org")
    assert isinstance(strict, CommandError) and strict.reply.code == 501
    assert isinstance(refused, CommandError) and refused == refused_again


def test_a_reply_sent_before_is_judged_anew_for_each_command_state_and_session():
    # The verdict on a reply (its bytes and where it leads) is remembered per
    # state, command, reply and whether ENHANCEDSTATUSCODES is in force. The
    # same Reply object must still get the enhanced code of its command (RFC
    # 3463 3.2: X.1.0 sender, X.1.5 recipient), none where no EHLO advertised
    # the extension (RFC 2034 section 3), and move only its own session.
    ok = Reply(250, "ok")
    plain = greeted(ServerConfig(), hello="HELO c.example")  # no extensions
    fancy = greeted()
    wire = []
    for server in (fancy, plain, fancy, plain):
        server.receive_data(b"NOOP\r\n")
        assert server.next_event() == Noop()
        wire.append(server.send(ok))
        server.receive_data(b"MAIL FROM:<a@example.org>\r\n")
        assert isinstance(server.next_event(), Mail)
        wire.append(server.send(ok))
        server.receive_data(b"RCPT TO:<b@example.org>\r\n")
        assert isinstance(server.next_event(), Rcpt)
        wire.append(server.send(ok))
        server.receive_data(b"RSET\r\n")
        assert server.next_event() == Rset()
        assert server.state is State.HAS_RECIPIENTS and server.recipients
        wire.append(server.send(ok))
        assert server.state is State.GREETED and server.transaction is None
    with_codes = [
        b"250 2.0.0 ok\r\n",
        b"250 2.1.0 ok\r\n",
        b"250 2.1.5 ok\r\n",
        b"250 2.0.0 ok\r\n",
    ]
    without = [b"250 ok\r\n"] * 4
    assert wire == with_codes + without + with_codes + without
    # One session's accepted MAIL is not another's.
    accept(fancy, b"MAIL FROM:<c@example.org>\r\n", ok)
    assert fancy.state is State.IN_TRANSACTION and plain.state is State.GREETED
    assert plain.transaction is None


def test_a_reply_that_cannot_answer_is_refused_every_time():
    # RFC 5321 4.1.1.10: QUIT is answered 221; 4.3.2: MAIL is not answered
    # 354. A wrong reply is never remembered as if it had been right, and
    # changes nothing, however often it is tried.
    server = greeted()
    wrong = Reply(354, "go on")
    server.receive_data(b"MAIL FROM:<a@example.org>\r\n")
    assert isinstance(server.next_event(), Mail)
    for _ in range(3):
        with pytest.raises(LocalProtocolError, match="354"):
            server.send(wrong)
        assert server.state is State.GREETED and server.transaction is None
    assert server.send(Reply(250, "ok")) == b"250 2.1.0 ok\r\n"
    server.receive_data(b"QUIT\r\n")
    assert isinstance(server.next_event(), Quit)
    for _ in range(2):
        with pytest.raises(LocalProtocolError, match="221"):
            server.send(Reply(250, "bye"))
    assert server.send(Reply(221, "bye")) == b"221 2.0.0 bye\r\n"
    assert server.state is State.CLOSED


def test_a_line_seen_before_is_judged_again_in_the_state_it_comes_in():
    # A remembered line still gets the verdict of the moment: RFC 5321 4.3.2
    # (503 out of sequence comes before whatever the argument earns), 4.1.1.4
    # (DATA needs a recipient), 4.5.3.1.10 (452 once the recipients are as
    # many as allowed), and a bare LF is judged as such, not as the CRLF line.
    server = greeted(ServerConfig(max_recipients=1))
    bad_argument = b"RCPT TO:<b@@example.org>\r\n"
    assert refused(server, b"DATA\r\n").code == 503
    assert refused(server, bad_argument).code == 503
    accept(server, b"MAIL FROM:<a@example.org>\r\n")
    assert refused(server, bad_argument).code == 501
    accept(server, b"RCPT TO:<b@example.org>\r\n")
    assert refused(server, b"RCPT TO:<b@example.org>\r\n").code == 452
    assert one(server, b"DATA\r\n") == Data()
    strict = greeted(ServerConfig(strict=True))
    assert refused(strict, b"RSET\n").code == 500
    assert accept(strict, b"RSET\r\n") == Rset()


def test_auth_lines_are_not_remembered():
    # RFC 4954 section 4: an AUTH line may carry the credentials (PLAIN's
    # initial response); the engine keeps no copy of it once judged.
    from smtp_core import _readers

    config = ServerConfig(auth_mechanisms=("PLAIN",), auth_requires_tls=False)
    server = greeted(config)
    line = b"AUTH PLAIN AGFubgBzM2NyZXQ="
    event = one(server, line + b"\r\n")
    assert event == Auth("PLAIN", b"\0ann\0s3cret")
    assert not any(key[0] == line for key in _readers._LINES)
    one_more = greeted()
    accept(one_more, b"NOOP remembered\r\n")
    assert any(key[0] == b"NOOP remembered" for key in _readers._LINES)
