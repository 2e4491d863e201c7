"""The asyncio backend: an SMTP server on asyncio streams.

It only moves bytes and awaits: every decision is the shared session driver's
(``backends._session``) and every protocol rule the engine's (``smtp_core``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Generator, Iterable, Sequence
from email.message import EmailMessage
from typing import Any

import smtp_core as smtp

from ._client import ClientDriver, SendResult, message_parts
from ._session import Call, Close, HookFailed, Read, Session, SessionDriver, SessionLimits, Write

__all__ = ["AsyncClient", "connect", "serve", "start_server"]

_READ_SIZE = 65536


async def _perform(request: Call, handler: object) -> Any:
    try:
        result = getattr(handler, request.name)(*request.args)
        if inspect.isawaitable(result):
            result = await result
    except Exception as error:  # the driver turns it into 451 4.3.0
        return HookFailed(error)
    return result


async def handle_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: object,
    config: smtp.ServerConfig,
    limits: SessionLimits,
) -> None:
    """Serve one connection until the session ends."""
    session = Session(
        peer=writer.get_extra_info("peername"),
        local=writer.get_extra_info("sockname"),
        tls=writer.get_extra_info("sslcontext") is not None,
    )
    steps = SessionDriver(handler, config, session, limits).run()
    result: Any = None
    try:
        while True:
            request = steps.send(result)
            result = None
            if isinstance(request, Read):
                try:
                    result = await asyncio.wait_for(reader.read(_READ_SIZE), request.timeout)
                except asyncio.TimeoutError:
                    result = None
                except OSError:
                    result = b""
            elif isinstance(request, Write):
                writer.write(request.data)
                await writer.drain()  # write flow control: wait for the peer
            elif isinstance(request, Call):
                result = await _perform(request, handler)
            elif isinstance(request, Close):
                break
    except (ConnectionError, OSError):
        pass
    finally:
        steps.close()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def start_server(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    config: smtp.ServerConfig | None = None,
    limits: SessionLimits | None = None,
) -> asyncio.Server:
    """Start listening; returns the ``asyncio.Server`` (use it to close)."""
    server_config = config or smtp.ServerConfig()
    session_limits = limits or SessionLimits()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle_connection(reader, writer, handler, server_config, session_limits)

    # The stream reader's limit bounds what asyncio buffers for us (back-pressure).
    return await asyncio.start_server(on_connection, host, port, limit=_READ_SIZE)


async def serve(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    config: smtp.ServerConfig | None = None,
    limits: SessionLimits | None = None,
) -> None:
    """Serve until cancelled."""
    server = await start_server(handler, host, port, config=config, limits=limits)
    async with server:
        await server.serve_forever()


class AsyncClient:
    """An asyncio SMTP client connection (see ``connect``)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, driver: ClientDriver
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.driver = driver

    async def _run(self, steps: Generator[Any, Any, Any]) -> Any:
        result: Any = None
        while True:
            try:
                request = steps.send(result)
            except StopIteration as stop:
                return stop.value
            result = None
            if isinstance(request, Read):
                try:
                    result = await asyncio.wait_for(self.reader.read(_READ_SIZE), request.timeout)
                except asyncio.TimeoutError:
                    result = None
            elif isinstance(request, Write):
                self.writer.write(request.data)
                await self.writer.drain()

    @property
    def extensions(self) -> smtp.Extensions | None:
        """What the server offered in its EHLO reply."""
        return self.driver.conn.extensions

    async def sendmail(
        self,
        from_addr: str | smtp.Address | None,
        to_addrs: str | smtp.Address | Iterable[str | smtp.Address],
        msg: bytes | Iterable[bytes],
    ) -> SendResult:
        """Send ``msg`` (bytes, or an iterable of chunks streamed as they come)."""
        recipients = [to_addrs] if isinstance(to_addrs, (str, smtp.Address)) else to_addrs
        return await self._run(self.driver.send(from_addr, recipients, msg))  # type: ignore[no-any-return]

    async def send_message(
        self,
        msg: EmailMessage,
        from_addr: str | smtp.Address | None = None,
        to_addrs: Sequence[str | smtp.Address] | None = None,
    ) -> SendResult:
        """Send an ``EmailMessage``; envelope from its headers unless given."""
        sender, recipients, content = message_parts(msg, from_addr, to_addrs)
        return await self.sendmail(sender, recipients, content)

    async def quit(self) -> None:
        try:
            await self._run(self.driver.quit())
        finally:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            await self.quit()
        else:
            self.writer.close()


async def connect(
    host: str,
    port: int = 25,
    *,
    timeout: float = 60.0,
    config: smtp.ClientConfig | None = None,
) -> AsyncClient:
    """Connect, read the greeting and say EHLO (HELO if EHLO is refused)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    client = AsyncClient(reader, writer, ClientDriver(config, timeout=timeout))
    try:
        await client._run(client.driver.handshake())
    except BaseException:
        writer.close()
        raise
    return client
