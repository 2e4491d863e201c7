"""Connection limit and graceful shutdown on the asyncio server."""

from __future__ import annotations

import asyncio
import socket

import pytest

from backends import asyncio as asyncio_backend
from backends._session import SessionLimits


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    lines = b""
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        lines += line
        if line[3:4] != b"-":
            return lines


class Keep:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        self.bodies.append(body.read())


def test_connections_over_the_limit_get_421():
    """RFC 5321 3.8 / 4.3.2: a server may refuse service with 421."""

    async def main() -> None:
        limits = SessionLimits(max_connections=1)
        server = await asyncio_backend.start_server(Keep(), "127.0.0.1", 0, limits=limits)
        port = server.sockets[0].getsockname()[1]
        first = await asyncio.open_connection("127.0.0.1", port)
        assert (await read_reply(first[0])).startswith(b"220")
        second = await asyncio.open_connection("127.0.0.1", port)
        assert (await read_reply(second[0])).startswith(b"421 4.7.0")
        assert await second[0].read() == b""  # and closed
        first[1].close()
        await asyncio_backend.shutdown(server, timeout=5)

    asyncio.run(main())


def test_graceful_shutdown_finishes_the_message_in_flight():
    """Idle sessions get 421 4.3.2 at once; a message being sent is
    completed and accepted, then its session gets 421 too."""
    handler = Keep()

    async def main() -> None:
        server = await asyncio_backend.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
        for reader in (idle_reader, busy_reader):
            await read_reply(reader)
        idle_writer.write(b"EHLO idle\r\n")
        await read_reply(idle_reader)
        busy_writer.write(b"EHLO busy\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
        for _ in range(4):
            await read_reply(busy_reader)
        busy_writer.write(b"Subject: in flight\r\n\r\nfirst half\r\n")
        await busy_writer.drain()
        stopping = asyncio.ensure_future(asyncio_backend.shutdown(server, timeout=10))
        assert (await read_reply(idle_reader)).startswith(b"421 4.3.2")
        busy_writer.write(b"second half\r\n.\r\n")
        assert (await read_reply(busy_reader)).startswith(b"250")
        assert (await read_reply(busy_reader)).startswith(b"421 4.3.2")
        await stopping
        for writer in (idle_writer, busy_writer):
            writer.close()

    asyncio.run(main())
    assert handler.bodies == [b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n"]


def _first_reply(sock) -> bytes:  # type: ignore[no-untyped-def]
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("name", ["sync", "trio", "anyio-asyncio", "anyio-trio"])
def test_connection_limit_on_the_other_backends(name: str):
    """The same limit, decided by the same driver, on every backend."""
    from test_tls import sync_server
    from test_trio_anyio import SERVERS

    servers = {"sync": sync_server, **SERVERS}
    limits = SessionLimits(max_connections=1)
    with (
        servers[name](Keep(), limits=limits) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as first,
    ):
        assert _first_reply(first).startswith(b"220")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            assert _first_reply(second).startswith(b"421 4.7.0")
