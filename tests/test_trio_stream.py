"""The trio backend's stream (``backends._trio_stream``) on plain TCP: a read
that finds nothing lets the other tasks run and looks again before it waits.
Whatever happens in those turns, the read must return exactly what the
peer sent, time out on time, and give the end of stream (never an error or
another connection's bytes) when its stream was closed meanwhile."""

from __future__ import annotations

import os
import socket

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


def test_data_sent_while_the_reader_yields_is_read_whole() -> None:
    async def main() -> bytes | None:
        ours, peer = await connected_pair()
        stream = Stream(ours)
        result: list[bytes | None] = []
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                result.append(await stream.receive(5.0))

            nursery.start_soon(reader)
            await trio.lowlevel.checkpoint()  # the reader found nothing and yielded
            os.write(peer.socket.fileno(), b"MAIL FROM:<a@example.org>\r\n")
        await peer.aclose()
        await stream.aclose()
        return result[0]

    assert trio.run(main) == b"MAIL FROM:<a@example.org>\r\n"


def test_stream_closed_while_the_reader_yields_ends_the_read() -> None:
    async def main() -> tuple[bytes | None, bytes]:
        ours, peer = await connected_pair()
        stream = Stream(ours)
        result: list[bytes | None] = []
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                result.append(await stream.receive(5.0))

            nursery.start_soon(reader)
            await trio.lowlevel.checkpoint()  # the reader found nothing and yielded
            # Meanwhile its socket is closed (a shutdown's cut) and the system
            # gives the freed descriptor number to a new connection, which
            # has bytes waiting: they are not the old session's to read.
            first, second = socket.socketpair()
            number = ours.socket.fileno()
            ours.socket.close()
            os.dup2(first.fileno(), number)  # the new connection, at the old number
            second.sendall(b"someone else's bytes")
        await peer.aclose()
        with first, second:
            first.setblocking(False)
            kept = first.recv(100)
            os.close(number)
            return result[0], kept

    ended, kept = trio.run(main)
    assert ended == b""
    assert kept == b"someone else's bytes"


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


def test_end_of_stream_during_the_yield() -> None:
    async def main() -> bytes | None:
        ours, peer = await connected_pair()
        stream = Stream(ours)
        result: list[bytes | None] = []
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                result.append(await stream.receive(5.0))

            nursery.start_soon(reader)
            await trio.lowlevel.checkpoint()
            peer.socket.shutdown(socket.SHUT_WR)
        await peer.aclose()
        await stream.aclose()
        return result[0]

    assert trio.run(main) == b""


def test_shutdown_while_an_idle_reader_yields_ends_the_read() -> None:
    # The server interrupts idle reads when it shuts down; one that was
    # looking or yielding at that moment must still end at once (and the
    # session hear 421), not wait out its command timeout.
    async def main() -> tuple[bytes | None, float]:
        ours, peer = await connected_pair()
        stream = Stream(ours)
        result: list[bytes | None] = []
        start = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                result.append(await stream.receive(30.0, idle=True))

            nursery.start_soon(reader)
            await trio.lowlevel.checkpoint()  # the reader found nothing and yielded
            stream.interrupt()
        waited = trio.current_time() - start
        await stream.aclose()
        await peer.aclose()
        return result[0], waited

    data, waited = trio.run(main)
    assert data is None
    assert waited < 2.0
