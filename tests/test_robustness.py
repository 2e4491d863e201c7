"""Arbitrary bytes from the peer never break an engine.

A server answering every CommandError with its reply raises nothing at all,
whatever the client sends; a client raises nothing but RemoteProtocolError
(DESIGN.md, "Errors"). Every loop ends, and memory stays bounded however
long a line is (RFC 5321 4.5.3.1: limits exist so that it does). The core
imports no I/O module (DESIGN.md, "The layout").
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_split_invariance import pieces, serve

import smtp_core
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
    Mail,
    MessageChunk,
    MessageRefused,
    Noop,
    ProtocolError,
    Rcpt,
    RemoteProtocolError,
    Reply,
    ServerConfig,
    ServerConnection,
)

# RFC 5321 4.2 and 4.5.3.1.5: what every line a server writes must look like.
REPLY_LINE = re.compile(rb"[2-5][0-5][0-9]([ -][^\r\n]*)?")


def assert_valid_replies(sent: bytes) -> None:
    """Every line the server wrote is a reply line of at most 512 octets."""
    assert sent.endswith(b"\r\n")
    for line in sent[:-2].split(b"\r\n"):
        assert REPLY_LINE.fullmatch(line), line[:80]
        assert len(line) + 2 <= 512, line[:80]


# --------------------------------------------------------------------------
# The server.

server_configs = st.builds(
    ServerConfig,
    strict=st.booleans(),
    bare_line_ending=st.sampled_from(BareLinePolicy),
    dsn=st.booleans(),
    pipelining=st.booleans(),
    max_text_line=st.sampled_from([None, 3, 80, 1000]),
    max_message_size=st.sampled_from([None, 1, 100, 10_240_000]),
    max_recipients=st.integers(1, 3),
)
piece_sizes = st.lists(st.integers(1, 200), min_size=1, max_size=8)

verbs = st.sampled_from(
    [
        b"EHLO",
        b"HELO",
        b"MAIL FROM:",
        b"mail from: ",
        b"RCPT TO:",
        b"rcpt to:",
        b"DATA",
        b"RSET",
        b"NOOP",
        b"HELP",
        b"VRFY",
        b"EXPN",
        b"QUIT",
        b"STARTTLS",
        b"AUTH PLAIN",
        b"BDAT 5",
        b"LHLO",
        b"XYZZY",
        b"",
    ]
)
arguments = st.one_of(
    st.sampled_from(
        [
            b"<a@example.com>",
            b"<>",
            b"<a@example.com> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+2B",
            b"<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40example.com",
            b"<\xc3\xa9@\xc3\xa9.example> SMTPUTF8",
            b"<@a,@b:c@d>",
            b'<"\\\x00"@x>',
            b"<a@[IPv6:::]>",
            b"<a@[300.1.1.1]>",
            b"SIZE=99999999999999999999999",
            b"client.example",
            b"\xff\xfe",
            b"\xed\xa0\x80",
        ]
    ),
    st.binary(max_size=60).map(lambda raw: raw.replace(b"\n", b"")),
    st.text(max_size=30).map(lambda text: text.encode("utf-8", "surrogatepass")),
)
endings = st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r", b"\r\r\n", b""])
command_lines = st.tuples(verbs, st.sampled_from([b"", b" ", b"\t", b"  "]), arguments, endings)
junk_lines = st.one_of(
    command_lines.map(b"".join),
    st.integers(400, 5000).map(lambda size: b"Z" * size + b"\r\n"),
    # An EHLO as long as a command line may be (RFC 5321 4.5.3.1.4).
    st.integers(480, 507).map(lambda size: b"EHLO " + b"h" * size + b"\r\n"),
    st.binary(max_size=20).map(lambda raw: b"\x00" + raw),
    st.sampled_from([b".\r\n", b"..\r\n", b"\r\n.\r\n", b"\n.\n", b"\r.\r"]),
)
opening = b"EHLO c.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
structured_junk = st.tuples(
    st.sampled_from([b"", b"EHLO c.example\r\n", opening]),
    st.lists(junk_lines, max_size=12).map(b"".join),
).map(b"".join)


def serve_checked(data: bytes, sizes: list[int], config: ServerConfig) -> list:
    """Drive a server over ``data``; only AssertionErrors from the driver's
    checks may escape, anything the engine raises is reported as such."""
    try:
        events, sent = serve(data, sizes, config)
    except ProtocolError as error:  # pragma: no cover - an engine fault
        pytest.fail(f"the engine raised {type(error).__name__}: {error}")
    assert_valid_replies(sent)
    assert events[-1] == ConnectionClosed()
    return events


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=3000), sizes=piece_sizes, config=server_configs)
def test_server_survives_arbitrary_bytes(data: bytes, sizes: list[int], config: ServerConfig):
    """RFC 5321 4.3.2 and 4.5.3.1: whatever a client sends, the server hands
    out events the application can answer, and its replies are valid."""
    serve_checked(data, sizes, config)


@settings(max_examples=500, deadline=None)
@given(data=structured_junk, sizes=piece_sizes, config=server_configs)
@example(data=b"EHLO " + b"h" * 505 + b"\r\n", sizes=[64], config=ServerConfig())
def test_server_survives_command_like_junk(data: bytes, sizes: list[int], config: ServerConfig):
    """RFC 5321 4.1.1, 4.5.3.1 and 4.5.2: command-like lines with bad
    arguments, NULs, invalid UTF-8, huge lines, EHLO names as long as a line
    allows, stray dots and content ends."""
    events = serve_checked(data, sizes, config)
    for event in events:
        if isinstance(event, CommandError):
            assert 400 <= event.reply.code < 600
        if isinstance(event, MessageRefused):
            assert 400 <= event.reply.code < 600


def test_ehlo_reply_for_the_longest_ehlo_line_can_be_sent():
    """RFC 5321 4.1.1.1 and 4.5.3.1.5: an EHLO the server hands out must get
    a suggested reply (``ehlo_reply()``) that ``send`` accepts. Minimal case:
    a 505-octet name fills the 512-octet command line, and "250-localhost
    greets " + name is longer than the 512-octet reply line. (Refusing the
    name as a CommandError would do too: RFC 5321 4.5.3.1.2 caps a domain at
    255 octets.)"""
    server = ServerConnection()
    assert server.next_event() is PAUSED
    server.send(server.greeting())
    name = b"h" * 505
    server.receive_data(b"EHLO " + name + b"\r\n")
    event = server.next_event()
    if isinstance(event, CommandError):
        assert_valid_replies(server.send(event.reply))
        return
    assert event == Ehlo(name.decode())
    assert_valid_replies(server.send(server.ehlo_reply()))


FLOOD = 5 * 1024 * 1024
PIECE = 64 * 1024


def test_server_memory_stays_bounded_under_a_newline_free_flood():
    """RFC 5321 4.5.3.1.4 and 4.5.3.1.10: 5 MB without a line end costs no
    more than one read of memory, and gets one 500 once the LF comes."""
    server = ServerConnection()
    assert server.next_event() is PAUSED
    server.send(server.greeting())
    piece = b"A" * PIECE
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(FLOOD // PIECE):
            server.receive_data(piece)
            assert server.next_event() is NEED_DATA
            assert len(server._buffer) < 4096
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert peak < 4 * PIECE, peak
    server.receive_data(b"\r\nNOOP\r\n")
    error = server.next_event()
    assert isinstance(error, CommandError)
    assert (error.reply.code, error.reply.enhanced) == (500, "5.5.2")
    assert len(error.line) <= 1024
    server.send(error.reply)
    assert server.next_event() == Noop()


def test_server_memory_stays_bounded_under_a_newline_free_message():
    """RFC 5321 4.5.3.1.6 and RFC 1870: 5 MB of content without a line end
    is read and discarded in bounded memory and refused at its end."""
    server = ServerConnection()
    assert server.next_event() is PAUSED
    server.send(server.greeting())
    server.receive_data(opening)
    for reply in (None, Reply(250, "ok"), Reply(250, "ok"), Reply(354, "go")):
        server.next_event()
        server.send(reply or server.ehlo_reply())
    piece = b"B" * PIECE
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(FLOOD // PIECE):
            server.receive_data(piece)
            while (event := server.next_event()) is not NEED_DATA:
                assert isinstance(event, MessageChunk)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert peak < 4 * PIECE, peak
    server.receive_data(b"\r\n.\r\nNOOP\r\n")
    events = []
    while (event := server.next_event()) is not PAUSED:
        events.append(event)
    assert isinstance(events[-1], MessageRefused), events
    assert (events[-1].reply.code, events[-1].reply.enhanced) == (552, "5.5.2")
    assert all(isinstance(event, MessageChunk) for event in events[:-1])
    server.send(events[-1].reply)
    assert server.next_event() == Noop()


# --------------------------------------------------------------------------
# The client.


def client_after(stage: str) -> ClientConnection:
    """A client awaiting the greeting, the EHLO reply, or the replies to a
    pipelined MAIL, RCPT, DATA group."""
    client = ClientConnection()
    if stage == "greeting":
        return client
    client.receive_data(b"220 mx.example ESMTP\r\n")
    assert isinstance(client.next_event(), Reply)
    client.send(Ehlo("c.example"))
    if stage == "ehlo":
        return client
    client.receive_data(b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
    assert isinstance(client.next_event(), Reply)
    client.send(Mail(Address("a", "example.com")))
    client.send(Rcpt(Address("b", "example.com")))
    client.send(Data())
    return client


def receive_checked(client: ClientConnection, data: bytes, sizes: list[int]) -> list:
    """Feed ``data`` then the close; only RemoteProtocolError may come out of
    the engine, and once raised it is raised again."""
    events: list = []
    for piece in itertools.chain(pieces(data, sizes), [b""]):
        client.receive_data(piece)
        for _ in range(len(data) + 10):
            try:
                event = client.next_event()
            except RemoteProtocolError as error:
                with pytest.raises(RemoteProtocolError):
                    client.next_event()
                return [*events, error]
            if event is NEED_DATA:
                break
            events.append(event)
            if isinstance(event, ConnectionClosed):
                return events
            assert isinstance(event, Reply)
        else:  # pragma: no cover - an engine fault
            pytest.fail("next_event never returned NEED_DATA")
    pytest.fail("no ConnectionClosed after the peer closed")


stages = st.sampled_from(["greeting", "ehlo", "group"])
reply_like_lines = st.tuples(
    st.one_of(
        st.sampled_from([b"250", b"220", b"354", b"421", b"550", b"221", b"199", b"600", b"25"]),
        st.binary(min_size=3, max_size=3),
    ),
    st.sampled_from([b" ", b"-", b"", b"x"]),
    st.one_of(
        st.sampled_from(
            [
                b"PIPELINING",
                b"SIZE 100",
                b"SIZE \x00",
                b"AUTH=LOGIN PLAIN",
                b"8BITMIME x\x00y",
                b"X\x00 a",
                b"\xff\xfe",
                b"2.0.0 ok",
                b"5.1.1 no",
            ]
        ),
        st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b"")),
        st.integers(500, 2000).map(lambda size: b"t" * size),
    ),
    endings,
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(stage=stages, data=st.binary(max_size=2000), sizes=piece_sizes)
def test_client_survives_arbitrary_bytes(stage: str, data: bytes, sizes: list[int]):
    """RFC 5321 4.2: whatever a server sends, the client gives replies, or
    RemoteProtocolError, and nothing else."""
    receive_checked(client_after(stage), data, sizes)


extension_texts = st.one_of(
    st.sampled_from(
        [
            b"PIPELINING",
            b"SIZE",
            b"SIZE 0",
            b"SIZE -1",
            b"SIZE 99999999999999999999999",
            b"SIZE \x00",
            b"AUTH=LOGIN",
            b"AUTH LOGIN\x00PLAIN",
            b"ENHANCEDSTATUSCODES\x01",
            b"\xc3\x9fMTPUTF8",
            b"-X",
            b"X\x7f y\x1b",
            b"",
        ]
    ),
    st.binary(max_size=30).map(lambda raw: raw.replace(b"\n", b"").replace(b"\r", b"")),
)
ehlo_like_replies = st.lists(extension_texts, min_size=1, max_size=8).map(
    lambda texts: (
        b"250-mx.example\r\n"
        + b"".join(b"250-" + text + b"\r\n" for text in texts[:-1])
        + b"250 "
        + texts[-1]
        + b"\r\n"
    )
)


@settings(max_examples=500, deadline=None)
@given(
    stage=stages,
    first=st.one_of(st.just(b""), ehlo_like_replies),
    lines=st.lists(st.one_of(reply_like_lines, ehlo_like_replies), max_size=12),
    sizes=piece_sizes,
)
@example(stage="ehlo", first=b"250-mx.example\r\n250 SIZE a\x00b\r\n", lines=[], sizes=[7])
def test_client_survives_reply_like_junk(
    stage: str, first: bytes, lines: list[bytes], sizes: list[int]
):
    """RFC 5321 4.2 and 4.2.1, RFC 2034, and the EHLO keywords of 4.1.1.1:
    reply lines with bad codes, separators, NULs, invalid UTF-8, over-long
    text, and EHLO replies with strange extension parameters."""
    receive_checked(client_after(stage), first + b"".join(lines), sizes)


def test_nul_in_an_ehlo_extension_parameter_is_the_servers_fault():
    """RFC 5321 4.1.1.1 (ehlo-param is %d33-126): a NUL in an EHLO reply is
    the server's fault, so the client raises RemoteProtocolError (or skips
    the line), never LocalProtocolError, and does not lose its place."""
    client = client_after("ehlo")
    client.receive_data(b"250-mx.example\r\n250 SIZE a\x00b\r\n")
    try:
        reply = client.next_event()
    except RemoteProtocolError:
        return
    assert isinstance(reply, Reply)
    assert reply.answers == Ehlo("c.example")
    assert client.state is smtp_core.State.GREETED


def test_client_memory_stays_bounded_under_a_newline_free_flood():
    """RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; 5 MB without
    a line end costs bounded memory and is a RemoteProtocolError, as soon as
    the line is too long or at the latest when its end comes."""
    client = client_after("ehlo")
    piece = b"2" * PIECE
    failed = False
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(FLOOD // PIECE):
            client.receive_data(piece)
            try:
                assert client.next_event() is NEED_DATA
            except RemoteProtocolError:
                failed = True
                break
            assert len(client._buffer) < 4096
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert peak < 4 * PIECE, peak
    if not failed:
        client.receive_data(b"\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()


# --------------------------------------------------------------------------
# The core does no I/O.

IO_MODULES = frozenset(
    {
        "socket",
        "ssl",
        "select",
        "selectors",
        "asyncio",
        "threading",
        "multiprocessing",
        "subprocess",
        "time",
        "os",
        "trio",
        "anyio",
        "backends",
    }
)
PACKAGE = Path(smtp_core.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth of the
    file (inside functions and ``if TYPE_CHECKING`` too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level > 1:
                names.add("..")  # out of the package: towards backends
        elif isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name) and function.id == "__import__":
                names.add("__import__")
            if isinstance(function, ast.Attribute) and function.attr == "import_module":
                names.add("importlib.import_module")
    return names


def test_core_sources_import_no_io_module():
    """DESIGN.md: smtp_core imports only the standard library's pure parts;
    dependencies point one way, backends -> smtp_core, never back."""
    sources = sorted(PACKAGE.glob("*.py"))
    assert len(sources) >= 5
    for path in sources:
        found = imported_modules(path)
        assert not found & IO_MODULES, (path.name, found & IO_MODULES)
        assert not found & {"..", "__import__", "importlib.import_module"}, (path.name, found)


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    environment = dict(os.environ)
    root = str(PACKAGE.parent)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [root, environment.get("PYTHONPATH", "")])
    )
    output = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        check=True,
        cwd=root,
        env=environment,
        text=True,
        timeout=60,
    ).stdout
    return set(json.loads(output.splitlines()[-1]))


def test_importing_smtp_core_loads_no_io_module():
    """DESIGN.md: importing the core pulls in no I/O module, beyond what the
    interpreter itself loads before any user code runs."""
    baseline = loaded_after("pass")
    loaded = loaded_after("import smtp_core")
    assert "smtp_core" in loaded
    new = {name.split(".")[0] for name in loaded - baseline}
    assert not new & IO_MODULES, sorted(new & IO_MODULES)
