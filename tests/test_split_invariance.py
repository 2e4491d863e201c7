"""Split invariance: however the peer's bytes are cut into reads, an engine
hands out the same events and sends the same bytes.

DESIGN.md: "Limits hold however the bytes were split: a line that is too long
is refused the same whether it came in one read or a byte at a time (h11
issue 182 is the counter-example)." Content chunk boundaries carry no
meaning, so events are compared with consecutive chunks merged.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from helpers import drain, feed_in_pieces, merge_chunks
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtp_core import (
    NEED_DATA,
    PAUSED,
    Address,
    BareLinePolicy,
    ClientConnection,
    CommandError,
    ConnectionClosed,
    Data,
    Ehlo,
    Event,
    Helo,
    LocalProtocolError,
    Mail,
    MessageChunk,
    MessageEnd,
    MessageRefused,
    Noop,
    Quit,
    Rcpt,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
)

# --------------------------------------------------------------------------
# The server side: a driver that answers like a simple application.


def policy_reply(server: ServerConnection, event: Event) -> Reply | None:
    """The fixed answer of the test application to each event."""
    if isinstance(event, (CommandError, MessageRefused)):
        return event.reply
    if isinstance(event, (Ehlo, Helo)):
        return server.ehlo_reply()
    if isinstance(event, Data):
        return Reply(354, "end with <CRLF>.<CRLF>")
    if isinstance(event, Quit):
        return Reply(221, "bye")
    if isinstance(event, MessageEnd):
        return Reply(250, "queued")
    if isinstance(event, MessageChunk):
        return None
    return Reply(250, "ok")


def pieces(data: bytes, sizes: Iterable[int]) -> Iterator[bytes]:
    """``data`` cut at the given sizes (cycled), then the rest."""
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(data):
            return
        yield data[position : position + size]
        position += size


def serve(
    data: bytes,
    sizes: Iterable[int],
    config: ServerConfig | None = None,
    feed_early: list[bool] | None = None,
) -> tuple[list[Event], bytes]:
    """Run ``data`` through a ServerConnection answered by ``policy_reply``.

    The bytes are fed in pieces, then the peer closes. Normally the next
    piece is fed only at NEED_DATA; with ``feed_early`` (cycled) it may also
    be fed right after an event, before the next ``next_event`` call, which
    is what an adapter that reads while the application works does.
    Returns the events and every byte the server sent.
    """
    server = ServerConnection(config)
    assert server.next_event() is PAUSED
    sent = bytearray(server.send(server.greeting()))
    events: list[Event] = []
    reads = itertools.chain(pieces(data, sizes), [b""])
    early = itertools.cycle(feed_early or [False])
    exhausted = False
    # Every event consumes at least one octet, but for the end events.
    for _ in range(2 * len(data) + 20):
        try:
            event = server.next_event()
        except RemoteProtocolError as error:
            # Documented end: a BDAT whose size cannot be read (RFC 3030).
            assert error.reply is not None
            events += [error.reply, ConnectionClosed()]
            return events, bytes(sent)
        if event is NEED_DATA:
            assert not exhausted, "NEED_DATA after the peer closed"
            piece = next(reads)
            server.receive_data(piece)
            exhausted = piece == b""
            continue
        assert event is not PAUSED, "the driver answers every event"
        events.append(event)  # type: ignore[arg-type]
        if isinstance(event, ConnectionClosed):
            return events, bytes(sent)
        reply = policy_reply(server, event)  # type: ignore[arg-type]
        if reply is not None:
            sent += server.send(reply)
        if next(early) and not exhausted:
            piece = next(reads, b"")
            server.receive_data(piece)
            exhausted = piece == b""
    raise AssertionError(f"no ConnectionClosed after {len(events)} events")


def comparable(events: list[Event]) -> list[Event]:
    """Events with chunks merged, and without the chunks a MessageRefused
    voids (the application must not deliver them; how many came before the
    fault was noticed depends on the reads)."""
    merged = merge_chunks(events)
    kept: list[Event] = []
    for event in merged:
        if isinstance(event, MessageRefused) and kept and isinstance(kept[-1], MessageChunk):
            kept.pop()
        kept.append(event)
    return kept


# --------------------------------------------------------------------------
# Generated client input: valid pipelined sessions with faults mixed in.

endings = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])
paths = st.sampled_from(
    [
        b"<a@example.com>",
        b"<a@example.com>",
        b"<a@example.com>",
        b"<>",
        b'<"john doe"@[192.0.2.1]>',
        b"<user@[IPv6:2001:db8::1]>",
        b"b@example.org",
        b"<@relay.example:c@example.net>",
        b"<bad",
        b"<x@-bad-.example>",
    ]
)
mail_parameters = st.sampled_from([b"", b" SIZE=1000", b" BODY=8BITMIME", b" RET=FULL", b" XX"])
printable_text = st.binary(max_size=30).map(
    lambda raw: bytes(c for c in raw if 32 <= c < 127 or c >= 128)
)
body_lines = st.one_of(
    st.just(b""),
    st.just(b"."),
    st.just(b".."),
    printable_text.map(lambda text: b"." + text),
    printable_text,
    st.integers(990, 1100).map(lambda size: b"y" * size),
    printable_text.map(lambda text: text + b"\nbare LF"),
    printable_text.map(lambda text: text + b"\rbare CR"),
)
bodies = st.lists(body_lines, max_size=8).map(b"\r\n".join)


@st.composite
def transactions(draw: st.DrawFn) -> bytes:
    """MAIL, RCPTs, DATA, content and its end, as a pipelining client sends them."""
    out = b"MAIL FROM:" + draw(paths) + draw(mail_parameters) + draw(endings)
    for _ in range(draw(st.integers(0, 4))):
        out += draw(st.sampled_from([b"RCPT TO:", b"rcpt to:"])) + draw(paths) + draw(endings)
    out += b"DATA" + draw(endings)
    body = draw(bodies)
    if body and draw(st.booleans()):
        body += b"\r\n"
    return out + body + b"\r\n.\r\n"


other_lines = st.one_of(
    st.sampled_from(
        [
            b"EHLO client.example",
            b"ehlo client.example",
            b"HELO client.example",
            b"RSET",
            b"NOOP",
            b"NOOP hello there",
            b"HELP",
            b"VRFY postmaster",
            b"EXPN list",
            b"DATA",
            b"STARTTLS",
            b"BDAT 10 LAST",
            b"RCPT TO:<z@example.com>",
            b"MAIL FROM:<a@example.com> SIZE=abc",
            b"QUIT",
        ]
    ),
    printable_text,
    st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b"")),
    st.integers(400, 3000).map(lambda size: b"X" * size),
)
segments = st.one_of(
    transactions(),
    transactions(),
    st.tuples(other_lines, endings).map(b"".join),
)


@st.composite
def client_streams(draw: st.DrawFn) -> bytes:
    """What a client might send after the greeting: usually EHLO first."""
    out = draw(st.sampled_from([b"EHLO client.example\r\n"] * 3 + [b""]))
    parts = draw(st.lists(segments, max_size=6))
    # QUIT ends the session: keep it rare so that later segments are read.
    return out + b"".join(part for part in parts if not part.startswith(b"QUIT"))


server_configs = st.builds(
    ServerConfig, bare_line_ending=st.sampled_from(BareLinePolicy), strict=st.booleans()
)
piece_sizes = st.lists(st.integers(1, 96), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(data=client_streams(), config=server_configs, sizes=piece_sizes)
@example(
    data=b"EHLO c.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    + b"y" * 1200
    + b"\r\nbare\rCR\r\n.\r\n",
    config=ServerConfig(),
    sizes=[64],
)
def test_server_events_and_replies_do_not_depend_on_the_reads(
    data: bytes, config: ServerConfig, sizes: list[int]
):
    """RFC 5321 2.3.7 and 4.1.1.4, RFC 2920 section 3: lines and the end of
    content are found in the byte stream, not in the reads, so any split of a
    pipelined session gives the same commands, content, refusals and replies."""
    whole_events, whole_sent = serve(data, [len(data) or 1], config)
    split_events, split_sent = serve(data, sizes, config)
    assert comparable(split_events) == comparable(whole_events)
    assert split_sent == whole_sent
    if len(data) <= 3000:
        byte_events, byte_sent = serve(data, [1], config)
        assert comparable(byte_events) == comparable(whole_events)
        assert byte_sent == whole_sent
    assert whole_events[-1] == ConnectionClosed()


@settings(max_examples=200, deadline=None)
@given(
    data=client_streams(),
    config=server_configs,
    sizes=piece_sizes,
    feed_early=st.lists(st.booleans(), min_size=1, max_size=8),
)
def test_server_events_do_not_depend_on_when_bytes_are_fed(
    data: bytes, config: ServerConfig, sizes: list[int], feed_early: list[bool]
):
    """RFC 2920 section 3 (commands pipelined after the end of content are
    read in order): ``receive_data`` may be called between any two
    ``next_event`` calls, not only at NEED_DATA, and nothing may be lost."""
    whole_events, whole_sent = serve(data, [len(data) or 1], config)
    early_events, early_sent = serve(data, sizes, config, feed_early)
    assert comparable(early_events) == comparable(whole_events)
    assert early_sent == whole_sent


def server_in_message(config: ServerConfig | None = None) -> ServerConnection:
    """A server that has answered DATA with 354."""
    server = ServerConnection(config)
    assert server.next_event() is PAUSED
    server.send(server.greeting())
    server.receive_data(
        b"EHLO c.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    )
    for _ in range(4):
        event = server.next_event()
        reply = policy_reply(server, event)  # type: ignore[arg-type]
        assert reply is not None
        server.send(reply)
    return server


def test_command_fed_before_message_end_is_taken_is_not_lost():
    """RFC 2920 section 3: a command pipelined after CRLF.CRLF is read.
    Minimal case: the content and its end arrive in one read, the next read
    (QUIT) comes before the application asked for the event after the last
    chunk. Found by test_server_events_do_not_depend_on_when_bytes_are_fed."""
    server = server_in_message()
    server.receive_data(b"hello\r\n.\r\n")
    assert server.next_event() == MessageChunk(b"hello\r\n")
    server.receive_data(b"QUIT\r\n")
    assert server.next_event() == MessageEnd()
    server.send(Reply(250, "queued"))
    assert server.next_event() == Quit()


def test_refusal_of_content_does_not_depend_on_the_reads():
    """RFC 5321 4.5.3.1.6 (text line limit) and the bare-LF policy: a message
    that breaks two rules gets the same refusal however it was read. Minimal
    case: a 1200-octet line, then a bare LF, in one read or in two."""
    content = b"x" * 1200 + b"\r\n" + b"a\nb\r\n.\r\n"
    refusals = []
    for sizes in ([len(content)], [1202]):
        server = server_in_message()
        events = feed_in_pieces(server, content, sizes)
        refusals.append([event for event in events if isinstance(event, MessageRefused)])
    assert refusals[0] == refusals[1]


LONG_LINE_LIMIT = 512 + 26 + 10  # MAIL with SIZE and SMTPUTF8 (RFC 1870, 6531)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 40_000), min_size=1, max_size=10), ending=endings)
def test_over_long_line_is_refused_the_same_however_it_was_split(sizes: list[int], ending: bytes):
    """RFC 5321 4.5.3.1.4 and 4.5.3.1.10: a 100 KB line without a line end
    gets one 500 5.5.2 once its end comes, whatever the reads; the command
    after it is read normally."""
    data = b"A" * 100_000 + ending + b"NOOP\r\n"
    events, sent = serve(data, sizes)
    assert len(events) == 3
    error, noop, closed = events
    assert isinstance(error, CommandError)
    assert (error.reply.code, error.reply.enhanced) == (500, "5.5.2")
    assert error.line == b"A" * LONG_LINE_LIMIT
    assert noop == Noop()
    assert closed == ConnectionClosed()
    whole_events, whole_sent = serve(data, [len(data)])
    assert events == whole_events
    assert sent == whole_sent


def test_over_long_line_fed_a_byte_at_a_time():
    """RFC 5321 4.5.3.1.4: the h11 issue 182 case, one octet per read."""
    data = b"A" * 100_000 + b"\r\nNOOP\r\n"
    assert serve(data, [1]) == serve(data, [len(data)])


# --------------------------------------------------------------------------
# The client side: reply streams.

reply_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
extension_lines = st.lists(
    st.sampled_from(
        ["SIZE 1000000", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN", "SMTPUTF8", "X-FOO a b"]
    ),
    unique=True,
).map(lambda lines: ["PIPELINING", *lines])


def reply_line_bytes(code: int, lines: list[str], ending: bytes) -> bytes:
    """One reply written by hand: "-" on all lines but the last, and a
    code-only last line when its text is empty (RFC 5321 4.2)."""
    out = b""
    for index, text in enumerate(lines):
        last = index == len(lines) - 1
        if last and not text:
            out += b"%d" % code + ending
        else:
            out += b"%d%s%s" % (code, b" " if last else b"-", text.encode()) + ending
    return out


@st.composite
def reply_streams(draw: st.DrawFn) -> tuple[list[list[bytes]], list[Reply], int]:
    """Replies to a greeting, EHLO, MAIL, RCPTs, DATA, the content and QUIT.

    Returns the raw lines of each reply (so that junk can be put between
    them), the Reply events they must give, and the number of RCPTs.
    """
    recipients = draw(st.integers(1, 4))
    ending = draw(endings)
    mail_code = draw(st.sampled_from([250, 250, 451, 550]))
    # RFC 5321 3.3: without an accepted MAIL, RCPT can only be refused.
    rcpt_choices = [250, 251, 450, 550] if mail_code == 250 else [450, 503, 550]
    rcpt_codes = draw(
        st.lists(st.sampled_from(rcpt_choices), min_size=recipients, max_size=recipients)
    )
    has_recipients = mail_code == 250 and any(code < 300 for code in rcpt_codes)
    data_code = draw(st.sampled_from([354, 354, 554] if has_recipients else [503, 554]))
    plan: list[tuple[int, list[str]]] = [
        (220, [draw(reply_text), *draw(st.lists(reply_text, max_size=2))]),
        (250, ["mx.example greets c.example", *draw(extension_lines)]),
        (mail_code, [draw(reply_text)]),
        *[(code, draw(st.lists(reply_text, min_size=1, max_size=2))) for code in rcpt_codes],
        (data_code, [draw(reply_text)]),
    ]
    if data_code == 354:
        plan.append((draw(st.sampled_from([250, 550])), [draw(reply_text)]))
    plan.append((221, [draw(reply_text)]))
    raw = [
        [line + ending for line in reply_line_bytes(code, lines, b"\n").split(b"\n")[:-1]]
        for code, lines in plan
    ]
    return raw, [Reply(code, lines) for code, lines in plan], recipients


RECIPIENTS = [Rcpt(Address(f"r{index}", "example.com")) for index in range(4)]
SENDER = Mail(Address("s", "example.com"))


def run_client(stream: bytes, sizes: Iterable[int], recipients: int) -> tuple[list, bytes]:
    """Feed a reply stream to a ClientConnection that reacts like a simple
    sender: EHLO after the greeting, MAIL, RCPTs and DATA pipelined after
    the EHLO reply, content after 354, QUIT at the end.

    Returns what happened (replies with what they answer, refusals of
    ``send``, the RemoteProtocolError if any) and every byte sent.
    """
    client = ClientConnection()
    sent = bytearray()
    log: list[object] = []

    def send(*events: object) -> None:
        for event in events:
            try:
                sent.extend(client.send(event))  # type: ignore[arg-type]
            except LocalProtocolError as error:  # recorded: it must not depend on the reads
                log.append(("send refused", type(error).__name__, str(error)))
                return

    for piece in itertools.chain(pieces(stream, sizes), [b""]):
        client.receive_data(piece)
        for _ in range(len(stream) + 10):
            try:
                event = client.next_event()
            except RemoteProtocolError as error:
                log.append(("remote error", str(error)))
                return log, bytes(sent)
            if event is NEED_DATA:
                break
            log.append((event, getattr(event, "answers", None)))
            if isinstance(event, ConnectionClosed):
                return log, bytes(sent)
            assert isinstance(event, Reply)
            answered = event.answers
            if answered is None and event.is_positive:
                send(Ehlo("c.example"))
            elif isinstance(answered, Ehlo) and event.is_positive:
                send(SENDER, *RECIPIENTS[:recipients], Data())
            elif isinstance(answered, Data) and event.code == 354:
                send(MessageChunk(b"Subject: t\r\n\r\n.dot\r\n"), MessageEnd())
            elif isinstance(answered, (Data, MessageEnd)):
                send(Quit())
    raise AssertionError("the peer closed but no ConnectionClosed came")


@settings(max_examples=200, deadline=None)
@given(streams=reply_streams(), sizes=piece_sizes)
def test_client_replies_do_not_depend_on_the_reads(
    streams: tuple[list[list[bytes]], list[Reply], int], sizes: list[int]
):
    """RFC 5321 4.2.1 (multiline replies) and RFC 2920 section 3 (replies to
    a pipelined group come in order): any split of the reply stream gives the
    same replies, each paired with the command it answers."""
    raw, expected, recipients = streams
    stream = b"".join(itertools.chain.from_iterable(raw))
    whole = run_client(stream, [len(stream)], recipients)
    assert run_client(stream, sizes, recipients) == whole
    assert run_client(stream, [1], recipients) == whole
    log, sent = whole
    assert log[-1] == (ConnectionClosed(), None)
    replies = [entry for entry in log if isinstance(entry[0], Reply)]
    assert [reply for reply, _ in replies] == expected
    commands: list[object] = [None, Ehlo("c.example"), SENDER, *RECIPIENTS[:recipients], Data()]
    if expected[-3].code == 354:
        commands.append(MessageEnd())
    commands.append(Quit())
    assert [answered for _, answered in replies] == commands
    assert sent.endswith(b"QUIT\r\n")


junk_lines = st.sampled_from(
    [
        b"hello\r\n",
        b"600 too high\r\n",
        b"25\r\n",
        b"250x\r\n",
        b"251 unasked\r\n",
        b"250-" + b"x" * 600 + b"\r\n",
        b"\x00\xff\r\n",
        b"421 going away\r\n",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    streams=reply_streams(),
    junk=junk_lines,
    where=st.integers(0, 1000),
    inside=st.booleans(),
    sizes=piece_sizes,
)
def test_client_faults_do_not_depend_on_the_reads(
    streams: tuple[list[list[bytes]], list[Reply], int],
    junk: bytes,
    where: int,
    inside: bool,
    sizes: list[int],
):
    """RFC 5321 4.2 and 4.5.3.1.5: a bad, over-long or unasked reply line is
    found at the same place, with the same error, however the stream was read."""
    raw, _, recipients = streams
    replies = [list(lines) for lines in raw]
    target = replies[where % len(replies)]
    target.insert(where % len(target) if inside else len(target), junk)
    stream = b"".join(itertools.chain.from_iterable(replies))
    whole = run_client(stream, [len(stream)], recipients)
    assert run_client(stream, sizes, recipients) == whole
    assert run_client(stream, [1], recipients) == whole


def client_awaiting_group(recipients: int) -> tuple[ClientConnection, list[Mail | Rcpt]]:
    """A client that sent MAIL and ``recipients`` RCPTs in one pipelined group."""
    client = ClientConnection()
    client.receive_data(b"220 mx.example\r\n")
    assert drain(client) == [Reply(220, "mx.example")]
    client.send(Ehlo("c.example"))
    client.receive_data(b"250-mx.example\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
    assert len(drain(client)) == 1
    commands: list[Mail | Rcpt] = [SENDER, *RECIPIENTS[:recipients]]
    for command in commands:
        client.send(command)
    return client, commands


@settings(max_examples=100, deadline=None)
@given(
    codes=st.lists(st.sampled_from([250, 251, 450, 452, 550, 553]), min_size=1, max_size=4),
    sizes=piece_sizes,
    ending=endings,
)
def test_replies_to_a_pipelined_group_do_not_depend_on_the_reads(
    codes: list[int], sizes: list[int], ending: bytes
):
    """RFC 2920 section 3: the replies to MAIL and a group of RCPTs, sent in
    one write, give the same replies in any split, paired in order."""
    replies = [Reply(250, ["2.1.0 sender", "2.1.0 ok"])] + [
        Reply(code, f"{code // 100}.1.5 recipient {index}") for index, code in enumerate(codes)
    ]
    stream = b"".join(
        reply_line_bytes(r.code, [f"{r.enhanced} {line}" for line in r.lines], ending)
        for r in replies
    )
    client, commands = client_awaiting_group(len(codes))
    events = feed_in_pieces(client, stream, itertools.cycle(sizes))
    assert events == replies
    assert [event.answers for event in events] == commands  # type: ignore[union-attr]
    assert client.pending == ()
    whole_client, _ = client_awaiting_group(len(codes))
    assert feed_in_pieces(whole_client, stream, [len(stream)]) == events
    assert whole_client.state is client.state
