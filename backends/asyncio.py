"""The asyncio backend: SMTP servers and clients on asyncio streams.

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

from ._async import AsyncClient, serve_stream
from ._client import ClientDriver, prepare
from ._session import HookFailed, Lifecycle, Session, SessionLimits
from ._tls import PLAINTEXT_AFTER_STARTTLS, server_config, tls_info

__all__ = ["AsyncClient", "connect", "serve", "shutdown", "start_server"]

_READ_SIZE = 65536
_LIFECYCLES: weakref.WeakKeyDictionary[asyncio.Server, tuple[Lifecycle, set[_Stream]]] = (
    weakref.WeakKeyDictionary()
)


class _Stream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._idle: asyncio.Task[Any] | None = None  # the task in an idle read
        self._expired = False

    async def receive(self, timeout: float, idle: bool = False) -> bytes | None:
        # A timer cancels the read, rather than wait_for's task per read:
        # this runs once per command and once per block of content.
        task = asyncio.current_task()
        assert task is not None
        self._expired = False
        self._idle = task if idle else None
        timer = asyncio.get_running_loop().call_later(timeout, self._expire, task)
        try:
            return await self.reader.read(_READ_SIZE)
        except asyncio.CancelledError:
            if not self._expired:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            return None  # a timeout, or a shutdown: the driver tells which
        finally:
            timer.cancel()
            self._idle = None

    def _expire(self, task: asyncio.Task[Any]) -> None:
        self._expired = True
        task.cancel()

    def interrupt(self) -> None:
        """End an idle read now (a shutdown); a read in a message goes on."""
        if self._idle is not None:
            self._expire(self._idle)

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
    """Start listening; returns the ``asyncio.Server`` (use it to close).

    With ``ssl_context`` the server offers STARTTLS, or with ``implicit_tls``
    speaks TLS from the first byte (RFC 8314); ``auth`` enables AUTH."""
    effective = server_config(config, ssl_context, implicit_tls)
    session_limits = limits or SessionLimits()
    lifecycle = Lifecycle(session_limits.max_connections)
    streams: set[_Stream] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        session = Session(
            peer=writer.get_extra_info("peername"),
            local=writer.get_extra_info("sockname"),
            tls=ssl_object is not None,
            tls_info=tls_info(ssl_object),
        )
        stream = _Stream(reader, writer)
        streams.add(stream)
        try:
            await serve_stream(
                stream, session, handler, effective, session_limits, ssl_context, auth, lifecycle
            )
        finally:
            streams.discard(stream)

    # The stream reader's limit bounds what asyncio buffers for us (back-pressure).
    server = await asyncio.start_server(
        on_connection, host, port, limit=_READ_SIZE, ssl=ssl_context if implicit_tls else None
    )
    _LIFECYCLES[server] = (lifecycle, streams)
    return server


async def shutdown(server: asyncio.Server, timeout: float = 30.0) -> None:
    """Stop accepting; sessions between transactions get 421 4.3.2 and close;
    messages in flight are finished first, for up to ``timeout`` seconds."""
    server.close()
    lifecycle, streams = _LIFECYCLES.pop(server)
    lifecycle.stopping = True
    for stream in list(streams):
        stream.interrupt()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while lifecycle.active and loop.time() < deadline:
        await asyncio.sleep(0.01)


async def serve(handler: object, host: str = "127.0.0.1", port: int = 8025, **options: Any) -> None:
    """Serve until cancelled (same options as ``start_server``)."""
    server = await start_server(handler, host, port, **options)
    try:
        await server.serve_forever()
    except asyncio.CancelledError:
        # Ctrl-C or a cancelled task: let open sessions hear 421 and finish.
        await asyncio.shield(shutdown(server, timeout=10.0))
        raise


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
