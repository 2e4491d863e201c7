"""Security regressions, each named after the CVE, paper or RFC rule it defends,
run against every server backend and every client backend (tests/servers.py).

1. SMTP smuggling (SEC Consult, December 2023: CVE-2023-51764 Postfix,
   CVE-2023-51765 sendmail, CVE-2023-51766 Exim): no end-of-data variant but
   CRLF.CRLF ends a message, so a smuggled MAIL never opens a second
   transaction; the bare CR/LF policy does what ``BareLinePolicy`` documents.
2. STARTTLS injection: commands sent in plaintext behind STARTTLS are never
   run (CVE-2011-0411 Postfix, CVE-2011-1575 Pure-FTPd, CVE-2011-1430 IMail),
   and replies sent behind the 220 are never read as replies under TLS
   ("response injection": CVE-2021-38371 Exim, CVE-2020-14954 Mutt; Poddebniak
   et al., "Why TLS is better without STARTTLS", USENIX Security 2021).
3. CR, LF and NUL injection (CWE-93) through every client argument: refused
   with the documented exception before a byte of it reaches the wire, which
   a scripted server in this file records byte for byte.
4. Floods (RFC 5321 4.5.3.1, RFC 3030): the right reply, memory bounded and
   measured, the server still answering. The servers run on threads of this
   process, so ``tracemalloc`` sees their allocations; each bound is stated in
   the test, well below the size of the flood.

Everything listens on 127.0.0.1; every socket has a timeout; every loop is bounded.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from itertools import pairwise
from typing import Any

import pytest
import trustme
from servers import CLIENT_BACKENDS, SERVER_BACKENDS, connected, serving

import smtp_core as smtp
from backends import AuthenticationFailed, ServiceRefused, SessionLimits, SinkHandler
from smtp_core import BareLinePolicy, ClientConfig, LocalProtocolError, RemoteProtocolError, sasl

TIMEOUT = 10.0
MAX_READS = 100_000  # bounds every read loop in this file

CA = trustme.CA()
CERT = CA.issue_cert("127.0.0.1", "localhost")


def server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    CERT.configure_cert(context)
    return context


def client_context() -> ssl.SSLContext:
    """Verifies the server against the test CA only (not the system's)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    CA.configure_trust(context)
    return context


# --------------------------------------------------------------------------
# A raw client: writes exactly the bytes it is given, reads whole replies.


class Peer:
    """A raw socket to a server under test."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""  # read, not yet handed out

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes | None:
        """The next reply line without its CRLF; None once the server closed."""
        for _ in range(MAX_READS):
            line, crlf, rest = self.pending.partition(b"\r\n")
            if crlf:
                self.pending = rest
                return line
            assert len(self.pending) < 4096, "a reply line longer than 4 KiB"
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.pending += chunk
        raise AssertionError("no reply line after MAX_READS reads")

    def reply(self) -> list[bytes] | None:
        """The next reply as its lines, or None once the server closed."""
        lines: list[bytes] = []
        for _ in range(1000):
            line = self._line()
            if line is None:
                assert not lines, f"the server closed in the middle of a reply: {lines}"
                return None
            lines.append(line)
            if line[3:4] != b"-":
                return lines
        raise AssertionError("a reply of more than 1000 lines")

    def replies(self, count: int) -> list[bytes]:
        """The next ``count`` replies, each as its last line."""
        out = []
        for _ in range(count):
            reply = self.reply()
            assert reply is not None, f"the server closed after {out}"
            out.append(reply[-1])
        return out

    def replies_until_closed(self, count: int) -> list[bytes]:
        """Up to ``count`` replies, fewer if the server closes first."""
        out = []
        for _ in range(count):
            reply = self.reply()
            if reply is None:
                break
            out.append(reply[-1])
        return out

    def until_closed(self) -> list[bytes]:
        """Every reply (its last line) until the server closes."""
        out = []
        for _ in range(MAX_READS):
            reply = self.reply()
            if reply is None:
                return out
            out.append(reply[-1])
        raise AssertionError("the server never closed")

    def greet(self) -> list[bytes]:
        """Read the greeting and say EHLO; returns the EHLO reply's lines."""
        [greeting] = self.replies(1)
        assert greeting.startswith(b"220 "), greeting
        self.send(b"EHLO client.example\r\n")
        reply = self.reply()
        assert reply is not None and reply[-1].startswith(b"250 "), reply
        return reply


def run_lengths(replies: list[bytes]) -> list[tuple[str, int]]:
    """Replies as (code and enhanced code, how many in a row): a short summary."""
    runs: list[tuple[str, int]] = []
    for reply in replies:
        key = (reply[:9] if reply[4:5].isdigit() else reply[:3]).decode("ascii", "replace")
        if runs and runs[-1][0] == key:
            runs[-1] = (key, runs[-1][1] + 1)
        else:
            runs.append((key, 1))
    return runs


def assert_responsive(port: int) -> None:
    """A second connection is greeted and its NOOP answered."""
    with Peer(port) as other:
        other.greet()
        other.send(b"NOOP\r\nQUIT\r\n")
        noop, bye = other.replies(2)
        assert noop.startswith(b"250"), noop
        assert bye.startswith(b"221"), bye


class Recorder:
    """A handler that keeps every MAIL it was asked about and every message."""

    def __init__(self) -> None:
        self.senders: list[smtp.Address | None] = []
        self.messages: list[tuple[smtp.Address | None, list[smtp.Address], bytes]] = []
        self.hooks: list[tuple[str, bool]] = []  # (hook, under TLS)

    def clear(self) -> None:
        self.senders.clear()
        self.messages.clear()
        self.hooks.clear()

    def on_mail(self, session: Any, mail: smtp.Mail) -> None:
        self.hooks.append(("on_mail", session.tls))
        self.senders.append(mail.reverse_path)

    def on_rset(self, session: Any) -> None:
        self.hooks.append(("on_rset", session.tls))

    def on_message(self, session: Any, envelope: Any, body: Any) -> None:
        recipients = [rcpt.forward_path for rcpt in envelope.recipients]
        self.messages.append((envelope.reverse_path, recipients, body.read()))


class CountingHandler:
    """Streams content through ``on_chunk`` and keeps only its size."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.octets = 0
        self.messages = 0

    def on_chunk(self, session: Any, envelope: Any, data: bytes) -> None:
        self.octets += len(data)

    def on_message(self, session: Any, envelope: Any, body: Any) -> None:
        self.messages += 1


# What each kind of server runs: a handler, and the options for serving().
SERVER_KINDS: dict[str, tuple[Callable[[], Any], Callable[[], dict[str, Any]]]] = {
    "default": (Recorder, dict),
    **{
        policy.value: (
            Recorder,
            lambda policy=policy: {"config": smtp.ServerConfig(bare_line_ending=policy)},
        )
        for policy in BareLinePolicy
    },
    "starttls": (Recorder, lambda: {"ssl_context": server_context()}),
    "sink": (SinkHandler, dict),
    "streaming": (CountingHandler, lambda: {"config": smtp.ServerConfig(max_message_size=None)}),
    # Far more refused commands allowed than the default 20 (see the RCPT flood).
    "patient": (Recorder, lambda: {"limits": SessionLimits(max_bad_commands=100_000)}),
}


@pytest.fixture(scope="module")
def running() -> Iterator[Callable[[str, str], tuple[int, Any]]]:
    """``running(backend, kind)``: the port and the cleared handler of a server
    of that backend and SERVER_KINDS kind, started on first use and kept for
    the module (a blocking server takes up to half a second to shut down, its
    socketserver poll interval, which would dominate the run). Every test
    uses fresh connections, and the handler is cleared for it."""
    started: dict[tuple[str, str], tuple[int, Any]] = {}
    with ExitStack() as stack:

        def get(backend: str, kind: str) -> tuple[int, Any]:
            if (backend, kind) not in started:
                make_handler, options = SERVER_KINDS[kind]
                handler = make_handler()
                port = stack.enter_context(serving(backend, handler, **options()))
                started[backend, kind] = (port, handler)
            port, handler = started[backend, kind]
            if hasattr(handler, "clear"):
                handler.clear()
            return port, handler

        yield get


ALICE = smtp.Address("alice", "example.org")
BOB = smtp.Address("bob", "example.com")


# --------------------------------------------------------------------------
# 1. SMTP smuggling, server side.

# Each is what some receiver took for the end of data; (bytes, holds a bare CR or LF).
END_VARIANTS = [
    pytest.param(b"\n.\n", True, id="lf-dot-lf"),
    pytest.param(b"\r.\r", True, id="cr-dot-cr"),
    pytest.param(b"\r\n.\n", True, id="crlf-dot-lf"),
    pytest.param(b"\n.\r\n", True, id="lf-dot-crlf"),
    pytest.param(b"\r.\r\n", True, id="cr-dot-crlf"),
    pytest.param(b"\r\n.\r", True, id="crlf-dot-cr"),
    pytest.param(b"\r\n\x00.\r\n", False, id="nul-before-dot"),
    pytest.param(b"\r\n.\x00\r\n", False, id="nul-after-dot"),
    pytest.param(b"\r\r\n.\r\r\n", True, id="cr-crlf-dot-cr-crlf"),
]
EVIL_MAIL = b"MAIL FROM:<evil@attacker.example>"
SMUGGLED = (
    EVIL_MAIL + b"\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
    b"From: ceo@example.com\r\nSubject: wire the money\r\n\r\nsmuggled"
)
REAL_END = b"\r\n.\r\n"
OPENING = b"Subject: hello\r\n\r\nhello"
SHAPES = {
    # The smuggled message carries its own end, and the real end follows it:
    # the second CRLF.CRLF reaches the command reader as two refused lines.
    "smuggled-end-then-real-end": SMUGGLED + REAL_END + REAL_END,
    # Only the real end: the smuggled text is content up to it.
    "real-end-only": SMUGGLED + REAL_END,
}


def open_transaction(peer: Peer) -> None:
    """EHLO, then MAIL from alice, RCPT to bob and DATA, pipelined (RFC 2920)."""
    peer.greet()
    peer.send(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
    mail, rcpt, data = peer.replies(3)
    assert (mail[:3], rcpt[:3], data[:3]) == (b"250", b"250", b"354"), (mail, rcpt, data)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(("variant", "bare"), END_VARIANTS)
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_smtp_smuggling_cve_2023_51764_51765_51766(
    running: Any, backend: str, variant: bytes, bare: bool, shape: str
) -> None:
    """SMTP smuggling (SEC Consult, 2023; CVE-2023-51764, -51765, -51766) against
    the default policy: only CRLF.CRLF ends data (RFC 5321 4.1.1.4), so the
    smuggled MAIL is content, never a second transaction. ``BareLinePolicy.REJECT``
    (the ServerConfig default) documents "refuse the message with 550 5.5.2
    after its end": so a variant with a bare CR or LF gets 550 and nothing is
    delivered; the NUL variants hold no bare line ending, so the one message
    is delivered, smuggled text inside. The variant goes out one octet per
    write, so the backends also see it cut across reads."""
    port, handler = running(backend, "default")
    with Peer(port) as peer:
        open_transaction(peer)
        peer.send(OPENING)
        for octet in variant:
            peer.send(bytes([octet]))
        peer.send(SHAPES[shape] + b"QUIT\r\n")
        content_reply, *others, bye = peer.until_closed()
    assert bye.startswith(b"221"), bye
    # No second transaction: no 354, no 250 to a MAIL; only the trailing
    # "" and "." lines of the doubled end are refused (500) as commands.
    expected_others = [b"500", b"500"] if shape == "smuggled-end-then-real-end" else []
    assert [reply[:3] for reply in others] == expected_others, others
    assert handler.senders == [ALICE]
    if bare:
        assert content_reply.startswith(b"550 5.5.2"), content_reply
        assert handler.messages == []
    else:
        assert content_reply.startswith(b"250"), content_reply
        [(sender, recipients, body)] = handler.messages
        assert (sender, recipients) == (ALICE, [BOB])
        assert body.startswith(OPENING)
        assert EVIL_MAIL in body and body.endswith(b"smuggled\r\n"), body


@pytest.mark.parametrize("policy", list(BareLinePolicy), ids=lambda policy: policy.value)
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_smtp_smuggling_sec_consult_2023_under_every_bare_line_policy(
    running: Any, backend: str, policy: BareLinePolicy
) -> None:
    """SMTP smuggling (SEC Consult, 2023; CVE-2023-51764, -51765, -51766):
    whatever ``BareLinePolicy`` the server runs, every end-of-data variant
    gives at most one message, from the original sender, with the smuggled
    text inside it; REJECT refuses the bare ones (550 5.5.2), NORMALIZE
    delivers no bare CR or LF, ALLOW keeps them. Each variant in one write."""
    port, handler = running(backend, policy.value)
    for param in END_VARIANTS:
        variant, bare = param.values
        handler.clear()
        with Peer(port) as peer:
            open_transaction(peer)
            peer.send(OPENING + variant + SMUGGLED + REAL_END + b"QUIT\r\n")
            replies = peer.until_closed()
        assert [reply[:3] for reply in replies[1:]] == [b"221"], (param.id, replies)
        assert handler.senders == [ALICE], param.id
        if bare and policy is BareLinePolicy.REJECT:
            assert replies[0].startswith(b"550 5.5.2"), (param.id, replies)
            assert handler.messages == [], param.id
            continue
        assert replies[0].startswith(b"250"), (param.id, replies)
        [(sender, recipients, body)] = handler.messages
        assert (sender, recipients) == (ALICE, [BOB]), param.id
        assert EVIL_MAIL in body and body.endswith(b"smuggled\r\n"), (param.id, body)
        if policy is BareLinePolicy.NORMALIZE:
            lone = body.replace(b"\r\n", b"")
            assert b"\r" not in lone and b"\n" not in lone, (param.id, body)
        if policy is BareLinePolicy.ALLOW and bare:
            lone = body.replace(b"\r\n", b"")
            assert b"\r" in lone or b"\n" in lone, (param.id, body)


# --------------------------------------------------------------------------
# 2. STARTTLS injection.


def tls_outcome(sock: socket.socket) -> bytes | None:
    """Try a TLS handshake on ``sock``: None if it fails, else whatever the
    server says under TLS within a second (it should say nothing)."""
    try:
        secure = client_context().wrap_socket(sock, server_hostname="127.0.0.1")
    except OSError:  # ssl.SSLError included
        return None
    secure.settimeout(1.0)
    try:
        return secure.recv(4096)
    except (TimeoutError, OSError):
        return b""


@pytest.mark.parametrize("packets", ["one-packet", "two-packets"])
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_starttls_command_injection_cve_2011_0411(running: Any, backend: str, packets: str) -> None:
    """STARTTLS command injection (CVE-2011-0411 Postfix; also CVE-2011-1575
    Pure-FTPd, CVE-2011-1430 IMail), through real TLS: "STARTTLS\\r\\nRSET\\r\\n"
    in one packet, or the RSET right behind it before the handshake. RFC 3207
    section 4.2 and DESIGN.md: plaintext after STARTTLS is never executed and
    is an error. So either 554 5.5.1 and a close, or a 220 whose handshake
    fails on the plaintext; never a reply to RSET, in clear or under TLS, and
    the handler never hears of it. The server goes on serving others."""
    port, handler = running(backend, "starttls")
    with Peer(port) as peer:
        assert any(line[4:] == b"STARTTLS" for line in peer.greet())
        if packets == "one-packet":
            peer.send(b"STARTTLS\r\nRSET\r\n")
        else:
            peer.send(b"STARTTLS\r\n")
            time.sleep(0.02)
            peer.send(b"RSET\r\n")
        answer = peer.reply()
        assert answer is not None, "closed without a reply to STARTTLS"
        [code] = {line[:3] for line in answer}
        if code == b"554":
            assert answer == [b"554 5.5.1 plaintext after STARTTLS"], answer
            assert peer.reply() is None, "the session went on after the injection"
        else:
            # The RSET reached the server after its 220: the TLS layer
            # reads it as a broken ClientHello.
            assert packets == "two-packets" and code == b"220", answer
        assert peer.pending == b"", peer.pending
        assert tls_outcome(peer.sock) is None, "a TLS session started after the injection"
    assert_responsive(port)
    assert handler.hooks == [], handler.hooks


class InjectingServer:
    """A malicious server on 127.0.0.1: offers STARTTLS, answers it with
    ``writes`` (a 220 and an injected 250, in one write or two), then tries
    the TLS handshake and records what a client does under TLS."""

    def __init__(self, writes: list[bytes]) -> None:
        self.writes = writes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.plaintext = b""
        self.handshake_error: BaseException | None = None
        self.under_tls = b""
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> InjectingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thread.join(TIMEOUT)
        self.listener.close()
        assert not self.thread.is_alive(), "the injecting server hung"

    def _read_lines(self, conn: socket.socket, count: int) -> None:
        for _ in range(1000):
            if self.plaintext.count(b"\n") >= count:
                return
            chunk = conn.recv(4096)
            if not chunk:
                return
            self.plaintext += chunk

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(TIMEOUT)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                conn.sendall(b"220 evil.example ESMTP\r\n")
                self._read_lines(conn, 1)  # EHLO
                conn.sendall(b"250-evil.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
                self._read_lines(conn, 2)  # STARTTLS
                for index, data in enumerate(self.writes):
                    if index:
                        time.sleep(0.05)
                    conn.sendall(data)
            except OSError:
                return  # the test sees it: ``plaintext`` is not what it expects
            try:
                secure = server_context().wrap_socket(conn, server_side=True)
            except OSError as error:
                self.handshake_error = error
                return
            secure.settimeout(1.0)
            with suppress(OSError):
                self.under_tls = secure.recv(4096)


@pytest.mark.parametrize("mode", ["starttls", "opportunistic"])
@pytest.mark.parametrize("writes", ["one-write", "two-writes"])
@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_starttls_response_injection_cve_2021_38371(backend: str, writes: str, mode: str) -> None:
    """STARTTLS response injection, the client analogue of CVE-2011-0411
    (CVE-2021-38371 Exim as a sending MTA, CVE-2020-14954 Mutt; Poddebniak et
    al., USENIX Security 2021): a server answers STARTTLS with
    "220 go ahead\\r\\n250 injected\\r\\n". Bytes after the 220 are never replies
    under TLS (DESIGN.md): one write is a RemoteProtocolError before the
    handshake; a 250 written after the client began the handshake breaks it
    (ServiceRefused). Either way no TLS session starts and the client sends
    nothing under TLS, even when TLS is only opportunistic."""
    parts = [b"220 2.0.0 go ahead\r\n", b"250 injected\r\n"]
    with InjectingServer([b"".join(parts)] if writes == "one-write" else parts) as server:
        expected = (
            RemoteProtocolError if writes == "one-write" else (RemoteProtocolError, ServiceRefused)
        )
        client = connected(
            backend, server.port, tls=mode, ssl_context=client_context(), timeout=TIMEOUT
        )
        with pytest.raises(expected) as raised, client:
            pass
        if writes == "one-write":
            assert "injection" in str(raised.value), raised.value
    assert server.plaintext == b"EHLO localhost\r\nSTARTTLS\r\n", server.plaintext
    assert server.handshake_error is not None, f"TLS started; under TLS: {server.under_tls!r}"
    assert server.under_tls == b""


# --------------------------------------------------------------------------
# 3. CR, LF and NUL injection through every client argument (CWE-93).


class RecordingServer:
    """A scripted SMTP server on 127.0.0.1 that keeps every octet it received.

    It answers by a fixed script, not with smtp-core, so what it records is what
    a client really wrote. Command lines end at any LF (as lenient servers read
    them), so that an injected bare LF shows up as a line of its own; content
    ends only at CRLF.CRLF (RFC 5321 4.1.1.4) and is kept as it came, stuffed."""

    EHLO = (
        b"250-recorder.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
        b"250 AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\r\n"
    )

    def __init__(self, ehlo: bytes = EHLO) -> None:
        self.ehlo = ehlo
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.received: list[bytearray] = []  # every octet, per connection
        self.commands: list[bytes] = []  # every line outside content
        self.messages: list[bytes] = []  # every content, as on the wire
        self.finished = threading.Semaphore(0)  # released as each connection ends
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping = True
        self._thread.join(TIMEOUT)
        self.listener.close()
        assert not self._thread.is_alive(), "the recording server hung"

    def wait_for_connections(self, count: int) -> None:
        for _ in range(count):
            assert self.finished.acquire(timeout=TIMEOUT), "a connection never ended"

    def _serve(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stopping and time.monotonic() < deadline:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            record = bytearray()
            self.received.append(record)
            with conn:
                conn.settimeout(TIMEOUT)
                # Replies are small writes: without this, Nagle's algorithm
                # and the client's delayed ACK stall each one by 40 ms.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with suppress(OSError):  # a client that vanished
                    self._converse(conn, record)
            self.finished.release()

    def _converse(self, conn: socket.socket, record: bytearray) -> None:
        conn.sendall(b"220 recorder.example ESMTP\r\n")
        pending = b""
        in_content = False
        sasl_replies: list[bytes] = []
        for _ in range(MAX_READS):
            chunk = conn.recv(65536)
            if not chunk:
                return
            record += chunk
            pending += chunk
            for _ in range(MAX_READS):
                if in_content:
                    # A virtual CRLF in front, so that ".\r\n" first ends it too.
                    end = (b"\r\n" + pending).find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    self.messages.append(pending[:end])
                    pending = pending[end + 3 :]
                    in_content = False
                    conn.sendall(b"250 2.0.0 queued\r\n")
                    continue
                line, lf, rest = pending.partition(b"\n")
                if not lf:
                    break
                pending = rest
                line = line.removesuffix(b"\r")
                self.commands.append(line)
                if sasl_replies:
                    conn.sendall(sasl_replies.pop(0))
                    continue
                verb = line.split(b" ", 1)[0].upper()
                if verb == b"EHLO":
                    conn.sendall(self.ehlo)
                elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    conn.sendall(b"250 2.0.0 ok\r\n")
                elif verb == b"DATA":
                    in_content = True
                    conn.sendall(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return
                elif verb == b"AUTH" and line[5:].upper().startswith(b"LOGIN"):
                    sasl_replies = [b"334 UGFzc3dvcmQ6\r\n", b"535 5.7.8 no\r\n"]
                    conn.sendall(b"334 VXNlcm5hbWU6\r\n")
                elif verb == b"AUTH" and line[5:].upper().startswith(b"CRAM-MD5"):
                    sasl_replies = [b"535 5.7.8 no\r\n"]
                    challenge = base64.b64encode(b"<1.2@recorder.example>")
                    conn.sendall(b"334 " + challenge + b"\r\n")
                elif verb == b"AUTH":
                    conn.sendall(b"535 5.7.8 no\r\n")
                else:
                    conn.sendall(b"500 5.5.2 unknown command\r\n")


INJECTED_COMMAND = "RSET"
CONTROLS = {"crlf": "\r\n", "lf": "\n", "cr": "\r", "nul": "\x00"}
ADDRESS_INJECTIONS = [
    "alice@example.org>\r\nRSET\r\nMAIL FROM:<evil@attacker.example>",
    "alice@example.org\nRSET",
    "alice@example.org\rRSET",
    "alice@example.org\x00RSET",
    '"alice\r\nRSET"@example.org',
    "alice@[127.0.0.1]\r\nRSET",
]


class Abandon(Exception):
    """Leaves a ``connected`` block by closing the connection, without QUIT."""


def forged(local_part: str, domain: str) -> smtp.Address:
    """An Address whose parts were changed after it was validated: a check
    that rests on the constructor alone would let it through."""
    address = smtp.Address("alice", "example.org")
    object.__setattr__(address, "local_part", local_part)
    object.__setattr__(address, "domain", domain)
    return address


@pytest.mark.parametrize("field", ["sender", "recipient"])
@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_smtp_command_injection_cwe_93_through_envelope_addresses(backend: str, field: str) -> None:
    """CWE-93 (CRLF injection) into MAIL FROM / RCPT TO (RFC 5321 4.1.2 allows
    no control character in a path): every string with CR, LF or NUL raises
    LocalProtocolError (Address.parse), and so does an Address forged after
    validation (the writer checks every command line again). Nothing reaches
    the wire: each connection carried its EHLO and not one octet more."""
    cases: list[str | smtp.Address] = [*ADDRESS_INJECTIONS]
    cases += [forged("alice", "example.org" + c + INJECTED_COMMAND) for c in CONTROLS.values()]
    cases += [forged("alice" + c + INJECTED_COMMAND, "example.org") for c in CONTROLS.values()]
    with RecordingServer() as server:
        for case in cases:
            sender, recipient = (case, "bob@example.com")
            if field == "recipient":
                sender, recipient = ("alice@example.org", case)
            # Each case on a connection of its own, closed without QUIT
            # afterwards: this test is about the wire, not the state left.
            with suppress(Abandon), connected(backend, server.port, timeout=TIMEOUT) as client:
                with pytest.raises(LocalProtocolError, match=r"control|CR, LF or NUL"):
                    client.sendmail(sender, [recipient], b"Subject: x\r\n\r\nx\r\n")
                raise Abandon
        server.wait_for_connections(len(cases))
    assert [bytes(record) for record in server.received] == [b"EHLO localhost\r\n"] * len(cases)
    assert server.messages == []


@pytest.mark.parametrize(
    "recipient",
    [
        pytest.param(forged("bob", "example.com>\r\nRSET"), id="forged-crlf-recipient"),
        pytest.param("jörg@example.com", id="utf8-recipient-without-smtputf8"),
    ],
)
@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_smtp_command_injection_cwe_93_refused_recipient_leaves_the_client_in_step(
    backend: str, recipient: str | smtp.Address
) -> None:
    """CWE-93 and RFC 2920: when ``send`` refuses a RCPT of a pipelined
    group (LocalProtocolError: "the connection is unchanged", DESIGN.md),
    the MAIL before it in the group must not stay booked as sent. Nothing
    went on the wire, so the client and the server still agree that no
    transaction is open, and the next message goes out normally."""
    ehlo = b"250-recorder.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    with (
        RecordingServer(ehlo) as server,
        connected(backend, server.port, timeout=TIMEOUT) as client,
    ):
        with pytest.raises(LocalProtocolError):
            client.sendmail("alice@example.org", [recipient], b"x\r\n")
        assert server.commands == [b"EHLO localhost"]
        try:
            result = client.sendmail("alice@example.org", ["bob@example.com"], b"next\r\n")
        except LocalProtocolError as error:
            pytest.fail(f"the client is out of step with the server after the refusal: {error}")
        assert result.reply is not None and result.reply.code == 250
    assert server.messages == [b"next\r\n"]


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (b"250 AUTH PLAIN LOGIN\r\n", "no usable mechanism among PLAIN, LOGIN (PLAIN and LOGIN"),
        (b"250 8BITMIME\r\n", "the server offers no AUTH"),
    ],
)
@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_login_sends_no_password_in_plaintext_unless_the_mechanism_is_named(
    backend: str, offered: bytes, expected: str
) -> None:
    """RFC 4954 section 4: PLAIN and LOGIN put the password on the wire as
    it is, so ``login()`` chooses them only under TLS; offered nothing else in
    plaintext it sends no AUTH at all and says why."""
    ehlo = b"250-recorder.example\r\n" + offered
    with (
        RecordingServer(ehlo) as server,
        connected(backend, server.port, timeout=TIMEOUT) as client,
    ):
        with pytest.raises(AuthenticationFailed) as failed:
            client.login("user", "secret")
        assert expected in str(failed.value)
    assert not any(line.startswith(b"AUTH") for line in server.commands), server.commands


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"])
@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_smtp_command_injection_cwe_93_through_login_credentials(
    backend: str, mechanism: str
) -> None:
    """CWE-93 through AUTH (RFC 4954 section 4): credentials travel base64
    encoded, so CR, LF or NUL in a user name or password can never make a
    command line of their own. Where the mechanism forbids the character the
    client raises SaslError before AUTH is written: NUL in PLAIN (RFC 4616
    section 2), any control character under SASLprep (RFC 4013 2.3) for SCRAM
    (RFC 5802 5.1) and for CRAM-MD5 passwords. Every line the server got after
    EHLO is an AUTH line, a base64 response or QUIT."""
    expected_auth = 0
    with RecordingServer() as server, connected(backend, server.port, timeout=TIMEOUT) as client:
        for field in ("username", "password"):
            for name, control in CONTROLS.items():
                credentials = {"username": "user", "password": "secret"}
                credentials[field] += control + INJECTED_COMMAND
                must_refuse = (
                    (mechanism == "PLAIN" and name == "nul")
                    or mechanism.startswith("SCRAM")
                    or (mechanism == "CRAM-MD5" and field == "password")
                )
                try:
                    client.login(credentials["username"], credentials["password"], mechanism)
                except sasl.SaslError:
                    continue
                except AuthenticationFailed as failed:
                    assert not must_refuse, (field, name)
                    assert failed.reply is not None and failed.reply.code == 535
                    expected_auth += 1
                else:
                    pytest.fail("the scripted server accepts no login")
    first, *middle, last = server.commands
    assert (first, last) == (b"EHLO localhost", b"QUIT"), server.commands
    auth_lines = [line for line in middle if line.startswith(b"AUTH ")]
    assert len(auth_lines) == expected_auth, server.commands
    for line in middle:
        if line.startswith(b"AUTH "):
            assert line.split(b" ")[1] == mechanism.encode(), line
            line = line.split(b" ", 2)[2] if line.count(b" ") == 2 else b""
        base64.b64decode(line, validate=True)  # a response, not a command
    assert INJECTED_COMMAND.encode() not in server.commands


@pytest.mark.parametrize("control", list(CONTROLS.values()), ids=list(CONTROLS))
def test_smtp_command_injection_cwe_93_through_the_local_hostname(control: str) -> None:
    """CWE-93 into EHLO/HELO/LHLO (RFC 5321 4.1.1.1: the name is a domain or
    an address literal): ClientConfig and the hello events refuse it with
    LocalProtocolError."""
    name = "client.example" + control + INJECTED_COMMAND
    with pytest.raises(LocalProtocolError, match="local_hostname"):
        ClientConfig(local_hostname=name)
    with pytest.raises(LocalProtocolError, match="local_hostname"):
        ClientConfig(local_hostname=name, lmtp=True)
    for hello in (smtp.Ehlo, smtp.Helo, smtp.Lhlo):
        with pytest.raises(LocalProtocolError, match="control"):
            hello(name)


@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_smtp_command_injection_cwe_93_through_the_ehlo_name_never_reaches_the_wire(
    backend: str,
) -> None:
    """CWE-93 into EHLO (RFC 5321 4.1.1.1), past ClientConfig's own check (a
    config whose name was changed after validation): ``connect`` raises
    LocalProtocolError and the server receives not one octet."""
    with RecordingServer() as server:
        for control in CONTROLS.values():
            config = ClientConfig()
            object.__setattr__(config, "local_hostname", "client.example" + control + "RSET")
            refused = pytest.raises(LocalProtocolError, match="control")
            with refused, connected(backend, server.port, timeout=TIMEOUT, config=config):
                pass
        server.wait_for_connections(len(CONTROLS))
    assert [bytes(record) for record in server.received] == [b""] * len(CONTROLS)


def wire_form(content: bytes) -> bytes:
    """What RFC 5321 4.5.2 puts on the wire for ``content`` once every line
    ending is CRLF: a dot doubled at the start of a line, a CRLF at the end."""
    lines = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


CLIENT_CONTENTS = [
    *(OPENING + param.values[0] + SMUGGLED + REAL_END + b"after\r\n" for param in END_VARIANTS),
    b".\r\n" + EVIL_MAIL + b"\r\n",  # the end at the very start
    b"x\r\n.",  # a lone dot without its line ending, last
    b"..\r\n.\r\n.\r\n",
]


def split_at_specials(content: bytes) -> list[bytes]:
    """``content`` as chunks in which every CR, LF and dot stands alone, so
    that a chunk boundary falls on each side of every octet that stuffing
    and line-ending handling decide on (runs of other octets stay whole)."""
    cuts = {0, len(content)}
    for index, octet in enumerate(content):
        if octet in b"\r\n.":
            cuts.update((index, index + 1))
    ordered = sorted(cuts)
    return [content[start:end] for start, end in pairwise(ordered)]


@pytest.mark.parametrize("chunked", [False, True], ids=["bytes", "split-at-specials"])
@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_smtp_smuggling_cve_2023_51764_client_content_is_stuffed_and_normalised(
    backend: str, chunked: bool
) -> None:
    """SMTP smuggling from the sending side (CVE-2023-51764 and siblings: the
    outbound MTA passed the lax end through): content holding every end
    variant and a CRLF.CRLF of its own is dot-stuffed (RFC 5321 4.5.2) and its
    bare CR and LF become CRLF (ClientConfig's default NORMALIZE), also when
    it is streamed with every CR, LF and dot in a chunk of its own (no held CR
    or line start may be lost between chunks). So the server sees one message
    per sendmail, ended only where the client ended it, and no lax end inside."""
    with RecordingServer() as server, connected(backend, server.port, timeout=TIMEOUT) as client:
        for content in CLIENT_CONTENTS:
            pieces = split_at_specials(content)
            assert b"".join(pieces) == content
            result = client.sendmail(
                "alice@example.org", ["bob@example.com"], pieces if chunked else content
            )
            assert result.reply is not None and result.reply.code == 250
    assert server.messages == [wire_form(content) for content in CLIENT_CONTENTS]
    for message in server.messages:
        lone = message.replace(b"\r\n", b"")
        assert b"\r" not in lone and b"\n" not in lone, message
    mail_lines = [line for line in server.commands if line.startswith(b"MAIL")]
    assert len(mail_lines) == len(CLIENT_CONTENTS), server.commands
    assert all(line.startswith(b"MAIL FROM:<alice@example.org>") for line in mail_lines)


@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_smtp_smuggling_cve_2023_51764_client_reject_policy_refuses_before_the_wire(
    backend: str,
) -> None:
    """SMTP smuggling, sending side, under ``BareLinePolicy.REJECT`` ("Client:
    raise"): content with a bare LF raises LocalProtocolError, and since the
    content is known before the transaction starts, nothing of it (not even
    MAIL) reaches the wire: the session stays usable."""
    config = ClientConfig(bare_line_ending=BareLinePolicy.REJECT)
    content = OPENING + b"\n.\n" + SMUGGLED + REAL_END
    with (
        RecordingServer() as server,
        connected(backend, server.port, timeout=TIMEOUT, config=config) as client,
    ):
        with pytest.raises(LocalProtocolError, match="bare CR or LF"):
            client.sendmail("alice@example.org", ["bob@example.com"], content)
        assert server.commands == [b"EHLO localhost"], server.commands
        client.sendmail("alice@example.org", ["bob@example.com"], b"clean\r\n")
    assert server.messages == [b"clean\r\n"]


# --------------------------------------------------------------------------
# 4. Floods: bounded memory, the right reply, still answering.


# tracemalloc makes allocation-heavy floods (ten thousand commands, 50 MB
# of short lines) three to five times slower; those are measured on these
# backends only, and checked for their behaviour on every backend.
MEASURED_BACKENDS = ("sync", "asyncio")


@contextmanager
def traced_peak(enabled: bool = True) -> Iterator[list[int]]:
    """Traces every allocation of this process (the server's threads too);
    on exit the list holds the peak in octets above the level at entry
    (it stays empty when not ``enabled``)."""
    if not enabled:
        yield []
        return
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        result: list[int] = []
        yield result
        result.append(tracemalloc.get_traced_memory()[1] - baseline)
    finally:
        tracemalloc.stop()


MiB = 1 << 20
PIECE = b"A" * (64 * 1024)  # built once, outside every measurement
LINE_FLOOD = 8 * MiB
LINE_FLOOD_BOUND = 1 * MiB


@pytest.mark.parametrize("where", ["command", "content"])
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_rfc5321_4_5_3_1_newline_free_line_flood(
    running: Any, backend: str, where: str, record_property: Any
) -> None:
    """RFC 5321 4.5.3.1.4 (command line 512) and 4.5.3.1.6 (text line 1000),
    as 4.5.3.1.9 says to answer them: 8 MiB with no line end, as a command
    (500 5.5.2 once it ends) or as message content (552 5.5.2 after the
    end), costs the server under 1 MiB at its peak; it answers the next
    command and, mid-flood, other clients."""
    port, _ = running(backend, "sink")
    with Peer(port) as peer:
        if where == "command":
            peer.greet()
        else:
            open_transaction(peer)
        with traced_peak() as peak:
            for index in range(LINE_FLOOD // len(PIECE)):
                peer.send(PIECE)
                if index == 64:
                    assert_responsive(port)
            peer.send(b"\r\n.\r\n" if where == "content" else b"\r\n")
            [refusal] = peer.replies(1)
        peer.send(b"NOOP\r\nQUIT\r\n")
        noop, bye = peer.replies(2)
    record_property("peak_octets", peak[0])
    print(f"\n{backend} {where} line flood of {LINE_FLOOD} octets: peak {peak[0]} octets")
    expected = b"500 5.5.2" if where == "command" else b"552 5.5.2"
    assert refusal.startswith(expected), refusal
    assert noop.startswith(b"250") and bye.startswith(b"221"), (noop, bye)
    assert peak[0] < LINE_FLOOD_BOUND, peak[0]


RECIPIENT_FLOOD = 10_000
RECIPIENT_BATCH = 1000
TRACED_BATCHES = (2, 3)  # RCPTs 2001 to 4000, all over the limit
RECIPIENT_FLOOD_BOUND = 1 * MiB  # peak over the traced batches
RECIPIENT_GROWTH_BOUND = (
    96 * 1024
)  # kept from one batch's end to the next's (one 64 KiB read may be in flight)


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_rfc5321_4_5_3_1_10_recipient_flood(
    running: Any, backend: str, record_property: Any
) -> None:
    """RFC 5321 4.5.3.1.8 and 4.5.3.1.10: ten thousand RCPTs, pipelined in
    groups of a thousand: the first 100 get 250, every other one 452 4.5.3
    and is not kept; DATA still gets 354 and the message goes to the 100.
    The excess RCPTs here are well-formed and get transient replies, so the
    session's bad-command limit is raised past them (its default is the
    subject of the next test). Memory (MEASURED_BACKENDS), traced over two
    thousand refused RCPTs (tracing all ten thousand would triple the run):
    the peak stays under 1 MiB, and from the end of one thousand to the end
    of the next under 96 KiB more is kept (one 64 KiB read may be in
    flight at either point; keeping the thousand refused RCPTs would take
    over 200 KiB), so nothing grows with the number of RCPTs."""
    port, handler = running(backend, "patient")
    batches = [
        b"".join(
            b"RCPT TO:<r%05d@example.com>\r\n" % number
            for number in range(start, start + RECIPIENT_BATCH)
        )
        for start in range(0, RECIPIENT_FLOOD, RECIPIENT_BATCH)
    ]
    measure = backend in MEASURED_BACKENDS
    codes: dict[bytes, int] = {}
    first, last = TRACED_BATCHES
    baseline = after_first = peak = growth = 0
    with Peer(port) as peer:
        peer.greet()
        peer.send(b"MAIL FROM:<alice@example.org>\r\n")
        assert peer.replies(1)[0].startswith(b"250")
        for index, batch in enumerate(batches):
            if measure and index == first:
                tracemalloc.start()
                baseline = tracemalloc.get_traced_memory()[0]
            peer.send(batch)
            for reply in peer.replies(RECIPIENT_BATCH):
                codes[reply[:9]] = codes.get(reply[:9], 0) + 1
            if measure and index == first:
                after_first = tracemalloc.get_traced_memory()[0]
            if measure and index == last:
                current, high = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                peak, growth = high - baseline, current - after_first
            if index == 5:
                assert_responsive(port)
        peer.send(b"DATA\r\n")
        [data] = peer.replies(1)
        assert data.startswith(b"354"), data
        peer.send(b"Subject: many\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        delivered, bye = peer.replies(2)
    assert codes == {b"250 2.1.5": 100, b"452 4.5.3": RECIPIENT_FLOOD - 100}, codes
    assert delivered.startswith(b"250") and bye.startswith(b"221"), (delivered, bye)
    [(sender, recipients, _)] = handler.messages
    assert sender == ALICE and len(recipients) == 100
    if measure:
        record_property("peak_octets", peak)
        record_property("growth_octets", growth)
        print(f"\n{backend} RCPT flood: peak {peak}, {growth} more kept per 1000 RCPTs")
        assert peak < RECIPIENT_FLOOD_BOUND, peak
        assert growth < RECIPIENT_GROWTH_BOUND, growth


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_rfc5321_4_5_3_1_8_excess_recipients_do_not_lose_the_transaction(
    running: Any, backend: str
) -> None:
    """RFC 5321 4.5.3.1.8: a server with a recipient limit "MUST behave in an
    orderly fashion, such as rejecting additional addresses over its limit
    rather than silently discarding addresses previously accepted", and a
    client SHOULD then send the rest in another transaction; 4.5.3.1.10 says
    the rejection is 452. So a pipelining client (RFC 2920) that sends 150
    RCPTs with default limits gets 100 x 250 and 50 x 452, and its message
    still goes to the 100: the 452s are not "bad commands" that end the
    session with 421."""
    port, handler = running(backend, "default")
    with Peer(port) as peer:
        peer.greet()
        rcpts = b"".join(b"RCPT TO:<r%03d@example.com>\r\n" % number for number in range(150))
        peer.send(b"MAIL FROM:<alice@example.org>\r\n" + rcpts + b"DATA\r\n")
        replies = peer.replies_until_closed(152)
        assert run_lengths(replies) == [
            ("250 2.1.0", 1),
            ("250 2.1.5", 100),
            ("452 4.5.3", 50),
            ("354", 1),
        ]
        peer.send(b"Subject: many\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        delivered, bye = peer.replies(2)
    assert delivered.startswith(b"250") and bye.startswith(b"221")
    [(_, recipients, _)] = handler.messages
    assert len(recipients) == 100


HEADER_LINES = b"".join(b"X-Flood-%04d: %s\r\n" % (n, b"h" * 60) for n in range(800))
HEADER_FLOOD = 50_000_000
HEADER_FLOOD_BOUND = 4 * MiB


@pytest.mark.parametrize("handler_kind", ["sink-default-limits", "on-chunk-no-size-limit"])
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_rfc5321_4_5_3_1_7_huge_header_section(
    running: Any, backend: str, handler_kind: str, record_property: Any
) -> None:
    """RFC 5321 4.5.3.1.7 and RFC 1870: 50 MB of header lines in DATA. With
    SinkHandler and default limits the message is read to its end and
    refused with 552 5.3.4 (ServerConfig.max_message_size documents it);
    with an ``on_chunk`` handler and no size limit it streams through and
    gets 250. Either way the server's peak (MEASURED_BACKENDS) stays under
    4 MiB and it answers other clients mid-flood and the next command."""
    kind = "sink" if handler_kind == "sink-default-limits" else "streaming"
    port, handler = running(backend, kind)
    repeats = HEADER_FLOOD // len(HEADER_LINES)
    measure = backend in MEASURED_BACKENDS
    with Peer(port) as peer:
        open_transaction(peer)
        with traced_peak(measure) as peak:
            for index in range(repeats):
                peer.send(HEADER_LINES)
                if index == repeats // 2:
                    assert_responsive(port)
            peer.send(b"\r\nbody\r\n.\r\n")
            [verdict] = peer.replies(1)
        peer.send(b"NOOP\r\nQUIT\r\n")
        noop, bye = peer.replies(2)
    if handler_kind == "sink-default-limits":
        assert verdict.startswith(b"552 5.3.4"), verdict
    else:
        assert verdict.startswith(b"250"), verdict
        assert handler.octets == repeats * len(HEADER_LINES) + len(b"\r\nbody\r\n")
        assert handler.messages == 1
    assert noop.startswith(b"250") and bye.startswith(b"221"), (noop, bye)
    if measure:
        record_property("peak_octets", peak[0])
        print(f"\n{backend} {handler_kind} header flood: peak {peak[0]} octets")
        assert peak[0] < HEADER_FLOOD_BOUND, peak[0]


BDAT_FLOOD = 100_000_000
BDAT_PIECE = PIECE * 16  # 1 MiB, built once
BDAT_TAIL = b"A" * (BDAT_FLOOD % len(BDAT_PIECE))
BDAT_FLOOD_BOUND = 4 * MiB


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_rfc3030_bdat_newline_free_flood(running: Any, backend: str, record_property: Any) -> None:
    """RFC 3030 section 2 (the server reads the announced octets whatever it
    thinks of them) and RFC 1870: "BDAT 100000000 LAST" and 100 MB without a
    line end. The chunk is read through, not buffered, and refused with
    552 5.3.4 (over ServerConfig.max_message_size); the peak stays under
    4 MiB; other clients are answered mid-flood, and so is the next command."""
    port, _ = running(backend, "sink")
    with Peer(port) as peer:
        peer.greet()
        peer.send(
            b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\n"
            b"BDAT %d LAST\r\n" % BDAT_FLOOD
        )
        mail, rcpt = peer.replies(2)
        assert mail.startswith(b"250") and rcpt.startswith(b"250"), (mail, rcpt)
        with traced_peak() as peak:
            for index in range(BDAT_FLOOD // len(BDAT_PIECE)):
                peer.send(BDAT_PIECE)
                if index == 50:
                    assert_responsive(port)
            peer.send(BDAT_TAIL)
            [verdict] = peer.replies(1)
        peer.send(b"NOOP\r\nQUIT\r\n")
        noop, bye = peer.replies(2)
    record_property("peak_octets", peak[0])
    print(f"\n{backend} BDAT flood of {BDAT_FLOOD} octets: peak {peak[0]} octets")
    assert verdict.startswith(b"552 5.3.4"), verdict
    assert noop.startswith(b"250") and bye.startswith(b"221"), (noop, bye)
    assert peak[0] < BDAT_FLOOD_BOUND, peak[0]
