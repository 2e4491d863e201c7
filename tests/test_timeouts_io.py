"""No wait without an end: every client backend bounds a write to a server
that stops reading, a reply that trickles in, and a TLS handshake that never
comes, by its ``timeout``; every server backend bounds a STARTTLS or implicit
TLS handshake by its command timeout. Scripted peers on 127.0.0.1 only."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest
from servers import CLIENT_BACKENDS, SERVER_BACKENDS, connected, serving
from test_tls import client_context, server_context, up_to_the_handshake

from backends import ServiceRefused, SessionLimits, SinkHandler

EHLO = b"250-scripted.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
LIMIT = 10.0  # no test here waits longer than this for anything


@contextmanager
def scripted(behaviour: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A server that takes one connection and runs ``behaviour`` on it until
    it returns or the test ends (the event is set); yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(LIMIT)
    over = threading.Event()

    def run() -> None:
        with suppress(OSError), listener.accept()[0] as conn:
            conn.settimeout(LIMIT)
            behaviour(conn, over)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        over.set()
        listener.close()
        thread.join(LIMIT)


def until(conn: socket.socket, verb: bytes) -> None:
    """Answer lines as an ESMTP server would until one starting with ``verb``."""
    conn.sendall(b"220 scripted.example ESMTP\r\n")
    stream = conn.makefile("rb")
    while line := stream.readline():
        if line.upper().startswith(verb):
            return
        conn.sendall(EHLO if line.upper().startswith(b"EHLO") else b"250 ok\r\n")
    raise OSError("the client left before " + verb.decode())


def stops_reading_after_354(conn: socket.socket, over: threading.Event) -> None:
    until(conn, b"DATA")
    conn.sendall(b"354 go ahead\r\n")
    over.wait(LIMIT)  # and never reads again


def trickles_its_greeting(conn: socket.socket, over: threading.Event) -> None:
    for octet in b"220-a greeting that takes its time\r\n" * 4:
        if over.wait(0.2):
            return
        conn.sendall(bytes([octet]))


def silent_after_starttls(conn: socket.socket, over: threading.Event) -> None:
    until(conn, b"STARTTLS")
    conn.sendall(b"220 go ahead\r\n")
    over.wait(LIMIT)


def silent(conn: socket.socket, over: threading.Event) -> None:
    over.wait(LIMIT)


@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_a_write_the_server_never_takes_ends_in_the_timeout(backend: str):
    body = b"Subject: big\r\n\r\n" + b"x" * 78 + b"\r\n" * 1
    body += (b"y" * 78 + b"\r\n") * 400_000  # 32 MB: more than any socket buffer
    with scripted(stops_reading_after_354) as port:
        started = time.monotonic()
        with pytest.raises(TimeoutError), connected(backend, port, timeout=1) as client:
            client.sendmail("a@example.org", ["b@example.org"], body)
        assert time.monotonic() - started < LIMIT / 2


def connecting_fails_in_time(
    backend: str,
    behaviour: Callable[[socket.socket, threading.Event], None],
    error: type[Exception] | tuple[type[Exception], ...],
    match: str | None = None,
    **options: object,
) -> None:
    """A client with a 1 s timeout, connecting to the scripted peer, fails
    with ``error`` well before a wait without end would be noticed."""
    with scripted(behaviour) as port:
        started = time.monotonic()
        with pytest.raises(error, match=match), connected(backend, port, timeout=1, **options):
            pass
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_a_reply_that_trickles_in_ends_in_the_timeout(backend: str):
    """The timeout is for the whole reply, not for each read of it (as the
    server's command timeout is, RFC 5321 4.5.3.2)."""
    connecting_fails_in_time(
        backend, trickles_its_greeting, ServiceRefused, match="no reply within 1 s"
    )


@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_a_starttls_handshake_that_never_comes_ends_in_the_timeout(backend: str):
    connecting_fails_in_time(
        backend,
        silent_after_starttls,
        ServiceRefused,
        match="TLS handshake failed",
        tls="starttls",
        ssl_context=client_context(),
    )


@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_an_implicit_tls_handshake_that_never_comes_ends_in_the_timeout(backend: str):
    connecting_fails_in_time(
        backend,
        silent,
        (TimeoutError, ServiceRefused),
        tls="implicit",
        ssl_context=client_context(),
    )


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server ends the connection within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_server_ends_a_starttls_handshake_that_never_comes(backend: str):
    """RFC 3207: after its 220 the server waits for the client's handshake
    only as long as for a command."""
    limits = SessionLimits(command_timeout=1.0)
    with (
        serving(backend, SinkHandler(), ssl_context=server_context(), limits=limits) as port,
        socket.create_connection(("127.0.0.1", port), timeout=LIMIT) as raw,
    ):
        up_to_the_handshake(raw)
        assert closed_within(raw, LIMIT / 2), "the server still waits for the handshake"


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_server_ends_an_implicit_tls_handshake_that_never_comes(backend: str):
    limits = SessionLimits(command_timeout=1.0)
    options = {"ssl_context": server_context(), "implicit_tls": True, "limits": limits}
    with (
        serving(backend, SinkHandler(), **options) as port,
        socket.create_connection(("127.0.0.1", port), timeout=LIMIT) as raw,
    ):
        assert closed_within(raw, LIMIT / 2), "the server still waits for the handshake"


def late_on_the_final_dot(conn: socket.socket, over: threading.Event) -> None:
    until(conn, b"DATA")
    conn.sendall(b"354 go ahead\r\n")
    stream = conn.makefile("rb")
    while (line := stream.readline()) and line != b".\r\n":
        pass
    if not over.wait(3):  # past the client's timeout
        conn.sendall(b"250 queued, late\r\n")
        over.wait(LIMIT)


@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_a_call_cut_short_leaves_the_connection_refusing_further_calls(backend: str):
    """After a call ended half way (here the reply to the end of the message
    never came in time), the next reply the server sends answers that call,
    not the next one: sending on would pair replies with the wrong commands.
    The next call says so; quit() says nothing and closes."""
    with scripted(late_on_the_final_dot) as port, connected(backend, port, timeout=1) as client:
        with pytest.raises(ServiceRefused, match="no reply within 1 s"):
            client.sendmail("a@example.org", ["b@example.org"], b"first\r\n")
        with pytest.raises(ServiceRefused, match="out of step"):
            client.sendmail("a@example.org", ["b@example.org"], b"second\r\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads TCP_INFO")
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_server_ends_a_session_whose_client_takes_no_replies(backend: str):
    """A client that pipelines commands and never reads the replies: once
    the replies fill every buffer, the server waits for it only as long as
    for a command, then ends the session, whose last replies cannot be
    delivered: the server resets the connection (a FIN would wait behind
    them for ever). Seen from here without reading (which would let the
    server go on): the socket leaves ESTABLISHED when the reset comes."""
    limits = SessionLimits(command_timeout=1.0)
    with serving(backend, SinkHandler(), limits=limits) as port:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", port))
        with raw:
            raw.setblocking(False)
            flood = b"NOOP\r\n" * 2000
            started = time.monotonic()
            while time.monotonic() - started < 2:
                try:
                    raw.send(flood)
                except BlockingIOError:
                    time.sleep(0.05)
                except OSError:
                    break  # already cut
            while time.monotonic() - started < 2 + LIMIT:
                state = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
                if state != 1:  # TCP_ESTABLISHED
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the server still holds a session that takes no replies")


@pytest.mark.parametrize("backend", CLIENT_BACKENDS)
def test_a_client_told_421_before_a_close_says_why(backend: str):
    """RFC 5321 3.8: a server that gives up says 421 and closes; the error of
    the call that finds the connection closed carries that reply."""
    limits = SessionLimits(command_timeout=0.5)
    with (
        serving("asyncio", SinkHandler(), limits=limits) as port,
        connected(backend, port, timeout=5) as client,
    ):
        time.sleep(1.0)  # the server times the session out meanwhile
        with pytest.raises(ServiceRefused, match="closed the connection") as refused:
            client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    reply = refused.value.reply
    assert reply is not None and reply.code == 421 and "timeout" in reply.text
