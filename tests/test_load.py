"""Load on the asyncio and trio servers: slow clients held to the timeouts and
the connection limit, and clients vanishing at every point of a transaction
without a message lost, cut short or stored twice.

Everything runs on 127.0.0.1: the server in a thread of its own (through
``tests/servers.py``), the load generator on an asyncio loop in the test's
thread, the well-behaved clients (smtplib) in a few more threads. Every socket
operation has a timeout and every loop a bound, so a server that hangs fails
the test instead of stalling it.

The slow-client scenario runs once per (backend, connection limit) in a
module-scoped fixture and each property it must show is a test of its own, so
a failure names the property that broke.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import resource
import smtplib
import socket
import statistics
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers import serving

from backends._session import SessionLimits
from backends.maildir import MaildirHandler

HOST = "127.0.0.1"
BACKENDS = ("asyncio", "trio")
IO_TIMEOUT = 10.0
"""Any single read, write or connect of a client; far above what a healthy
server needs, so hitting it means a hang."""

# The slow-client scenario. Short RFC 5321 4.5.3.2 timeouts keep it quick.
COMMAND_TIMEOUT = 2.0
DATA_BLOCK_TIMEOUT = 2.0
TRICKLERS = 500
TRICKLE_GAP = (0.1, 0.5)
"""Seconds between two bytes of a trickler: always below either timeout."""
DATA_TRICKLE_SPAN = 0.6
"""How long a slow-DATA trickler drips content before it stalls."""
CUT_SLACK = 2.0
"""How late after its timeout a trickler may hear 421 and see the close."""
CUT_EARLY = 0.1
"""How early (timer granularity): measured from before the client's last
request, so from no later than the server started its timer."""
LONGEST_HOLD = max(COMMAND_TIMEOUT, DATA_TRICKLE_SPAN + TRICKLE_GAP[1] + DATA_BLOCK_TIMEOUT)
"""The longest a trickler may lawfully keep its connection slot."""
GIVE_UP_MARGIN = 0.5
"""A trickler stops waiting for its 421 this long after it should have come."""
CONNECT_GATE = 50
"""Connections being opened at once, so that no listen backlog overflows
(a dropped SYN would add a second of retransmission to a greeting)."""
LIMIT_BELOW, LIMIT_ABOVE = 100, 600
NORMAL_CLIENTS, NORMAL_MESSAGES = 4, 5
NORMAL_LATENCY = 1.5
"""A well-behaved client's message (connect to QUIT) when the server has room:
below COMMAND_TIMEOUT, so it cannot have queued behind a trickler."""
GREETING_LATENCY = 3.0
"""Connect to first reply, 220 or the over-the-limit 421: generous, for a
loaded 2-core machine running both ends; the 421 must not wait for a slot."""
MEMORY_PER_CONNECTION = 128 << 10
"""Growth of the process's resident memory per trickler at the peak, over
what it was before the first run of this module (so a leak from one run to
the next adds up); both ends of every connection live in this process, so
the server's share is less. RSS rather than tracemalloc, whose bookkeeping
slows the run 2-3 times on a loaded machine."""
MEMORY_SAMPLE = 0.05
"""Seconds between two samples of the resident memory."""
FILE_DESCRIPTORS = 2 * (TRICKLERS + NORMAL_CLIENTS) + 200


def now() -> float:
    return time.monotonic()


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors() -> Iterator[None]:
    """Both ends of 500+ connections live in this process: raise the soft
    RLIMIT_NOFILE to the hard limit, and skip when even that is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else max(soft, FILE_DESCRIPTORS)
    if ceiling < FILE_DESCRIPTORS:
        pytest.skip(
            f"load tests need {FILE_DESCRIPTORS} file descriptors in one process; "
            f"the hard RLIMIT_NOFILE is {hard}"
        )
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def describe(error: BaseException) -> str:
    """An exception, and the leaves of an exception group (trio's nurseries
    raise those)."""
    inner = getattr(error, "exceptions", None)
    if inner:
        return f"{type(error).__name__}[{', '.join(describe(leaf) for leaf in inner)}]"
    return f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def thread_crashes() -> Iterator[list[str]]:
    """Collects what kills a thread meanwhile (a server's), so that a failure
    names the cause rather than only its consequence."""
    crashes: list[str] = []
    previous = threading.excepthook

    def record(args: Any) -> None:
        crashes.append(f"{args.thread.name}: {describe(args.exc_value)}")
        previous(args)

    threading.excepthook = record
    try:
        yield crashes
    finally:
        threading.excepthook = previous


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One whole reply (every line of a multiline one); b"" if the server
    closed first."""
    reply = b""
    for _ in range(100):  # no reply of ours has more lines
        line = await asyncio.wait_for(reader.readline(), IO_TIMEOUT)
        reply += line
        if not line.endswith(b"\n") or line[3:4] != b"-":
            return reply
    raise AssertionError(f"a reply of more than 100 lines: {reply[:200]!r}")


async def command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes, expected: bytes
) -> None:
    writer.write(line)
    await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
    reply = await read_reply(reader)
    if not reply.startswith(expected):
        raise AssertionError(f"{line.strip()!r} got {reply[:120]!r}, not {expected!r}")


async def close(writer: asyncio.StreamWriter, reset: bool = False) -> None:
    """Close, with a FIN, or with a RST (SO_LINGER 0) as a killed process or a
    dropped network does."""
    if reset:
        sock = writer.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), IO_TIMEOUT)


# -- 500 slow clients ---------------------------------------------------------


@dataclass
class Trickler:
    """One slow client, and what it saw (times from ``now()``)."""

    kind: str
    """"ehlo" drips its first command, "rcpt" drips RCPT after a quick EHLO
    and MAIL, "data" drips message content after a quick DATA, then stalls."""
    connected_at: float | None = None
    first_reply: bytes = b""
    first_reply_at: float | None = None
    clock_from: float | None = None
    """The earliest the server's timer can have started: before the request
    its last reply answered (the connect, MAIL), or the last byte of content."""
    clock_seen: float | None = None
    """The latest it can have started: when that reply was read."""
    bytes_sent: int = 0
    cut_reply: bytes = b""
    cut_at: float | None = None
    closed_at: float | None = None
    error: str | None = None

    @property
    def is_admitted(self) -> bool:
        return self.first_reply.startswith(b"220")

    @property
    def timeout(self) -> float:
        return DATA_BLOCK_TIMEOUT if self.kind == "data" else COMMAND_TIMEOUT

    @property
    def held_at_least(self) -> float | None:
        """Seconds the server waited at least before its 421."""
        if self.cut_at is None or self.clock_from is None:
            return None
        return self.cut_at - self.clock_from

    @property
    def held_at_most(self) -> float | None:
        """Seconds the server waited at most (plus the client's own lag)."""
        if self.cut_at is None or self.clock_seen is None:
            return None
        return self.cut_at - self.clock_seen


@dataclass
class NormalMessage:
    number: int
    latency: float | None = None
    attempts: int = 0
    refused_with_421: int = 0
    error: str | None = None


@dataclass
class LoadRun:
    backend: str
    max_connections: int
    tricklers: list[Trickler]
    normal: list[NormalMessage]
    delivered: list[bytes]
    memory_baseline: int | None
    memory_peak: int | None
    memory_at_full_load: int | None
    seconds: float
    probe_greeting: bytes
    server_failures: list[str]

    def summary(self) -> str:
        admitted = [t for t in self.tricklers if t.is_admitted]
        shortest = [t.held_at_least for t in admitted if t.held_at_least is not None]
        longest = [t.held_at_most for t in admitted if t.held_at_most is not None]
        latencies = [m.latency for m in self.normal if m.latency is not None]
        greetings = [
            t.first_reply_at - t.connected_at
            for t in self.tricklers
            if t.first_reply_at is not None and t.connected_at is not None
        ]
        return (
            f"{self.backend}, max_connections={self.max_connections}: "
            f"first reply median {statistics.median(greetings) if greetings else 0:.3f} s "
            f"max {max(greetings, default=0):.3f} s; "
            f"{len(admitted)} tricklers admitted, {len(self.tricklers) - len(admitted)} refused; "
            f"{len(longest)} cut off, held {min(shortest, default=0):.2f}-"
            f"{max(longest, default=0):.2f} s; "
            f"RSS {_mebibytes(self.memory_at_full_load, self.memory_baseline)} with all "
            f"connected, peak {_mebibytes(self.memory_peak, self.memory_baseline)} "
            f"(bound +{TRICKLERS * MEMORY_PER_CONNECTION / 2**20:.1f} MiB); "
            f"normal messages {len(latencies)}/{len(self.normal)} "
            f"({sum(m.refused_with_421 for m in self.normal)} connects refused), latency "
            f"median {statistics.median(latencies) if latencies else 0:.3f} s "
            f"max {max(latencies, default=0):.3f} s; run {self.seconds:.1f} s"
        )


def resident_memory() -> int | None:
    """This process's resident set size in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _mebibytes(value: int | None, baseline: int | None) -> str:
    if value is None or baseline is None:
        return "unmeasured"
    return f"+{(value - baseline) / 2**20:.1f} MiB"


class Collector:
    """Keeps each delivered message's first line (its id)."""

    def __init__(self) -> None:
        self.delivered: list[bytes] = []

    def on_message(self, session: Any, envelope: Any, body: Any) -> None:
        self.delivered.append(body.readline().strip())


def _slow_line(rng: random.Random, verb: str) -> bytes:
    # Longer than any trickle can finish within the give-up time (at most
    # 1 / 0.1 bytes a second), shorter than the 512-octet command line limit.
    name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(200))
    if verb == "EHLO":
        return f"EHLO {name}.example\r\n".encode()
    return f"RCPT TO:<{name}@example.org>\r\n".encode()


async def _trickle(
    record: Trickler, port: int, rng: random.Random, gate: asyncio.Semaphore
) -> None:
    """Open a connection and drip bytes into it until the server cuts it off
    (or a give-up time well past when it should have)."""
    async with gate:
        record.connected_at = now()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), IO_TIMEOUT)
        try:
            record.first_reply = await read_reply(reader)
        except BaseException:
            await close(writer)
            raise
        record.first_reply_at = now()
    try:
        if not record.is_admitted:
            # Over the limit: 421 4.7.0, then the server closes at once.
            await asyncio.wait_for(reader.read(), IO_TIMEOUT)
            record.closed_at = now()
            return
        record.clock_from, record.clock_seen = record.connected_at, record.first_reply_at
        if record.kind in ("rcpt", "data"):
            await command(reader, writer, b"EHLO trickler.load.test\r\n", b"250")
            record.clock_from = now()
            await command(reader, writer, b"MAIL FROM:<slow@load.test>\r\n", b"250")
            record.clock_seen = now()
        if record.kind == "data":
            await command(reader, writer, b"RCPT TO:<rcpt@load.test>\r\n", b"250")
            await command(reader, writer, b"DATA\r\n", b"354")
            payload = b"X-Slow: yes\r\n\r\n" + b"dripping content, never finished\r\n" * 20
        else:
            payload = _slow_line(rng, "EHLO" if record.kind == "ehlo" else "RCPT")
        await _drip(record, reader, writer, payload, rng)
    except (OSError, asyncio.TimeoutError, AssertionError) as error:
        record.error = f"{type(error).__name__}: {error}"
    finally:
        await close(writer)


async def _drip(
    record: Trickler,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    payload: bytes,
    rng: random.Random,
) -> None:
    assert record.clock_seen is not None

    async def watch() -> None:
        # The only thing the server may say now is its 421, then close.
        record.cut_reply = await reader.readline()
        record.cut_at = now()
        # A server closing with our last byte unread resets the connection.
        with contextlib.suppress(ConnectionResetError):
            await reader.read()
        record.closed_at = now()

    watcher = asyncio.ensure_future(watch())
    try:
        dripping_from = now()
        give_up = record.clock_seen + LONGEST_HOLD + CUT_SLACK + GIVE_UP_MARGIN
        for byte in payload:
            if watcher.done() or now() >= give_up:
                break
            if record.kind == "data" and now() - dripping_from >= DATA_TRICKLE_SPAN:
                break  # and stall: the data block timeout runs from the last byte
            before = now()  # the server may take the byte before write() returns
            writer.write(bytes([byte]))
            record.bytes_sent += 1
            if record.kind == "data":
                record.clock_from, record.clock_seen = before, now()
            await asyncio.wait([watcher], timeout=rng.uniform(*TRICKLE_GAP))
        if not watcher.done():
            await asyncio.wait([watcher], timeout=max(0.0, give_up - now()))
        if watcher.done() and watcher.exception() is not None:
            error = watcher.exception()
            record.error = f"{type(error).__name__}: {error}"
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher


def _send_normal(port: int, message: NormalMessage, deadline: float) -> None:
    """One message through smtplib on a fresh connection; a 421 at connect
    (server full) is retried, as an MTA would, until ``deadline``."""
    started = now()
    content = (
        f"X-Normal-Id: normal-{message.number}\r\nSubject: through the load\r\n\r\n"
        "A well-behaved client.\r\n"
    ).encode()
    while now() < deadline:
        message.attempts += 1
        try:
            with smtplib.SMTP(HOST, port, timeout=IO_TIMEOUT) as client:
                client.sendmail("normal@load.test", ["rcpt@load.test"], content)
        except smtplib.SMTPConnectError as error:
            if error.smtp_code != 421:
                message.error = repr(error)
                return
            message.refused_with_421 += 1
            time.sleep(0.05)
            continue
        except (OSError, smtplib.SMTPException) as error:
            message.error = repr(error)
            return
        message.latency = now() - started
        return
    message.error = "no slot before the deadline"


def _normal_client(port: int, messages: list[NormalMessage], deadline: float) -> None:
    for message in messages:
        _send_normal(port, message, deadline)


def _probe(port: int) -> bytes:
    """The greeting a new client gets once the load is over (then QUIT)."""
    try:
        with socket.create_connection((HOST, port), IO_TIMEOUT) as sock:
            sock.settimeout(IO_TIMEOUT)
            greeting = sock.recv(512)
            sock.sendall(b"QUIT\r\n")
            sock.recv(512)
            return greeting
    except OSError as error:
        return repr(error).encode()


@dataclass
class MemorySamples:
    baseline: int | None
    peak: int | None = None
    at_full_load: int | None = None

    def sample(self) -> None:
        value = resident_memory()
        if value is not None:
            self.peak = value if self.peak is None else max(self.peak, value)


async def _load(
    port: int, seed: int, memory: MemorySamples
) -> tuple[list[Trickler], list[NormalMessage]]:
    rng = random.Random(seed)
    kinds = ("ehlo", "rcpt", "data")
    tricklers = [Trickler(kinds[index % 3]) for index in range(TRICKLERS)]
    rng.shuffle(tricklers)
    gate = asyncio.Semaphore(CONNECT_GATE)
    tasks = [
        asyncio.ensure_future(_trickle(record, port, random.Random(rng.random()), gate))
        for record in tricklers
    ]
    # The well-behaved clients come once every trickler is in (or refused).
    for _ in range(int(60 / MEMORY_SAMPLE)):
        memory.sample()
        if all(
            record.first_reply_at is not None or task.done()
            for record, task in zip(tricklers, tasks, strict=True)
        ):
            break
        await asyncio.sleep(MEMORY_SAMPLE)
    memory.at_full_load = resident_memory()
    normal = [NormalMessage(number) for number in range(NORMAL_CLIENTS * NORMAL_MESSAGES)]
    deadline = now() + LONGEST_HOLD + CUT_SLACK + 5.0
    threads = [
        asyncio.to_thread(_normal_client, port, normal[index::NORMAL_CLIENTS], deadline)
        for index in range(NORMAL_CLIENTS)
    ]
    everything = asyncio.gather(*tasks, *threads, return_exceptions=True)
    for _ in range(int(60 / MEMORY_SAMPLE)):
        memory.sample()
        if everything.done():
            break
        await asyncio.sleep(MEMORY_SAMPLE)
    outcomes = await asyncio.wait_for(everything, IO_TIMEOUT)
    for record, outcome in zip(tricklers, outcomes, strict=False):
        if isinstance(outcome, BaseException) and record.error is None:
            record.error = f"{type(outcome).__name__}: {outcome}"
    return tricklers, normal


@pytest.fixture(scope="module")
def memory_before() -> int | None:
    """The resident memory before the first slow-client run."""
    return resident_memory()


@pytest.fixture(
    scope="module",
    params=[(name, limit) for name in BACKENDS for limit in (LIMIT_BELOW, LIMIT_ABOVE)],
    ids=lambda param: f"{param[0]}-max{param[1]}",
)
def slow_clients(request: pytest.FixtureRequest, memory_before: int | None) -> LoadRun:
    """500 tricklers and 20 smtplib messages against one server (see the
    tests below for what each must show)."""
    name, max_connections = request.param
    handler = Collector()
    limits = SessionLimits(
        command_timeout=COMMAND_TIMEOUT,
        data_block_timeout=DATA_BLOCK_TIMEOUT,
        max_connections=max_connections,
    )
    started = now()
    with thread_crashes() as crashes:
        server = serving(name, handler, limits=limits)
        port = server.__enter__()
        try:
            memory = MemorySamples(memory_before)
            tricklers, normal = asyncio.run(_load(port, 5321, memory))
            probe = _probe(port)
            time.sleep(0.5)  # the last sessions close before the teardown cancels them
        finally:
            try:
                server.__exit__(None, None, None)
            except Exception as error:
                crashes.append(f"stopping the server: {describe(error)}")
    run = LoadRun(
        name,
        max_connections,
        tricklers,
        normal,
        handler.delivered,
        memory.baseline,
        memory.peak,
        memory.at_full_load,
        now() - started,
        probe,
        crashes,
    )
    print(run.summary())
    return run


def test_tricklers_are_cut_off_with_421_4_4_2_at_the_timeout(slow_clients: LoadRun):
    """RFC 5321 4.5.3.2.7: the server awaits the next *command* for the command
    timeout; bytes dripped into a command that never ends do not extend it
    (a slowloris holds no connection past the timeout). RFC 5321 4.5.3.2.6:
    content that stalls is cut off a data block timeout after its last byte.
    Both get 421 4.4.2 and the close, no later than timeout + CUT_SLACK."""
    run = slow_clients
    admitted = [t for t in run.tricklers if t.is_admitted]
    assert admitted, run.summary()
    problems = []
    for record in admitted:
        shortest, longest = record.held_at_least, record.held_at_most
        if record.error is not None:
            problems.append(f"{record.kind}: {record.error}")
        elif shortest is None or longest is None:
            problems.append(
                f"{record.kind}: no 421 within {LONGEST_HOLD + CUT_SLACK + GIVE_UP_MARGIN:.1f} s "
                f"(timeout {record.timeout} s) while dripping a byte every "
                f"{TRICKLE_GAP[0]}-{TRICKLE_GAP[1]} s"
            )
        elif not record.cut_reply.startswith(b"421 4.4.2"):
            problems.append(f"{record.kind}: cut off with {record.cut_reply!r}")
        elif shortest < record.timeout - CUT_EARLY:
            problems.append(f"{record.kind}: cut off after {shortest:.2f} s, before the timeout")
        elif longest > record.timeout + CUT_SLACK:
            problems.append(f"{record.kind}: cut off after {longest:.2f} s, too late")
        elif record.closed_at is None or record.closed_at - record.clock_seen > (  # type: ignore[operator]
            record.timeout + CUT_SLACK
        ):
            problems.append(f"{record.kind}: not closed after its 421")
    by_problem = Counter(problems)
    assert not problems, (
        f"{len(problems)} of {len(admitted)} admitted tricklers misbehaved ({run.summary()}): "
        + "; ".join(f"{count} x {text}" for text, count in by_problem.most_common(6))
    )


def test_connections_over_the_limit_get_421_4_7_0_at_once(slow_clients: LoadRun):
    """RFC 5321 3.8/4.3.2: a server over its SessionLimits.max_connections
    answers 421 4.7.0 as its greeting and closes; under the limit all get 220."""
    run = slow_clients
    refused = [t for t in run.tricklers if not t.is_admitted]
    assert all(t.first_reply_at is not None for t in run.tricklers), [
        t.error for t in run.tricklers if t.first_reply_at is None
    ][:5]
    slow_greetings = [
        t
        for t in run.tricklers
        if t.first_reply_at - t.connected_at > GREETING_LATENCY  # type: ignore[operator]
    ]
    assert not slow_greetings, f"{len(slow_greetings)} first replies took > {GREETING_LATENCY} s"
    if run.max_connections >= TRICKLERS:
        assert not refused, f"{len(refused)} refused under the limit: {refused[0].first_reply!r}"
        return
    assert all(t.first_reply.startswith(b"421 4.7.0") for t in refused), {
        t.first_reply for t in refused
    }
    assert all(t.closed_at is not None for t in refused), "a refused connection stayed open"
    # Slots free up only when an admitted trickler is gone, so at most
    # max_connections plus those gone before the last greeting got in.
    last_greeting = max(t.first_reply_at for t in run.tricklers)  # type: ignore[type-var]
    gone_early = sum(
        1 for t in run.tricklers if t.is_admitted and t.closed_at and t.closed_at < last_greeting
    )
    admitted = TRICKLERS - len(refused)
    assert run.max_connections <= admitted <= run.max_connections + gone_early, run.summary()


def test_server_memory_stays_bounded(slow_clients: LoadRun):
    """500 slow sessions cost a bounded amount of memory: the resident memory
    of this process (the server and both ends of every connection) never
    rises more than MEMORY_PER_CONNECTION (128 KiB) per trickler, 62.5 MiB
    in all, above what it was before the first of these runs."""
    run = slow_clients
    if run.memory_baseline is None or run.memory_peak is None:
        pytest.skip("no /proc/self/statm to read the resident memory from")
    growth = run.memory_peak - run.memory_baseline
    assert growth <= TRICKLERS * MEMORY_PER_CONNECTION, run.summary()


def test_normal_clients_get_through_with_bounded_latency(slow_clients: LoadRun):
    """Meanwhile smtplib's messages all arrive, once each. With room under
    the limit each takes under NORMAL_LATENCY (less than the command timeout,
    so none waited for a trickler); with the server full they are refused
    with 421 and get in once the timeouts have freed slots, within
    LONGEST_HOLD + CUT_SLACK + NORMAL_LATENCY. Nothing a trickler sent is
    delivered (no message without its end of data: RFC 5321 4.1.1.4)."""
    run = slow_clients
    errors = [m.error for m in run.normal if m.error is not None]
    assert not errors, f"{len(errors)} normal messages failed: {errors[:3]} ({run.summary()})"
    expected = sorted(f"X-Normal-Id: normal-{m.number}".encode() for m in run.normal)
    assert sorted(run.delivered) == expected
    bound = NORMAL_LATENCY
    if run.max_connections < TRICKLERS:
        bound += LONGEST_HOLD + CUT_SLACK
    slowest = max(m.latency for m in run.normal)  # type: ignore[type-var]
    assert slowest <= bound, run.summary()
    assert run.probe_greeting.startswith(b"220"), (run.probe_greeting, run.summary())
    assert not run.server_failures, run.server_failures


# -- 1,000 messages, clients vanishing at random points --------------------------

MESSAGES = 1000
CONCURRENT_CLIENTS = 50
CUTS = {
    # where the last message of a connection stops: weight
    "before_mail": 1,
    "after_rcpt": 1,
    "mid_content": 2,
    "in_terminator": 2,
    "after_dot_unread": 2,
    "after_250": 2,
    "quit": 2,
}
TEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_=+!?<>()"


@dataclass
class Message:
    number: int
    content: bytes
    cut: str = "quit"
    cut_at: int = 0
    """For a cut in the content or terminator: how many wire bytes go out."""
    reset: bool = False
    outcome: str = "unsent"
    """unsent, cut_before_dot, dot_sent (reply never read), acked, or error."""
    error: str | None = None

    @property
    def id(self) -> str:
        return f"m{self.number:04d}"

    @property
    def sender(self) -> str:
        return f"sender-{self.number:04d}@load.test"

    @property
    def wire(self) -> bytes:
        """The content dot-stuffed (RFC 5321 4.5.2), then the end of data."""
        stuffed = re.sub(rb"(?m)^\.", b"..", self.content)
        return stuffed + b".\r\n"


def _content(rng: random.Random, number: int) -> bytes:
    lines = [
        f"X-Load-Id: m{number:04d}",
        "From: <sender@load.test>",
        "To: <rcpt@load.test>",
        f"Subject: message {number}",
        "",
    ]
    # Mostly small; one in twenty big enough to span several 64 KiB reads.
    count = rng.randint(500, 2500) if rng.random() < 0.05 else rng.randint(1, 40)
    for _ in range(count):
        shape = rng.random()
        if shape < 0.1:
            lines.append("")
        elif shape < 0.2:
            lines.append("." + "".join(rng.choices(TEXT, k=rng.randint(0, 60))))
        elif shape < 0.22:
            lines.append("".join(rng.choices(TEXT, k=998)))
        else:
            lines.append("".join(rng.choices(TEXT, k=rng.randint(1, 120))))
    return ("\r\n".join(lines) + "\r\n").encode()


def _plan(seed: int) -> list[list[Message]]:
    """Connections, each carrying 1-3 messages: all but the last complete,
    the last stops at a seeded random point."""
    rng = random.Random(seed)
    messages = [Message(number, _content(rng, number)) for number in range(MESSAGES)]
    connections: list[list[Message]] = []
    position = 0
    while position < len(messages):
        batch = messages[position : position + rng.randint(1, 3)]
        position += len(batch)
        last = batch[-1]
        last.cut = rng.choices(list(CUTS), weights=list(CUTS.values()))[0]
        last.reset = rng.random() < 0.5
        end = len(last.wire) - len(b"\r\n.\r\n")
        if last.cut == "mid_content":
            last.cut_at = rng.randint(0, end - 1)
        elif last.cut == "in_terminator":
            # Right before the final CRLF.CRLF, or inside it.
            last.cut_at = end + rng.randint(0, 4)
        connections.append(batch)
    return connections


async def _deliver(batch: list[Message], port: int) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), IO_TIMEOUT)
    # drain() then waits until the kernel has every byte: a cut is exact.
    writer.transport.set_write_buffer_limits(0)
    reset = False
    try:
        reply = await read_reply(reader)
        assert reply.startswith(b"220"), reply
        await command(reader, writer, b"EHLO client.load.test\r\n", b"250")
        for message in batch:
            reset = message.reset
            if message.cut == "before_mail":
                return
            await command(reader, writer, f"MAIL FROM:<{message.sender}>\r\n".encode(), b"250")
            await command(reader, writer, b"RCPT TO:<rcpt@load.test>\r\n", b"250")
            if message.cut == "after_rcpt":
                message.outcome = "cut_before_dot"
                return
            await command(reader, writer, b"DATA\r\n", b"354")
            if message.cut in ("mid_content", "in_terminator"):
                writer.write(message.wire[: message.cut_at])
                await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
                message.outcome = "cut_before_dot"
                return
            writer.write(message.wire)
            await asyncio.wait_for(writer.drain(), IO_TIMEOUT)
            message.outcome = "dot_sent"
            if message.cut == "after_dot_unread":
                return
            reply = await read_reply(reader)
            if not reply.startswith(b"250"):
                message.outcome = "error"
                message.error = f"end of data got {reply[:100]!r}"
                return
            message.outcome = "acked"
            if message.cut == "after_250":
                return
        await command(reader, writer, b"QUIT\r\n", b"221")
    except (OSError, asyncio.TimeoutError, AssertionError) as error:
        for message in batch:
            if message.outcome in ("unsent", "dot_sent") and message.error is None:
                message.error = f"{type(error).__name__}: {error}"
        raise
    finally:
        await close(writer, reset)


async def _deliver_all(connections: list[list[Message]], port: int) -> list[str]:
    pending = iter(connections)
    failures: list[str] = []

    async def client() -> None:
        for batch in pending:
            try:
                await _deliver(batch, port)
            except (OSError, asyncio.TimeoutError, AssertionError) as error:
                failures.append(f"{type(error).__name__}: {error}")

    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(CONCURRENT_CLIENTS))), 90)
    return failures


TRACE = re.compile(
    rb"Return-Path: <(?P<sender>[^>\n]*)>\n"
    rb"Received: from client\.load\.test \(\[127\.0\.0\.1\]\)\n"
    rb"\tby localhost \(smtp-core\) with ESMTP\n"
    rb"\tfor <rcpt@load\.test>; [^\n]+\n"
)


@pytest.mark.parametrize("name", BACKENDS)
def test_clients_vanishing_at_random_points_lose_nothing_and_duplicate_nothing(
    name: str, tmp_path: Path
):
    """RFC 5321 6.1: once the server has sent 250 for the end of data it is
    responsible for the message (none lost), and a message is delivered at
    most once (no duplicate); RFC 5321 4.1.1.4: a message whose end of data
    never came is not delivered (none partial).

    1,000 messages from 50 clients at a time; each connection sends 1-3, the
    last stopping at a seeded random point (before MAIL, after RCPT, in the
    content, right before or inside the final CRLF.CRLF, right after it with
    the reply unread, after the 250, or after QUIT), with a FIN or a RST. The
    Maildir then holds exactly: every acknowledged message once, byte for
    byte (behind the Return-Path and Received the handler adds, with CRLF
    stored as LF as the mailbox module writes), maybe a message whose reply
    went unread (complete, once), and nothing else."""
    connections = _plan(seed=6001)
    messages = {message.id: message for batch in connections for message in batch}
    maildir = tmp_path / "Maildir"
    handler = MaildirHandler(maildir, echo=lambda line: None)
    started = now()
    with thread_crashes() as crashes:
        server = serving(name, handler)
        port = server.__enter__()
        teardown_error = None
        try:
            failures = asyncio.run(_deliver_all(connections, port))
        finally:
            try:
                server.__exit__(None, None, None)
            except Exception as error:
                teardown_error = describe(error)
    elapsed = now() - started

    stored: Counter[str] = Counter()
    wrong: list[str] = []
    for path in sorted((maildir / "new").iterdir()):
        data = path.read_bytes()
        head = TRACE.match(data)
        found = re.search(rb"^X-Load-Id: (m\d{4})\n", data[head.end() :] if head else data)
        if head is None or found is None or found.group(1).decode() not in messages:
            wrong.append(f"{path.name}: unrecognised {data[:160]!r}")
            continue
        message = messages[found.group(1).decode()]
        stored[message.id] += 1
        if head.group("sender").decode() != message.sender:
            wrong.append(f"{message.id}: Return-Path {head.group('sender')!r}")
        if data[head.end() :] != message.content.replace(b"\r\n", b"\n"):
            wrong.append(f"{message.id}: stored {len(data) - head.end()} bytes, not as sent")

    outcomes = Counter(message.outcome for message in messages.values())
    acked = {m.id for m in messages.values() if m.outcome == "acked"}
    unread = {m.id for m in messages.values() if m.outcome == "dot_sent"}
    cut = {m.id for m in messages.values() if m.outcome in ("cut_before_dot", "unsent")}
    summary = (
        f"{name}: {len(connections)} connections, outcomes {dict(outcomes)}, "
        f"{sum(stored.values())} stored ({len(unread & set(stored))} of {len(unread)} "
        f"with the reply unread), {elapsed:.1f} s"
    )
    print(summary)
    errors = [f"{m.id} ({m.cut}): {m.error}" for m in messages.values() if m.error]
    duplicates = {key: count for key, count in stored.items() if count > 1}
    leftovers = [path.name for sub in ("tmp", "cur") for path in (maildir / sub).iterdir()]
    checks = {
        "the server thread died": crashes,
        "stopping the server failed": [teardown_error] if teardown_error else [],
        "connections failed": failures,
        "messages failed": errors,
        "stored messages not as sent": wrong,
        "stored more than once": sorted(duplicates),
        "acknowledged with 250, not stored": sorted(acked - set(stored)),
        "cut before the final dot, stored": sorted(cut & set(stored)),
        "stored, never sent whole": sorted(set(stored) - acked - unread),
        "partial files left in tmp/ or cur/": leftovers,
    }
    problems = [f"{len(found)} {what}: {found[:3]}" for what, found in checks.items() if found]
    assert not problems, "\n".join([summary, *problems])
    assert len(acked) >= MESSAGES // 2, summary  # the plan completes most of them
