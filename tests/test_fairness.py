"""Fairness on every server backend: a client whose commands are always
there to be read (it pipelines NOOPs without pause, RFC 2920, and reads its
replies as fast as they come) must not starve the other sessions. While it
runs, a second client is greeted and sends a message promptly. 127.0.0.1
only; every socket has a timeout and every loop a bound."""

from __future__ import annotations

import smtplib
import socket
import threading
import time

import pytest
from servers import SERVER_BACKENDS, serving

from backends.maildir import SinkHandler

FLOOD = b"NOOP\r\n" * 4096  # 24 KiB a write
WARM = 256 << 10
"""Octets of replies the flooding client reads before the second one comes:
by then its session is busy."""
PROMPT = 4.0
"""Seconds for the second client, connect to QUIT: a few round trips, each
waiting at most for a turn of the flood's session; far below for a fair
server even on a loaded 2-core machine, never reached by a starving one."""


class _Flood:
    """Pipelines NOOPs on ``sock`` and reads the replies, on two threads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.replied = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._send), threading.Thread(target=self._read)]

    def _send(self) -> None:
        while not self.stop.is_set():
            try:
                self.sock.sendall(FLOOD)
            except OSError:  # a timeout while the server pushes back, or the end
                continue

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                continue
            if not chunk:
                return
            self.replied += len(chunk)

    def __enter__(self) -> _Flood:
        self.sock.settimeout(0.2)  # so that both threads see ``stop`` soon
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_pipelining_flood_does_not_starve_another_session(backend: str):
    with (
        serving(backend, SinkHandler()) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
    ):
        assert sock.recv(1024).startswith(b"220")
        with _Flood(sock) as flood:
            deadline = time.monotonic() + 30
            while flood.replied < WARM and time.monotonic() < deadline:
                time.sleep(0.01)
            assert flood.replied >= WARM, "the flood never got going"
            start = time.monotonic()
            with smtplib.SMTP("127.0.0.1", port, timeout=2 * PROMPT) as client:
                client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
            elapsed = time.monotonic() - start
            assert all(thread.is_alive() for thread in flood.threads), "the flood stopped"
    assert elapsed < PROMPT, f"{backend}: {elapsed:.2f} s for a message beside the flood"
