"""Benchmark of the smtp_core engine alone: no sockets, no threads, one process.

Run from the repository root::

    .venv/bin/python benchmarks/engine.py            # full run (~20 s)
    .venv/bin/python benchmarks/engine.py --quick    # smoke run (~1 s)
    .venv/bin/python benchmarks/engine.py --repeat 9
    .venv/bin/python benchmarks/engine.py --profile  # cProfile of the server DATA path

What is measured (median and best of ``--repeat`` runs, time.perf_counter,
MB = 2**20 bytes):

1. transactions: a ClientConnection wired to a ServerConnection. After the
   greeting and EHLO (not timed), each transaction is MAIL FROM, two RCPT TO
   and DATA sent by the client as one pipelined group; the server answers each
   command as next_event hands it out (250, 250, 250, 354); the client parses
   the four replies, sends a 1 KiB body as one MessageChunk plus MessageEnd;
   the server hands out the chunk and the end and answers 250; the client
   parses that reply. Only the loop over the transactions is timed.
   "sessions" does the same one message at a time over a new pair of
   connections each: greeting, EHLO, MAIL, one RCPT and DATA as a group, the
   1 KiB body, QUIT; set-up included, as for a client that sends one message
   a connection (most do).
2. server DATA: a ServerConnection in a DATA transaction is fed already
   dot-stuffed wire bytes in 64 KiB pieces, then CRLF.CRLF; every event is
   drained and the MessageChunk bytes counted. MB/s is of the message content
   (the un-stuffed body), which must come out whole: its length, and in an
   untimed first run its SHA-256, are checked. Two configurations: the
   defaults (1000-octet text lines, bare CR/LF refused) and no line limit.
   A row whose check fails prints FAILED and the script exits 1.
3. client DATA: a ClientConnection after its 354 is given the plain body in
   64 KiB MessageChunks, then MessageEnd; the output is counted and checked
   against an independent dot-stuffing of the body (length every run, SHA-256
   in the untimed first run).

The body is made of printable ASCII lines of 66 to 82 characters plus CRLF
(76 octets on average, as base64 and quoted-printable bodies have), with one
line in 40 starting with a dot, the odd line holding a lone dot and the odd
empty line. It is built from a seeded 1 MiB block, once, outside the timed
region, and held only as the list of 64 KiB pieces the run feeds, so a run
holds at most about one copy of the body at a time.

The server and client DATA rows are then run again on an attachment-shaped
body ("base64"): each 1 MiB block is three MIME header lines and a blank
line, then base64 of random bytes in lines of 76 characters and a CRLF.
Such runs of equal lines are what the content checks pass in strided
slices; the first body, lines of uneven length, is their worst case.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import hashlib
import platform
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import smtp_core
from smtp_core import (
    NEED_DATA,
    Address,
    ClientConnection,
    Data,
    Ehlo,
    Event,
    Mail,
    MessageChunk,
    MessageEnd,
    Quit,
    Rcpt,
    Reply,
    Sentinel,
    ServerConfig,
    ServerConnection,
    State,
)

MB = 2**20
KIB = 1024
PIECE = 64 * KIB
BLOCK = 1 * MB
SEED = 20240601

# Replies and events are immutable: build them once, as an application would
# keep its constant replies, so the loop measures the engine.
MAIL_OK = Reply(250, "2.1.0 Ok")
RCPT_OK = Reply(250, "2.1.5 Ok")
GO_AHEAD = Reply(354, "End data with <CR><LF>.<CR><LF>")
QUEUED = Reply(250, "2.0.0 Ok: queued")
BYE = Reply(221, "2.0.0 Bye")
EXPECTED_CODES = (250, 250, 250, 354)

# Printable ASCII (no CR, no LF) for the body text, indexed by a random byte.
_ALPHABET = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ "
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789,. "
)
_TABLE = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))


class BenchmarkError(RuntimeError):
    """The engine produced something other than what was fed: the figure would be meaningless."""


# -- data -------------------------------------------------------------------


def make_content(rng: random.Random, size: int) -> bytes:
    """Exactly ``size`` octets of CRLF-terminated lines (``size`` >= 2)."""
    text = rng.randbytes(size).translate(_TABLE)
    lines: list[bytes] = []
    total = 0
    position = 0
    while size - total > 100:
        roll = rng.random()
        if roll < 0.001:
            line = b"."  # a line holding a lone dot: stuffed to ".."
        elif roll < 0.006:
            line = b""
        else:
            length = rng.randint(66, 82)
            line = text[position : position + length]
            position += length
            if roll < 0.031:
                line = b"." + line[1:]  # one line in 40 starts with a dot
        lines.append(line + b"\r\n")
        total += len(line) + 2
    last = size - total - 2
    lines.append(text[position : position + last] + b"\r\n")
    content = b"".join(lines)
    assert len(content) == size and content.endswith(b"\r\n")
    return content


def make_attachment(rng: random.Random, size: int) -> bytes:
    """Exactly ``size`` octets shaped like a mail with an attachment: a few
    irregular MIME header lines, then base64 of random bytes in lines of 76
    characters (RFC 2045 6.8), then one shorter line to make up the size."""
    head = (
        b'Content-Type: application/octet-stream; name="report.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="report.pdf"\r\n\r\n'
    )
    lines = (size - len(head) - 2) // 78
    encoded = base64.b64encode(rng.randbytes(lines * 57))
    body = b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))
    last = size - len(head) - len(body) - 2
    content = head + body + encoded[:last] + b"\r\n"
    assert len(content) == size and content.endswith(b"\r\n")
    return content


def dot_stuff(content: bytes) -> bytes:
    """RFC 5321 4.5.2, written independently of the engine: content that starts
    and ends on a line boundary, with every line starting with a dot given one more."""
    stuffed = content.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if content.startswith(b".") else stuffed


def cut(parts: Iterable[bytes], size: int) -> list[bytes]:
    """The concatenation of ``parts`` in pieces of ``size`` octets (the last may be shorter),
    without ever holding the whole concatenation."""
    pieces: list[bytes] = []
    buffer = bytearray()
    for part in parts:
        buffer += part
        while len(buffer) >= size:
            pieces.append(bytes(buffer[:size]))
            del buffer[:size]
    if buffer:
        pieces.append(bytes(buffer))
    return pieces


@dataclass(frozen=True)
class Body:
    """A body of ``count`` copies of ``block`` (each begins and ends on a line boundary)."""

    block: bytes
    count: int

    @property
    def size(self) -> int:
        return len(self.block) * self.count

    def plain_pieces(self) -> list[bytes]:
        return cut((self.block for _ in range(self.count)), PIECE)

    def wire_pieces(self) -> list[bytes]:
        """The body dot-stuffed, then the end of data, as a client puts it on the wire."""
        stuffed = dot_stuff(self.block)
        parts = [stuffed] * self.count + [b".\r\n"]
        return cut(parts, PIECE)

    def wire_size(self) -> int:
        return len(dot_stuff(self.block)) * self.count + 3

    def digest(self, *, stuffed: bool) -> bytes:
        block = dot_stuff(self.block) if stuffed else self.block
        hasher = hashlib.sha256()
        for _ in range(self.count):
            hasher.update(block)
        if stuffed:
            hasher.update(b".\r\n")
        return hasher.digest()


def make_body(size: int, make: Callable[[random.Random, int], bytes] = make_content) -> Body:
    if size % BLOCK:
        raise SystemExit(f"the body size must be a whole number of MiB, got {size}")
    return Body(make(random.Random(SEED), BLOCK), size // BLOCK)


# -- engine set-up (never timed) ----------------------------------------------


def drain_replies(client: ClientConnection) -> list[Reply]:
    replies: list[Reply] = []
    while True:
        event = client.next_event()
        if not isinstance(event, Reply):
            if event is not NEED_DATA:
                raise BenchmarkError(f"client: expected a reply, got {event!r}")
            return replies
        replies.append(event)


def answer(server: ServerConnection, event: Event | Sentinel) -> Reply:
    if isinstance(event, Ehlo):
        return server.ehlo_reply()
    if isinstance(event, Mail):
        return MAIL_OK
    if isinstance(event, Rcpt):
        return RCPT_OK
    if isinstance(event, Data):
        return GO_AHEAD
    if isinstance(event, MessageEnd):
        return QUEUED
    raise BenchmarkError(f"server: unexpected event {event!r}")


def converse(client: ClientConnection, server: ServerConnection, *commands: Event) -> None:
    """The client sends ``commands`` as one group; the server answers each."""
    server.receive_data(b"".join(client.send(command) for command in commands))
    out = b""
    while (event := server.next_event()) is not NEED_DATA:
        out += server.send(answer(server, event))
    client.receive_data(out)
    replies = drain_replies(client)
    if len(replies) != len(commands) or any(reply.code >= 400 for reply in replies):
        raise BenchmarkError(f"set-up failed: {replies!r}")


def greeted_pair(server_config: ServerConfig | None) -> tuple[ClientConnection, ServerConnection]:
    """A new client and server after the greeting and EHLO."""
    server = ServerConnection(server_config)
    client = ClientConnection()
    server.next_event()  # PAUSED: the greeting is owed
    client.receive_data(server.send(server.greeting()))
    drain_replies(client)
    converse(client, server, Ehlo("client.example"))
    return client, server


def connected_pair(
    server_config: ServerConfig | None = None,
) -> tuple[ClientConnection, ServerConnection]:
    """A client and a server after the greeting and EHLO, PIPELINING in force."""
    client, server = greeted_pair(server_config)
    extensions = client.extensions
    if extensions is None or not extensions.pipelining:
        raise BenchmarkError("the server did not advertise PIPELINING")
    return client, server


SENDER = Mail(Address("sender", "example.com"))
RECIPIENTS = (Rcpt(Address("alice", "example.org")), Rcpt(Address("bob", "example.net")))


# -- 1. pipelined transactions ---------------------------------------------------


def run_transactions(count: int, body: bytes) -> float:
    """Seconds for ``count`` pipelined transactions of ``body`` (set-up not timed)."""
    client, server = connected_pair()
    group = (SENDER, *RECIPIENTS, Data())
    chunk = MessageChunk(body)
    end = MessageEnd()
    c_send, c_receive, c_next = client.send, client.receive_data, client.next_event
    s_send, s_receive, s_next = server.send, server.receive_data, server.next_event
    received = 0
    replies = 0
    gc.collect()
    start = time.perf_counter()
    for _ in range(count):
        # The client sends MAIL, RCPT, RCPT, DATA as one pipelined group.
        s_receive(
            b"".join([c_send(group[0]), c_send(group[1]), c_send(group[2]), c_send(group[3])])
        )
        # The server answers each command as it comes out of next_event.
        out: list[bytes] = []
        while True:
            event = s_next()
            if isinstance(event, Rcpt):
                out.append(s_send(RCPT_OK))
            elif isinstance(event, Mail):
                out.append(s_send(MAIL_OK))
            elif isinstance(event, Data):
                out.append(s_send(GO_AHEAD))
            elif event is NEED_DATA:
                break
            else:
                raise BenchmarkError(f"server: unexpected {event!r}")
        # The client parses the four replies.
        c_receive(b"".join(out))
        for code in EXPECTED_CODES:
            reply = c_next()
            if not isinstance(reply, Reply) or reply.code != code:
                raise BenchmarkError(f"client: expected {code}, got {reply!r}")
        if c_next() is not NEED_DATA:
            raise BenchmarkError("client: more replies than commands")
        # The 1 KiB body and its end; the server hands them out and answers 250.
        s_receive(c_send(chunk) + c_send(end))
        event = s_next()
        while isinstance(event, MessageChunk):
            received += len(event.data)
            event = s_next()
        if not isinstance(event, MessageEnd):
            raise BenchmarkError(f"server: expected MessageEnd, got {event!r}")
        c_receive(s_send(QUEUED))
        reply = c_next()
        if not isinstance(reply, Reply) or reply.code != 250:
            raise BenchmarkError(f"client: expected 250, got {reply!r}")
        replies += 5
    elapsed = time.perf_counter() - start
    if received != count * len(body) or replies != count * 5:
        raise BenchmarkError(f"server saw {received} body octets and the client {replies} replies")
    if server.state is not State.GREETED or client.state is not State.GREETED:
        raise BenchmarkError(f"states after the run: {server.state} / {client.state}")
    return elapsed


def run_sessions(count: int, body: bytes) -> float:
    """Seconds for ``count`` one-message sessions, each over a new pair."""
    config = ServerConfig()
    group = (SENDER, RECIPIENTS[0], Data())
    content = (MessageChunk(body), MessageEnd())
    gc.collect()
    start = time.perf_counter()
    for _ in range(count):
        client, server = greeted_pair(config)
        converse(client, server, *group)
        server.receive_data(b"".join([client.send(event) for event in content]))
        out = b""
        while (event := server.next_event()) is not NEED_DATA:
            if not isinstance(event, MessageChunk):
                out += server.send(answer(server, event))
        client.receive_data(out)
        server.receive_data(client.send(Quit()))
        if not isinstance(server.next_event(), Quit):
            raise BenchmarkError("server: expected QUIT")
        client.receive_data(server.send(BYE))
        codes = [client.next_event(), client.next_event()]
        if [getattr(reply, "code", reply) for reply in codes] != [250, 221]:
            raise BenchmarkError(f"client: expected 250 to the content, then 221: {codes!r}")
        if server.state is not State.CLOSED or client.state is not State.CLOSED:
            raise BenchmarkError(f"states after QUIT: {server.state} / {client.state}")
    return time.perf_counter() - start


# -- 2. server DATA path ---------------------------------------------------------


# The two server configurations measured: the defaults (text lines of at most
# 1000 octets, bare CR/LF refused) and the same without the line-length check.
# Neither has a message size limit: the body is larger than the default's.
SERVER_CONFIGS = {
    "default limits": ServerConfig(max_message_size=None),
    "no line limit": ServerConfig(max_message_size=None, max_text_line=None),
}


def server_in_data(config: ServerConfig) -> ServerConnection:
    """A server that has answered DATA 354."""
    client, server = connected_pair(config)
    converse(client, server, SENDER, RECIPIENTS[0], Data())
    if server.state is not State.IN_MESSAGE:
        raise BenchmarkError(f"server not in a message: {server.state}")
    return server


def feed_server(
    server: ServerConnection, pieces: Sequence[bytes], sink: Callable[[bytes], object] | None
) -> tuple[int, Event | Sentinel]:
    """Feed every piece, draining after each; the content octets and the last event."""
    receive, next_event = server.receive_data, server.next_event
    total = 0
    last: Event | Sentinel = NEED_DATA
    for piece in pieces:
        receive(piece)
        event = next_event()
        while isinstance(event, MessageChunk):
            total += len(event.data)
            if sink is not None:
                sink(event.data)
            event = next_event()
        if event is not NEED_DATA:
            last = event
    return total, last


def check_server(server: ServerConnection, total: int, last: Event | Sentinel, body: Body) -> None:
    if not isinstance(last, MessageEnd):
        raise BenchmarkError(f"server: the message ended with {last!r}, not MessageEnd")
    if total != body.size:
        raise BenchmarkError(f"server: {total} content octets out, {body.size} expected")
    server.send(QUEUED)
    if server.state is not State.GREETED:
        raise BenchmarkError(f"server: state {server.state} after the message")


def verify_server(config: ServerConfig, pieces: Sequence[bytes], body: Body) -> None:
    """Untimed: the content that comes out is the body, byte for byte."""
    server = server_in_data(config)
    hasher = hashlib.sha256()
    total, last = feed_server(server, pieces, hasher.update)
    check_server(server, total, last, body)
    if hasher.digest() != body.digest(stuffed=False):
        raise BenchmarkError("server: the content that came out differs from the body")


def run_server_data(config: ServerConfig, pieces: Sequence[bytes], body: Body) -> float:
    server = server_in_data(config)
    gc.collect()
    start = time.perf_counter()
    total, last = feed_server(server, pieces, None)
    elapsed = time.perf_counter() - start
    check_server(server, total, last, body)
    return elapsed


def server_rows(body: Body, repeat: int, shape: str = "") -> list[Row]:
    pieces = body.wire_pieces()
    workload = f"{body.size / MB:,.0f} MiB{shape}, 64 KiB pieces"
    rows = []
    for label, config in SERVER_CONFIGS.items():
        name = f"server DATA, {label}"

        def run(config: ServerConfig = config) -> float:
            return run_server_data(config, pieces, body)

        try:
            verify_server(config, pieces, body)  # also the warm-up
            rates = measure(repeat, run, body.size / MB)
        except BenchmarkError as error:
            rows.append(Row(name, workload, [], "MB/s", 1, str(error)))
        else:
            rows.append(Row(name, workload, rates, "MB/s", 1))
    return rows


# -- 3. client DATA path ---------------------------------------------------------


def client_in_data() -> ClientConnection:
    """A client whose DATA has been answered 354."""
    client, server = connected_pair(ServerConfig(max_message_size=None))
    converse(client, server, SENDER, RECIPIENTS[0], Data())
    if client.state is not State.IN_MESSAGE:
        raise BenchmarkError(f"client not in a message: {client.state}")
    return client


def feed_client(
    client: ClientConnection, pieces: Sequence[bytes], sink: Callable[[bytes], object] | None
) -> int:
    send = client.send
    total = 0
    for piece in pieces:
        data = send(MessageChunk(piece))
        total += len(data)
        if sink is not None:
            sink(data)
    data = send(MessageEnd())
    if sink is not None:
        sink(data)
    return total + len(data)


def verify_client(pieces: Sequence[bytes], body: Body) -> None:
    client = client_in_data()
    hasher = hashlib.sha256()
    total = feed_client(client, pieces, hasher.update)
    if total != body.wire_size():
        raise BenchmarkError(f"client: {total} octets out, {body.wire_size()} expected")
    if hasher.digest() != body.digest(stuffed=True):
        raise BenchmarkError("client: the output is not the dot-stuffed body")


def run_client_data(pieces: Sequence[bytes], body: Body) -> float:
    client = client_in_data()
    gc.collect()
    start = time.perf_counter()
    total = feed_client(client, pieces, None)
    elapsed = time.perf_counter() - start
    if total != body.wire_size():
        raise BenchmarkError(f"client: {total} octets out, {body.wire_size()} expected")
    return elapsed


def client_row(body: Body, repeat: int, shape: str = "") -> Row:
    pieces = body.plain_pieces()
    name, workload = "client DATA", f"{body.size / MB:,.0f} MiB{shape}, 64 KiB pieces"
    try:
        verify_client(pieces, body)  # also the warm-up
        rates = measure(repeat, lambda: run_client_data(pieces, body), body.size / MB)
    except BenchmarkError as error:
        return Row(name, workload, [], "MB/s", 1, str(error))
    return Row(name, workload, rates, "MB/s", 1)


def run_reference(pieces: Sequence[bytes], body: Body) -> float:
    """The floor no engine beats: one find for the end and one replace to
    un-stuff per piece, and nothing else (no limits, no events)."""
    gc.collect()
    start = time.perf_counter()
    total = 0
    for piece in pieces:
        piece.find(b"\r\n.\r\n")
        total += len(piece.replace(b"\r\n.", b"\r\n"))
    elapsed = time.perf_counter() - start
    if total < body.size:
        raise BenchmarkError(f"reference: {total} octets out, at least {body.size} expected")
    return elapsed


def reference_row(body: Body, repeat: int) -> Row:
    pieces = body.wire_pieces()
    name, workload = "reference: bytes find+replace", f"{body.size / MB:,.0f} MiB, 64 KiB pieces"
    try:
        rates = measure(repeat, lambda: run_reference(pieces, body), body.size / MB)
    except BenchmarkError as error:
        return Row(name, workload, [], "MB/s", 1, str(error))
    return Row(name, workload, rates, "MB/s", 1)


def transactions_row(count: int, repeat: int) -> Row:
    workload = f"{count:,} x (MAIL, 2 RCPT, DATA 1 KiB)"
    return _counted_row("pipelined transactions", workload, "tx/s", run_transactions, count, repeat)


def sessions_row(count: int, repeat: int) -> Row:
    workload = f"{count:,} x (greeting, EHLO, MAIL, RCPT, DATA 1 KiB, QUIT)"
    return _counted_row("sessions", workload, "sessions/s", run_sessions, count, repeat)


def _counted_row(
    name: str, workload: str, unit: str, run: Callable[[int, bytes], float], count: int, repeat: int
) -> Row:
    """``count`` runs of ``run`` with a 1 KiB message a second, after a warm-up."""
    message = make_content(random.Random(SEED + 1), KIB)
    try:
        run(min(count, 200), message)  # warm-up
        rates = measure(repeat, lambda: run(count, message), count)
    except BenchmarkError as error:
        return Row(name, workload, [], unit, 0, str(error))
    return Row(name, workload, rates, unit, 0)


# -- reporting -------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    workload: str
    rates: list[float]
    unit: str
    digits: int
    failure: str | None = None


def measure(repeat: int, run: Callable[[], float], amount: float) -> list[float]:
    """``amount`` per second for each of ``repeat`` runs."""
    return [amount / run() for _ in range(repeat)]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_header(repeat: int) -> None:
    implementation = platform.python_implementation()
    print(f"smtp_core {smtp_core.__version__} engine benchmark (no sockets, one process)")
    print(f"Python {platform.python_version()} ({implementation}, {platform.python_compiler()})")
    print(f"machine {platform.machine()}, {cpu_model()}, {platform.platform()}")
    print(f"median and best of {repeat} runs; MB = 2**20 bytes")
    print()


def print_table(rows: Sequence[Row]) -> None:
    cells = [("benchmark", "workload", "median", "best", "unit")]
    for row in rows:
        if row.failure is not None:
            cells.append((row.name, row.workload, "FAILED", "-", row.unit))
            continue
        cells.append(
            (
                row.name,
                row.workload,
                f"{statistics.median(row.rates):,.{row.digits}f}",
                f"{max(row.rates):,.{row.digits}f}",
                row.unit,
            )
        )
    widths = [max(len(cell[i]) for cell in cells) for i in range(5)]
    for number, cell in enumerate(cells):
        print(
            f"{cell[0]:<{widths[0]}}  {cell[1]:<{widths[1]}}  {cell[2]:>{widths[2]}}  "
            f"{cell[3]:>{widths[3]}}  {cell[4]}"
        )
        if number == 0:
            print("  ".join("-" * width for width in widths))
    for row in rows:
        if row.failure is not None:
            print(f"FAILED {row.name}: {row.failure}")


def profile_server(size: int, top: int) -> None:
    """cProfile of the server DATA path, in each configuration, on a ``size``-octet body."""
    body = make_body(size)
    pieces = body.wire_pieces()
    for label, config in SERVER_CONFIGS.items():
        server = server_in_data(config)
        profiler = cProfile.Profile()
        profiler.enable()
        total, last = feed_server(server, pieces, None)
        profiler.disable()
        print(f"== cProfile: server DATA, {label}: {size // MB} MiB body, {len(pieces)} pieces")
        try:
            check_server(server, total, last, body)
        except BenchmarkError as error:
            print(f"   (a broken run, not representative: {error})")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats(pstats.SortKey.TIME).print_stats(top)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (small inputs)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per figure (default 5)")
    parser.add_argument(
        "--profile", action="store_true", help="profile the server DATA path and exit"
    )
    args = parser.parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    transactions = 500 if args.quick else 5_000
    size = (4 if args.quick else 100) * MB

    if args.profile:
        profile_server(4 * MB if args.quick else 16 * MB, 15)
        return 0

    print_header(repeat)
    rows = [transactions_row(transactions, repeat), sessions_row(transactions // 2, repeat)]
    body = make_body(size)
    rows += server_rows(body, repeat)
    rows.append(client_row(body, repeat))
    rows.append(reference_row(body, repeat))
    attachment = make_body(size, make_attachment)
    rows += server_rows(attachment, repeat, " base64")
    rows.append(client_row(attachment, repeat, " base64"))

    stuffed = body.wire_size() - 3 - body.size
    print(
        f"body: {body.size / MB:,.0f} MiB of CRLF lines of 76 octets on average, "
        f"{stuffed:,} starting with a dot; {body.wire_size():,} octets on the wire"
    )
    print("each figure's output was checked: its length every run, its SHA-256 once")
    print()
    print_table(rows)
    return 1 if any(row.failure is not None for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
