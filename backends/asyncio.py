"""The asyncio backend: SMTP servers on an asyncio Protocol, clients on
asyncio streams.

It only moves bytes and awaits: every decision is the shared drivers'
(``backends._session``, ``backends._client``) and every protocol rule the
engine's (``smtp_core``).
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from typing import Any

import smtp_core as smtp
from smtp_core import sasl

from ._async import AsyncClient
from ._asyncio_protocol import Connection, Server
from ._client import ClientDriver, prepare
from ._session import HookFailed, SessionLimits
from ._tls import PLAINTEXT_AFTER_STARTTLS, server_config, tls_info

__all__ = ["AsyncClient", "connect", "serve", "shutdown", "start_server"]

_READ_SIZE = 65536
_SERVERS: weakref.WeakKeyDictionary[asyncio.Server, Server] = weakref.WeakKeyDictionary()


async def start_server(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    config: smtp.ServerConfig | None = None,
    limits: SessionLimits | None = None,
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    auth: sasl.Verifiers | None = None,
) -> asyncio.Server:
    """Start listening; returns the ``asyncio.Server`` (stop it with ``shutdown``).

    With ``ssl_context`` the server offers STARTTLS, or with ``implicit_tls``
    speaks TLS from the first byte (RFC 8314); ``auth`` enables AUTH."""
    effective = server_config(config, ssl_context, implicit_tls)
    shared = Server(handler, effective, limits or SessionLimits(), ssl_context, auth)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(shared),
        host,
        port,
        ssl=ssl_context if implicit_tls else None,
        backlog=1024,
    )
    _SERVERS[server] = shared
    return server


async def shutdown(server: asyncio.Server, timeout: float = 30.0) -> None:
    """Stop accepting; sessions between transactions get 421 4.3.2 and close;
    messages in flight are finished first, for up to ``timeout`` seconds,
    after which the connections left are cut."""
    server.close()
    shared = _SERVERS.pop(server, None)
    if shared is None:
        return
    shared.lifecycle.stopping = True
    for connection in list(shared.connections):
        connection.interrupt()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while shared.connections and loop.time() < deadline:
        await asyncio.sleep(0.01)
    for connection in list(shared.connections):
        connection.transport.abort()
    await asyncio.sleep(0)  # let connection_lost run


async def serve(handler: object, host: str = "127.0.0.1", port: int = 8025, **options: Any) -> None:
    """Serve until cancelled (same options as ``start_server``)."""
    server = await start_server(handler, host, port, **options)
    try:
        await server.serve_forever()
    except asyncio.CancelledError:
        # Ctrl-C or a cancelled task: let open sessions hear 421 and finish.
        await asyncio.shield(shutdown(server, timeout=10.0))
        raise


class _Stream(asyncio.Protocol):
    """The client's stream (see ``backends._async.AsyncStream``), as an
    asyncio Protocol: a read is one future, its timeout one lazily moved
    timer, with no task per read as ``wait_for`` would make."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport
        self.inbox: list[bytes] = []
        self.eof = False
        self.reader: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport  # asyncio sets TCP_NODELAY on its own

    def data_received(self, data: bytes) -> None:
        self.inbox.append(data)
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)
        elif len(self.inbox) > 16:
            self.transport.pause_reading()  # nobody is reading: back-pressure

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def _end(self) -> None:
        self.eof = True
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def _expire(self) -> None:
        self.timer = None
        if self.reader is None or self.reader.done():
            return
        if self.loop.time() < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._expire)
        else:
            self.reader.set_result(None)

    async def receive(self, timeout: float, idle: bool = False) -> bytes | None:
        if not self.inbox and not self.eof:
            self.reader = self.loop.create_future()
            self.deadline = deadline = self.loop.time() + timeout
            if self.timer is None or self.timer.when() > deadline:
                if self.timer is not None:
                    self.timer.cancel()
                self.timer = self.loop.call_at(deadline, self._expire)
            await self.reader
            self.reader = None
            if not self.inbox and not self.eof:
                return None  # timed out
        if not self.inbox:
            return b""
        data = b"".join(self.inbox) if len(self.inbox) > 1 else self.inbox[0]
        self.inbox.clear()
        self.transport.resume_reading()
        return data

    async def send(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.transport.write(data)
        if self.writable is not None:  # the peer is not keeping up
            await self.writable

    async def start_tls(
        self, context: ssl.SSLContext | None, *, server_side: bool, hostname: str | None
    ) -> dict[str, Any] | HookFailed:
        if context is None:
            return HookFailed(RuntimeError("no TLS context"))
        # Bytes read ahead and not handed out would be taken as decrypted
        # after the handshake: they are the injection.
        if self.inbox:
            return HookFailed(RuntimeError(PLAINTEXT_AFTER_STARTTLS))
        try:
            transport = await self.loop.start_tls(
                self.transport, self, context, server_side=server_side, server_hostname=hostname
            )
        except (ssl.SSLError, OSError) as error:
            return HookFailed(error)
        assert transport is not None
        self.transport = transport
        return tls_info(transport.get_extra_info("ssl_object"))

    async def aclose(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport.close()


async def connect(
    host: str,
    port: int = 25,
    *,
    tls: str = "none",
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 60.0,
    config: smtp.ClientConfig | None = None,
) -> AsyncClient:
    """Connect, read the greeting, say EHLO (HELO if refused) and, per
    ``tls``, go secure: "none", "starttls" (required: never goes on in
    plaintext), "opportunistic", or "implicit" (RFC 8314)."""
    config, context, starttls = prepare(tls, ssl_context, config)
    implicit = context if tls == "implicit" else None
    loop = asyncio.get_running_loop()
    opening = loop.create_connection(
        _Stream, host, port, ssl=implicit, server_hostname=host if implicit else None
    )
    _, stream = await asyncio.wait_for(opening, timeout)
    driver = ClientDriver(config, timeout=timeout, tls=implicit is not None)
    client = AsyncClient(stream, driver, host, context)
    await client.handshake(starttls)
    return client
