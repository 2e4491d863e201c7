"""The blocking server's socket channel (``backends._sync_io``): a plain TCP
socket is left blocking, its reads bounded by the kernel's receive timeout
and its writes never waiting unless the kernel cannot take them. These
check the bounds that RFC 5321 4.5.3.2 timeouts and a graceful shutdown
rely on, and that nothing is lost on the slow paths. 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from backends._session import Lifecycle, Read
from backends._sync_io import WAKE_INTERVAL, Channel

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "MSG_DONTWAIT"), reason="kernel timeouts need a POSIX socket API"
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname(), timeout=10)
        ours, _ = listener.accept()
    with peer, ours:
        yield ours, peer


def test_plain_socket_is_left_blocking(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    channel = Channel(ours, 5.0)
    assert channel.plain and ours.gettimeout() is None
    peer.sendall(b"NOOP\r\n")
    assert channel.receive(Read(5.0), None) == b"NOOP\r\n"
    channel.send(b"250 2.0.0 OK\r\n")
    assert peer.recv(100) == b"250 2.0.0 OK\r\n"
    assert ours.gettimeout() is None  # no per-call timeout was left behind


@pytest.mark.parametrize("timeout", [0.1, WAKE_INTERVAL * 2.2])
def test_read_times_out_on_time(pair: tuple[socket.socket, socket.socket], timeout: float) -> None:
    # Shorter and longer than one kernel wait: both end after the timeout
    # asked for, not after the wake interval or never.
    channel = Channel(pair[0], 5.0)
    start = time.monotonic()
    assert channel.receive(Read(timeout), None) is None
    waited = time.monotonic() - start
    assert timeout - 0.02 <= waited < timeout + 0.5


def test_data_after_a_kernel_wait_is_read(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    channel = Channel(ours, 5.0)
    timer = threading.Timer(WAKE_INTERVAL * 1.5, peer.sendall, (b"QUIT\r\n",))
    timer.start()
    try:
        assert channel.receive(Read(5.0, idle=True), Lifecycle(10)) == b"QUIT\r\n"
    finally:
        timer.cancel()


def test_zero_timeout_takes_only_what_is_there(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    channel = Channel(ours, 5.0)
    assert channel.receive(Read(0.0), None) is None
    peer.sendall(b"RSET\r\n")
    time.sleep(0.05)
    assert channel.receive(Read(0.0), None) == b"RSET\r\n"


def test_idle_read_hears_of_a_shutdown(pair: tuple[socket.socket, socket.socket]) -> None:
    lifecycle = Lifecycle(10)
    channel = Channel(pair[0], 5.0)
    threading.Timer(0.1, setattr, (lifecycle, "stopping", True)).start()
    start = time.monotonic()
    assert channel.receive(Read(30.0, idle=True), lifecycle) is None
    assert time.monotonic() - start < WAKE_INTERVAL + 0.5


def test_read_for_a_message_ignores_a_shutdown(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # A message in flight is finished first: only an idle read ends early.
    lifecycle = Lifecycle(10)
    lifecycle.stopping = True
    ours, peer = pair
    channel = Channel(ours, 5.0)
    threading.Timer(WAKE_INTERVAL * 1.5, peer.sendall, (b"body\r\n",)).start()
    assert channel.receive(Read(5.0), lifecycle) == b"body\r\n"


def test_end_of_stream(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    channel = Channel(ours, 5.0)
    peer.shutdown(socket.SHUT_WR)
    assert channel.receive(Read(5.0), None) == b""


def test_write_larger_than_the_kernel_takes_arrives_whole(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # The non-waiting send takes part; the rest must follow, in order.
    ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    data = bytes(range(256)) * 40000  # 10 MB, far beyond both buffers
    received = bytearray()

    def drain() -> None:
        time.sleep(0.2)  # let the kernel's buffers fill first
        while len(received) < len(data):
            chunk = peer.recv(65536)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    channel = Channel(ours, 10.0)
    channel.send(data)
    reader.join(20)
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    assert ours.gettimeout() is None


def test_write_to_a_peer_that_never_reads_times_out(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    channel = Channel(ours, 5.0)
    channel.receive(Read(0.3), None)  # a write may take as long as the last read
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        channel.send(b"x" * (64 << 20))
    assert time.monotonic() - start < 3.0
    assert ours.gettimeout() is None
