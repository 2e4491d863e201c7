"""The trio backend's stream (``backends._trio_stream``) on plain TCP: a read
that finds nothing lets the other tasks run and looks again before it waits.
Whatever happens in those turns, the read must return exactly what the
peer sent, time out on time, end at a shutdown's interrupt, and give the
end of stream (never an error or another connection's bytes) when its
stream was closed meanwhile."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest
import trio

from backends._trio_stream import Stream


async def connected_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
        nursery.cancel_scope.cancel()
    await listener.aclose()
    return server, client


def read_while_yielding(
    meanwhile: Callable[[Stream, trio.SocketStream], object], *, idle: bool = False
) -> tuple[bytes | None, float]:
    """Start a read on an empty connection; once it has found nothing and
    yielded, run ``meanwhile(stream, peer)`` (no checkpoint in it). The read's
    result, and the seconds it took."""

    async def main() -> tuple[bytes | None, float]:
        ours, peer = await connected_pair()
        stream = Stream(ours)
        result: list[bytes | None] = []
        start = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                result.append(await stream.receive(30.0, idle=idle))

            nursery.start_soon(reader)
            await trio.lowlevel.checkpoint()  # the reader found nothing and yielded
            meanwhile(stream, peer)
        waited = trio.current_time() - start
        await peer.aclose()
        await stream.aclose()
        return result[0], waited

    return trio.run(main)


def test_data_sent_while_the_reader_yields_is_read_whole() -> None:
    def send(stream: Stream, peer: trio.SocketStream) -> None:
        os.write(peer.socket.fileno(), b"MAIL FROM:<a@example.org>\r\n")

    assert read_while_yielding(send)[0] == b"MAIL FROM:<a@example.org>\r\n"


def test_stream_closed_while_the_reader_yields_ends_the_read() -> None:
    def cut_and_reuse(stream: Stream, peer: trio.SocketStream) -> None:
        # The reader's socket is closed (a shutdown's cut) and the system
        # gives the freed descriptor number to a new connection, which has
        # bytes waiting: they are not the old session's to read.
        first, second = socket.socketpair()
        ours = stream.stream
        assert isinstance(ours, trio.SocketStream)
        number = ours.socket.fileno()
        ours.socket.close()
        os.dup2(first.fileno(), number)  # the new connection, at the old number
        second.sendall(b"someone else's bytes")
        reused.append((first, second, number))

    reused: list[tuple[socket.socket, socket.socket, int]] = []
    ended, _ = read_while_yielding(cut_and_reuse)
    [(first, second, number)] = reused
    with first, second:
        first.setblocking(False)
        left = first.recv(100)
        os.close(number)
    assert ended == b""
    assert left == b"someone else's bytes"


def test_end_of_stream_during_the_yield() -> None:
    def close(stream: Stream, peer: trio.SocketStream) -> None:
        peer.socket.shutdown(socket.SHUT_WR)

    assert read_while_yielding(close)[0] == b""


def test_shutdown_while_an_idle_reader_yields_ends_the_read() -> None:
    # The server interrupts idle reads when it shuts down; one that was
    # looking or yielding at that moment must still end at once (and the
    # session hear 421), not wait out its command timeout.
    data, waited = read_while_yielding(lambda stream, peer: stream.interrupt(), idle=True)
    assert data is None
    assert waited < 2.0


@pytest.mark.parametrize("timeout", [0.05, 0.3])
def test_a_read_with_nothing_coming_times_out(timeout: float) -> None:
    async def main() -> tuple[bytes | None, float]:
        ours, peer = await connected_pair()
        stream = Stream(ours)
        start = trio.current_time()
        data = await stream.receive(timeout)
        waited = trio.current_time() - start
        await stream.aclose()
        await peer.aclose()
        return data, waited

    data, waited = trio.run(main)
    assert data is None
    assert timeout - 0.01 <= waited < timeout + 0.5
