"""The asyncio backend: an SMTP server on asyncio streams.

It only moves bytes and awaits: every decision is the shared session driver's
(``backends._session``) and every protocol rule the engine's (``smtp_core``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
from typing import Any

import smtp_core as smtp
from smtp_core import sasl

from ._asyncio_client import AsyncClient, connect, start_tls_on
from ._session import (
    Call,
    Close,
    HookFailed,
    Read,
    Session,
    SessionDriver,
    SessionLimits,
    StartTls,
    Write,
)
from ._tls import server_config, tls_info

__all__ = ["AsyncClient", "connect", "serve", "start_server"]

# The client half lives in its own module; the API is one: backends.asyncio.

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
    ssl_context: ssl.SSLContext | None = None,
    auth: sasl.Verifiers | None = None,
) -> None:
    """Serve one connection until the session ends."""
    ssl_object = writer.get_extra_info("ssl_object")
    session = Session(
        peer=writer.get_extra_info("peername"),
        local=writer.get_extra_info("sockname"),
        tls=ssl_object is not None,
        tls_info=tls_info(ssl_object),
    )
    steps = SessionDriver(handler, config, session, limits, auth).run()
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
            elif isinstance(request, StartTls):
                result = await start_tls_on(reader, writer, ssl_context, None)
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
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    auth: sasl.Verifiers | None = None,
) -> asyncio.Server:
    """Start listening; returns the ``asyncio.Server`` (use it to close).

    With ``ssl_context`` the server offers STARTTLS, or with
    ``implicit_tls`` speaks TLS from the first byte (RFC 8314)."""
    effective = server_config(config, ssl_context, implicit_tls)
    session_limits = limits or SessionLimits()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle_connection(
            reader, writer, handler, effective, session_limits, ssl_context, auth
        )

    # The stream reader's limit bounds what asyncio buffers for us (back-pressure).
    return await asyncio.start_server(
        on_connection,
        host,
        port,
        limit=_READ_SIZE,
        ssl=ssl_context if implicit_tls else None,
    )


async def serve(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    config: smtp.ServerConfig | None = None,
    limits: SessionLimits | None = None,
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    auth: sasl.Verifiers | None = None,
) -> None:
    """Serve until cancelled."""
    server = await start_server(
        handler,
        host,
        port,
        config=config,
        limits=limits,
        ssl_context=ssl_context,
        implicit_tls=implicit_tls,
        auth=auth,
    )
    async with server:
        await server.serve_forever()
