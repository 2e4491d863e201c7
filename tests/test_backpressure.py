"""Back-pressure on every server backend: a client that pipelines commands
and never reads the replies must not make the server buffer without bound
(RFC 2920 section 3.1 lets a client send a whole group before reading, and
section 4 lets a server stop reading until its replies are taken). When the
client finally reads, every reply is there, in order: nothing was dropped.
127.0.0.1 only; every socket has a timeout and every loop a bound."""

from __future__ import annotations

import select
import socket
import time
import tracemalloc

import pytest
from servers import SERVER_BACKENDS, serving

from backends.maildir import SinkHandler

COMMAND = b"NOOP\r\n"
BURST = COMMAND * 4096  # 24 KiB a write
MAX_SENT = 24 << 20  # stop here even if the server never pushes back
STALL = 1.0  # seconds without progress that count as the server pushing back
BOUND = 4 << 20  # server memory that may be in use for the flood


def _flood(sock: socket.socket) -> int:
    """Send NOOPs without reading until the server stops taking them."""
    sent = 0
    sock.setblocking(False)
    last_progress = time.monotonic()
    while sent < MAX_SENT and time.monotonic() - last_progress < STALL:
        _, writable, _ = select.select([], [sock], [], 0.1)
        if not writable:
            continue
        try:
            count = sock.send(BURST)
        except BlockingIOError:
            continue
        if count:
            sent += count
            last_progress = time.monotonic()
    sock.setblocking(True)
    return sent


def _read_replies(sock: socket.socket, expected: int) -> bytes:
    data = bytearray()
    deadline = time.monotonic() + 60
    while data.count(b"\r\n") < expected and time.monotonic() < deadline:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_client_that_never_reads_is_held_back_with_bounded_memory(backend: str):
    """The server stops reading while its replies pile up unread (write flow
    control, then read back-pressure), so the flood stalls well before
    MAX_SENT and the server's memory stays under BOUND; then every command
    that was sent gets its reply."""
    with (
        serving(backend, SinkHandler()) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        assert sock.recv(1024).startswith(b"220")
        sock.sendall(b"EHLO flood.example\r\n")
        assert b"250 " in _read_replies(sock, 1)
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            sent = _flood(sock)
            in_use = tracemalloc.get_traced_memory()[0] - baseline
        finally:
            tracemalloc.stop()
        assert sent < MAX_SENT, "the server never pushed back"
        commands = sent // len(COMMAND)
        # A partial last command gets no reply; finish it so it does.
        rest = len(COMMAND) - sent % len(COMMAND)
        if rest != len(COMMAND):
            sock.sendall(COMMAND[-rest:])
            commands += 1
        replies = _read_replies(sock, commands)
        assert replies.count(b"\r\n") == commands
        assert set(replies.split(b"\r\n")[:-1]) == {b"250 2.0.0 ok"}
        sock.sendall(b"QUIT\r\n")
        assert _read_replies(sock, 1).startswith(b"221")
    assert in_use < BOUND, f"{backend}: {in_use} octets in use for {sent} octets of flood"
