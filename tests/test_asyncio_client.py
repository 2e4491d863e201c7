"""The asyncio client runs each call from its protocol's callbacks: replies
that never come, a peer that leaves, a cancelled call and a slow reader, each
against a scripted asyncio server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from backends import ServiceRefused
from backends import asyncio as asyncio_backend

Script = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]


async def answer(line: bytes, writer: asyncio.StreamWriter) -> bool:
    """The replies of a server that takes everything (False after QUIT)."""
    verb = line.strip().upper()
    if verb.startswith(b"EHLO"):
        writer.write(b"250-test\r\n250 PIPELINING\r\n")
    elif verb == b"DATA":
        writer.write(b"354 go on\r\n")
    elif verb == b"QUIT":
        writer.write(b"221 bye\r\n")
        return False
    elif verb in (b".", b"RSET") or verb.startswith((b"MAIL", b"RCPT")):
        writer.write(b"250 ok\r\n")
    return True


async def serve(script: Script, received: list[bytes]) -> asyncio.Server:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test\r\n")
        while line := await reader.readline():
            received.append(line)
            if not await script(line, writer):
                break
        writer.close()

    return await asyncio.start_server(session, "127.0.0.1", 0)


def run(script: Script, body: Callable[[int, list[bytes]], Awaitable[None]]) -> list[bytes]:
    """``body(port, received)`` against a server following ``script``; what
    the server received."""
    received: list[bytes] = []

    async def main() -> None:
        server = await serve(script, received)
        async with server:
            await asyncio.wait_for(body(server.sockets[0].getsockname()[1], received), 30)

    asyncio.run(main())
    return received


def test_a_reply_that_never_comes_is_a_timeout():
    async def silent_after_ehlo(line: bytes, writer: asyncio.StreamWriter) -> bool:
        return await answer(line, writer) if line.upper().startswith(b"EHLO") else True

    async def body(port: int, received: list[bytes]) -> None:
        client = await asyncio_backend.connect("127.0.0.1", port, timeout=0.3)
        with pytest.raises(ServiceRefused, match=r"no reply within 0\.3 s"):
            await client.sendmail("a@example.org", ["b@example.org"], b"Hi.\r\n")
        await client.stream.aclose()

    run(silent_after_ehlo, body)


def test_a_peer_that_leaves_mid_transaction_ends_the_call():
    async def leave_at_data(line: bytes, writer: asyncio.StreamWriter) -> bool:
        return line.strip().upper() != b"DATA" and await answer(line, writer)

    async def body(port: int, received: list[bytes]) -> None:
        client = await asyncio_backend.connect("127.0.0.1", port)
        with pytest.raises(ServiceRefused, match="closed the connection"):
            await client.sendmail("a@example.org", ["b@example.org"], b"Hi.\r\n")
        await client.quit()  # nothing left to say: the connection is closed

    run(leave_at_data, body)


def test_a_cancelled_call_goes_no_further():
    """The replies to the group come after the caller gave up: the content
    must never be sent, since no one is there to hear its outcome."""
    release = asyncio.Event()

    async def slow_group(line: bytes, writer: asyncio.StreamWriter) -> bool:
        if line.strip().upper() == b"DATA":
            await release.wait()
        return await answer(line, writer)

    async def body(port: int, received: list[bytes]) -> None:
        client = await asyncio_backend.connect("127.0.0.1", port)
        call = asyncio.ensure_future(
            client.sendmail("a@example.org", ["b@example.org"], b"Secret.\r\n")
        )
        while not any(line.startswith(b"DATA") for line in received):
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        release.set()
        await asyncio.sleep(0.2)  # the 250, 250 and 354 arrive now
        await client.stream.aclose()

    received = run(slow_group, body)
    assert b"Secret.\r\n" not in received


def test_a_message_larger_than_the_socket_buffers_waits_for_the_reader():
    """Writing pauses while the peer does not read (pause_writing) and goes
    on when it catches up; the message arrives whole."""
    content = b"".join(b"%06d " % n + b"x" * 991 + b"\r\n" for n in range(8_000))

    async def late_reader(line: bytes, writer: asyncio.StreamWriter) -> bool:
        going_on = await answer(line, writer)
        if line.strip().upper() == b"DATA":
            await asyncio.sleep(0.5)  # the 8 MB pile up in the client's transport
        return going_on

    async def body(port: int, received: list[bytes]) -> None:
        async with await asyncio_backend.connect("127.0.0.1", port) as client:
            result = await client.sendmail("a@example.org", ["b@example.org"], content)
            assert result.reply is not None and result.reply.code == 250

    received = run(late_reader, body)
    start = received.index(b"DATA\r\n") + 1
    assert b"".join(received[start : received.index(b".\r\n")]) == content
