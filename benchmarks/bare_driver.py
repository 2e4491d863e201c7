"""The asyncio server's I/O with a driver that parses nothing.

The smtp-core asyncio backend (its Protocol, read deadline, back-pressure
and write coalescing) runs a stand-in for the session driver that answers
like ``bare_sink.py``: 250 to every line, 354 to DATA, 221 to QUIT, and
after DATA everything up to CRLF "." CRLF swallowed with one find. No engine,
no checks. Its messages/s is the ceiling of the asyncio backend on this
machine: what is left between it and ``bare_sink.py`` is the backend's own
cost, and between it and the real server the engine's.

    .venv/bin/python benchmarks/bare_driver.py --port 2525
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import bare_sink  # this folder's: run as a script, the folder is on the path

import smtp_core as smtp
from backends._asyncio_protocol import Connection, Server
from backends._session import Close, Read, Request, SessionLimits, Write

EHLO = bare_sink.EHLO


def bare_driver(limits: SessionLimits) -> Generator[Request, Any, None]:
    """The bare sink's answers, as the session driver's requests."""
    read = Read(limits.command_timeout)
    yield Write(b"220 bare ESMTP\r\n")
    buffer = b""
    in_data = False
    while True:
        data = yield read
        if not data:
            break
        buffer = buffer + data if buffer else data
        pos = 0
        while True:
            if in_data:  # the CRLF ending DATA is kept in front of the content
                end = buffer.find(b"\r\n.\r\n", pos)
                if end < 0:
                    buffer = buffer[max(pos, len(buffer) - 4) :]
                    pos = 0
                    break
                yield Write(b"250 ok\r\n")
                in_data = False
                pos = end + 5
                continue
            eol = buffer.find(b"\n", pos)
            if eol < 0:
                break
            verb = buffer[pos : pos + 4].upper()
            if verb == b"DATA":
                yield Write(b"354 go ahead\r\n")
                in_data = True
                pos = eol - 1
            elif verb == b"QUIT":
                yield Write(b"221 bye\r\n")
                yield Close()
                return
            else:
                yield Write(EHLO if verb == b"EHLO" else b"250 ok\r\n")
                pos = eol + 1
        buffer = buffer[pos:] if pos else buffer
    yield Close()


class BareConnection(Connection):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.steps = bare_driver(self.server.limits)
        self.server.connections.add(self)
        self._advance(None)


async def serve(host: str, port: int) -> None:
    shared = Server(object(), smtp.ServerConfig(), SessionLimits(), None, None)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: BareConnection(shared), host, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    bare_sink.main(serve, "bare driver", __doc__)
