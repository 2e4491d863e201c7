"""The trio backend: SMTP servers and clients on trio streams and nurseries.

It only moves bytes: the shared drivers decide, the engine judges.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import trio

import smtp_core as smtp
from smtp_core import sasl

from ._async import AsyncClient, open_client, serve_stream
from ._client import prepare
from ._session import HookFailed, Lifecycle, Session, SessionLimits
from ._tls import server_config

__all__ = ["AsyncClient", "connect", "serve"]

_READ_SIZE = 65536


class _Stream:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def receive(self, timeout: float, idle: bool = False) -> bytes | None:
        with trio.move_on_after(timeout):
            try:
                return bytes(await self.stream.receive_some(_READ_SIZE))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        return None

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)  # returns once the peer has taken it

    async def start_tls(
        self, context: ssl.SSLContext | None, *, server_side: bool, hostname: str | None
    ) -> dict[str, Any] | HookFailed:
        if context is None:
            return HookFailed(RuntimeError("no TLS context"))
        wrapped = trio.SSLStream(
            self.stream, context, server_side=server_side, server_hostname=hostname
        )
        try:
            await wrapped.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as error:
            return HookFailed(error)
        self.stream = wrapped
        return _details(wrapped)

    async def aclose(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, OSError):
            await self.stream.aclose()


def _details(stream: trio.SSLStream[Any]) -> dict[str, Any]:
    cipher = stream.cipher()
    return {
        "version": stream.version(),
        "cipher": cipher[0] if cipher else None,
        "peer_certificate": stream.getpeercert(),
    }


def _address(stream: trio.abc.Stream, peer: bool) -> tuple[str, int] | None:
    socket = getattr(getattr(stream, "transport_stream", stream), "socket", None)
    if socket is None:
        return None
    name = socket.getpeername() if peer else socket.getsockname()
    return (str(name[0]), int(name[1]))


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
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``nursery.start(serve, ...)`` returns the
    listeners once they listen."""
    effective = server_config(config, ssl_context, implicit_tls)
    session_limits = limits or SessionLimits()
    lifecycle = Lifecycle(session_limits.max_connections)

    async def on_connection(stream: trio.abc.Stream) -> None:
        session = Session(peer=_address(stream, True), local=_address(stream, False))
        if implicit_tls and isinstance(stream, trio.SSLStream):
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError, OSError):
                return
            session.tls, session.tls_info = True, _details(stream)
        await serve_stream(
            _Stream(stream),
            session,
            handler,
            effective,
            session_limits,
            ssl_context,
            auth,
            lifecycle,
        )

    if implicit_tls and ssl_context is not None:
        await trio.serve_ssl_over_tcp(
            on_connection, port, ssl_context, host=host, task_status=task_status
        )
    else:
        await trio.serve_tcp(on_connection, port, host=host, task_status=task_status)


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
    ``tls``, go secure: "none", "starttls", "opportunistic" or "implicit"."""
    config, context, starttls = prepare(tls, ssl_context, config)
    with trio.fail_after(timeout):
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    return await open_client(_Stream(stream), host, tls, context, config, starttls, timeout)
