"""The asyncio backend: SMTP servers and clients on asyncio Protocols.

It only moves bytes and awaits: every decision is the shared drivers'
(``backends._session``, ``backends._client``) and every protocol rule the
engine's (``smtp_core``).
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Callable
from typing import Any

import smtp_core as smtp
from smtp_core import sasl

from ._asyncio_client import AsyncClient, ClientProtocol
from ._asyncio_protocol import Connection, Server
from ._client import ClientDriver, prepare
from ._session import SessionLimits
from ._tls import server_config

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
        ssl_handshake_timeout=shared.limits.command_timeout if implicit_tls else None,
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
    cut = list(shared.connections)
    for connection in cut:
        connection.transport.abort()
    await asyncio.sleep(0)  # let connection_lost run
    # A hook that a cut session still calls (on_abandon, if async) may finish,
    # for as long as a command may take.
    tasks = [c.task for c in cut if c.task is not None and not c.task.done()]
    if tasks:
        await asyncio.wait(tasks, timeout=shared.limits.command_timeout)


async def serve(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    started: Callable[[asyncio.Server], object] | None = None,
    shutdown_timeout: float = 10.0,
    **options: Any,
) -> None:
    """Serve until cancelled, then shut down gracefully for up to
    ``shutdown_timeout`` seconds (same options as ``start_server``);
    ``started`` is called with the server once it listens. Stopped by
    ``shutdown(server)`` instead, it returns."""
    server = await start_server(handler, host, port, **options)
    if started is not None:
        started(server)
    try:
        await server.serve_forever()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)  # Python 3.11+
        if server not in _SERVERS and not (cancelling and cancelling()):
            return  # shutdown() stopped it (serve_forever ends cancelled then)
        # Ctrl-C or a cancelled task: let open sessions hear 421 and finish.
        await asyncio.shield(shutdown(server, timeout=shutdown_timeout))
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
    loop = asyncio.get_running_loop()
    opening = loop.create_connection(
        ClientProtocol, host, port, ssl=implicit, server_hostname=host if implicit else None
    )
    _, stream = await asyncio.wait_for(opening, timeout)
    driver = ClientDriver(config, timeout=timeout, tls=implicit is not None)
    client = AsyncClient(stream, driver, host, context)
    await client.handshake(starttls)
    return client
