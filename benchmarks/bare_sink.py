"""A bare asyncio SMTP sink: the ceiling for a Python SMTP server on asyncio.

It parses nothing: 220 on connect, 354 to a line starting with DATA, 221 to
QUIT (then closes), 250 to every other line (EHLO gets a 250 that advertises
PIPELINING), and after DATA it swallows everything up to a line holding a
lone dot. Replies to a pipelined group go out in one write. It uses an
``asyncio.BufferedProtocol`` (no streams) reading into one buffer it keeps,
so it is as cheap as asyncio gets: a plain ``Protocol`` gets a fresh 256 KiB
object per read, which glibc maps and unmaps each time (mmap, mremap,
munmap and page faults), and that alone more than halved this sink's
messages/s at 1 KiB over 8 connections here.

    .venv/bin/python benchmarks/bare_sink.py --port 2525
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

EHLO = b"250-bare\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1073741824\r\n"
MAX_LINE = 65536  # a command line longer than this closes the connection
READ_SIZE = 262144  # as much as asyncio reads at once for a plain Protocol


class BareSink(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.in_data = False
        self.space = memoryview(bytearray(READ_SIZE))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.space

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.space[:nbytes]))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 bare ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buffer = self.buffer + data if self.buffer else data
        out: list[bytes] = []
        pos = 0
        while True:
            if self.in_data:
                # The buffer holds the CRLF before the content (see below), so
                # the end is always CRLF . CRLF; keep 4 octets of tail only.
                end = buffer.find(b"\r\n.\r\n", pos)
                if end < 0:
                    buffer = buffer[max(pos, len(buffer) - 4) :]
                    pos = 0
                    break
                out.append(b"250 ok\r\n")
                self.in_data = False
                pos = end + 5
                continue
            eol = buffer.find(b"\n", pos)
            if eol < 0:
                buffer = buffer[pos:]
                pos = 0
                if len(buffer) > MAX_LINE:
                    self.transport.close()
                break
            verb = buffer[pos : pos + 4].upper()
            if verb == b"DATA":
                out.append(b"354 go ahead\r\n")
                self.in_data = True
                pos = eol - 1  # keep the CRLF ending DATA in front of the content
            elif verb == b"EHLO":
                out.append(EHLO)
                pos = eol + 1
            elif verb == b"QUIT":
                self.transport.write(b"".join(out) + b"221 bye\r\n")
                self.transport.close()
                return
            else:
                out.append(b"250 ok\r\n")
                pos = eol + 1
        self.buffer = buffer[pos:] if pos else buffer
        if out:
            self.transport.write(b"".join(out))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BareSink, host, port)
    async with server:
        await server.serve_forever()


def main(
    run: Callable[[str, int], Coroutine[Any, Any, None]] = serve,
    name: str = "bare sink",
    doc: str = __doc__,
) -> None:
    """The command line of this sink, or of another server ``run`` (the bare
    driver uses it too)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    args = parser.parse_args()
    print(f"{name} on {args.host}:{args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
