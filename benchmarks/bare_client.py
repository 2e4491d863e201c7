"""A bare pipelining asyncio SMTP client: the ceiling for a Python client.

It parses nothing beyond finding the end of the EHLO reply: per message it
writes MAIL FROM, RCPT TO and DATA as one pipelined group (RFC 2920), counts
three reply lines, writes the (already dot-stuffed) content and the final
dot, counts one reply line, and goes on. A reply line starting with 4 or 5
fails the run (a cheap scan, so a refusal is never counted as a message).
It uses an ``asyncio.BufferedProtocol`` (no streams) reading into one
buffer it keeps: a plain ``Protocol`` gets a fresh 256 KiB object per read,
which glibc maps and unmaps every time.

    .venv/bin/python benchmarks/bare_client.py --port 2525 --count 1000 --connections 8
"""

from __future__ import annotations

import argparse
import asyncio
import time


class BareClient(asyncio.BufferedProtocol):
    """One session sending ``count`` copies of ``wire`` (the dot-stuffed
    content with its final dot) from ``sender`` to ``recipient``."""

    def __init__(self, sender: str, recipient: str, wire: bytes, count: int) -> None:
        self.envelope = f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()
        self.wire = wire
        self.left = count
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.stage = "greeting"
        self.waiting = 1  # reply lines still expected at this stage
        self.tail = b""
        self.sent = 0
        self.starts_line = True  # the next data begins a reply line
        self.space = memoryview(bytearray(65536))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.space

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.space[:nbytes]))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError(f"closed during {self.stage}"))

    def fail(self, data: bytes) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(f"refused during {self.stage}: {data[:200]!r}"))
        assert self.transport is not None
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        starts_line, self.starts_line = self.starts_line, data.endswith(b"\n")
        if (starts_line and data[:1] in (b"4", b"5")) or b"\n4" in data or b"\n5" in data:
            self.fail(data)
            return
        if self.stage == "ehlo":
            # The only multi-line reply: it ends with a line "250 ...".
            self.tail = (self.tail + data)[-65536:]
            if not (self.tail.startswith(b"250 ") or b"\n250 " in self.tail):
                return
            self.waiting = 0
        else:
            self.waiting -= data.count(b"\n")
            if self.waiting > 0:
                return
        if self.stage == "greeting":
            self.stage, self.waiting = "ehlo", 1
            transport.write(b"EHLO bare.example\r\n")
        elif self.stage in ("ehlo", "end"):
            if self.stage == "end":
                self.sent += 1
                self.left -= 1
            if self.left > 0:
                self.stage, self.waiting = "envelope", 3
                transport.write(self.envelope)
            else:
                self.stage, self.waiting = "quit", 1
                transport.write(b"QUIT\r\n")
        elif self.stage == "envelope":
            self.stage, self.waiting = "end", 1
            transport.write(self.wire)
        elif self.stage == "quit":
            self.stage = "closed"
            if not self.done.done():
                self.done.set_result(self.sent)
            transport.close()


def wire_form(content: bytes) -> bytes:
    """``content`` dot-stuffed, ending in CRLF, with the final dot line."""
    stuffed = content.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


async def send_all(
    host: str,
    port: int,
    content: bytes,
    count: int,
    connections: int = 1,
    *,
    sender: str = "a@example.org",
    recipient: str = "b@example.org",
    timeout: float = 300.0,
) -> int:
    """``connections`` concurrent sessions, each sending ``count`` messages;
    the number of messages the server accepted."""
    loop = asyncio.get_running_loop()
    wire = wire_form(content)
    clients: list[BareClient] = []
    transports: list[asyncio.BaseTransport] = []
    try:
        for _ in range(connections):
            transport, client = await loop.create_connection(
                lambda: BareClient(sender, recipient, wire, count), host, port
            )
            transports.append(transport)
            clients.append(client)
        results = await asyncio.wait_for(
            asyncio.gather(*(client.done for client in clients)), timeout
        )
    finally:
        for opened in transports:
            opened.close()
    return sum(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--count", type=int, default=1000, help="messages per connection")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--size", type=int, default=1024, help="octets per message")
    args = parser.parse_args()
    line = b"x" * 74 + b"\r\n"
    content = (b"Subject: bare\r\n\r\n" + line * (args.size // len(line) + 1))[: args.size]
    start = time.perf_counter()
    sent = asyncio.run(send_all(args.host, args.port, content, args.count, args.connections))
    elapsed = time.perf_counter() - start
    print(f"{sent} messages in {elapsed:.3f} s: {sent / elapsed:,.0f} msgs/s")


if __name__ == "__main__":
    main()
