"""The blocking server's threads: each connection has one of its own while it
lasts, a thread whose connection ended serves the next one, and a thread
that waits too long, or whose server closes, ends. Raw sockets are the peers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from backends import sync as sync_backend


class Threads:
    """Records the thread each connection is greeted from."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def on_connect(self, session):  # type: ignore[no-untyped-def]
        self.threads.append(threading.current_thread())


def _greeted(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert sock.recv(512).startswith(b"220")
    return sock


def _quit(sock: socket.socket) -> None:
    with sock:
        sock.sendall(b"QUIT\r\n")
        assert sock.recv(512).startswith(b"221")
        assert sock.recv(512) == b""  # the server closed its side


def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_open_connections_each_have_a_thread_and_a_waiting_thread_serves_the_next():
    """Sessions go on side by side, each on a thread of its own; once they
    have ended, their threads wait, and one of them greets the next."""
    handler = Threads()
    server = sync_backend.start_server(handler, "127.0.0.1", 0)
    try:
        first, second, third = (_greeted(server.port) for _ in range(3))
        assert len({id(thread) for thread in handler.threads}) == 3
        for sock in (first, second, third):
            _quit(sock)
        assert _within(5, lambda: server._waiting == 3)
        _quit(_greeted(server.port))
        assert handler.threads[3] in handler.threads[:3]
        assert _within(5, lambda: server._waiting == 3)
    finally:
        server.close_gracefully(5)


def test_a_thread_that_waits_idle_timeout_for_a_connection_ends():
    handler = Threads()
    server = sync_backend.start_server(handler, "127.0.0.1", 0)
    server.idle_timeout = 0.2
    try:
        _quit(_greeted(server.port))
        assert _within(5, lambda: not handler.threads[0].is_alive())
        assert server._waiting == 0
        _quit(_greeted(server.port))  # none waits: a new thread
        assert handler.threads[1] is not handler.threads[0]
    finally:
        server.close_gracefully(5)


def test_closing_the_server_ends_its_waiting_threads_and_its_busy_ones_once_done():
    """A graceful close ends the threads that wait at once and the others
    once their sessions end: those between transactions at once (421
    4.3.2), one in the middle of a message once it is finished."""
    handler = Threads()
    server = sync_backend.start_server(handler, "127.0.0.1", 0)
    closing = threading.Thread(target=server.close_gracefully, args=(10,))
    try:
        _quit(_greeted(server.port))
        assert _within(5, lambda: server._waiting == 1)
        idle = _greeted(server.port)  # served by the waiting thread
        assert _within(5, lambda: server._waiting == 0)
        sending = _greeted(server.port)  # and this one by a new thread
        replies = sending.makefile("rb")
        for line in (b"EHLO c", b"MAIL FROM:<a@b.example>", b"RCPT TO:<c@d.example>", b"DATA"):
            sending.sendall(line + b"\r\n")
            while (reply := replies.readline())[3:4] == b"-":
                pass
            assert reply[:3] in (b"250", b"354")
        _quit(_greeted(server.port))  # a third, which then waits
        assert _within(5, lambda: server._waiting == 1)
        closing.start()
        assert _within(5, lambda: server._closed)
        with idle:  # between transactions: told at once
            assert idle.recv(512).startswith(b"421 4.3.2")
        with sending, replies:  # the message in flight is finished first
            sending.sendall(b"Subject: x\r\n\r\nbody\r\n.\r\n")
            assert replies.readline().startswith(b"250")
            assert replies.readline().startswith(b"421 4.3.2")
    finally:
        if not closing.is_alive():
            closing = threading.Thread(target=server.close_gracefully, args=(1,))
            closing.start()
        closing.join(15)
    assert handler.threads[1] is handler.threads[0]
    assert len(set(handler.threads)) == 3
    assert _within(5, lambda: not any(thread.is_alive() for thread in handler.threads))
    assert server._waiting == 0
