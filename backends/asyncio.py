"""The asyncio backend: SMTP servers on an asyncio Protocol, clients on
asyncio streams.

It only moves bytes and awaits: every decision is the shared drivers'
(``backends._session``, ``backends._client``) and every protocol rule the
engine's (``smtp_core``).
"""

from __future__ import annotations

import asyncio
import contextlib
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


class _Stream:
    """The client's stream (see ``backends._async.AsyncStream``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def receive(self, timeout: float, idle: bool = False) -> bytes | None:
        try:
            return await asyncio.wait_for(self.reader.read(_READ_SIZE), timeout)
        except asyncio.TimeoutError:
            return None

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        # Write flow control: wait for the peer only when a backlog builds up.
        if self.writer.transport.get_write_buffer_size() > _READ_SIZE:
            await self.writer.drain()

    async def start_tls(
        self, context: ssl.SSLContext | None, *, server_side: bool, hostname: str | None
    ) -> dict[str, Any] | HookFailed:
        if context is None:
            return HookFailed(RuntimeError("no TLS context"))
        # Bytes asyncio read ahead but did not hand out would be taken as
        # decrypted after the handshake: they are the injection.
        if getattr(self.reader, "_buffer", b""):
            return HookFailed(RuntimeError(PLAINTEXT_AFTER_STARTTLS))
        start_tls = getattr(self.writer, "start_tls", None)  # from Python 3.11 on
        if start_tls is None:
            return HookFailed(RuntimeError("STARTTLS on asyncio streams needs Python 3.11"))
        try:
            await start_tls(context, server_hostname=hostname)
        except (ssl.SSLError, OSError) as error:
            return HookFailed(error)
        return tls_info(self.writer.get_extra_info("ssl_object"))

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


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
    opening = asyncio.open_connection(host, port, ssl=implicit, limit=_READ_SIZE)
    reader, writer = await asyncio.wait_for(opening, timeout)
    driver = ClientDriver(config, timeout=timeout, tls=implicit is not None)
    client = AsyncClient(_Stream(reader, writer), driver, host, context)
    await client.handshake(starttls)
    return client
