"""The anyio backend: SMTP servers and clients on anyio streams, so on
asyncio and on trio alike. It only moves bytes: the shared drivers decide,
the engine judges. Sessions run shielded, so that cancelling ``serve`` is a
graceful shutdown: idle sessions are woken (their read's cancel scope
cancelled) and hear 421, a message in flight is finished, and only after a
grace period is the rest cut."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream

import smtp_core as smtp
from smtp_core import sasl

from ._async import AsyncClient, open_client, reset_on_close, serve_stream
from ._client import prepare
from ._session import HookFailed, Lifecycle, Session, SessionLimits
from ._tls import server_config

__all__ = ["AsyncClient", "connect", "serve"]

_READ_SIZE = 65536


class _Stream:
    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self._idle: anyio.CancelScope | None = None  # an idle read's scope

    async def receive(self, timeout: float, idle: bool = False) -> bytes | None:
        with anyio.move_on_after(timeout) as scope:
            self._idle = scope if idle else None
            try:
                return await self.stream.receive(_READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return b""
        return None

    def interrupt(self) -> None:
        """End an idle read now (a shutdown); a read in a message goes on."""
        if self._idle is not None:
            self._idle.cancel()  # a scope already left ignores it

    async def send(self, data: bytes, timeout: float) -> None:
        try:
            with anyio.fail_after(timeout):
                await self.stream.send(data)
        except TimeoutError:
            raw = self.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
            if raw is not None:
                reset_on_close(raw)
            raise TimeoutError(f"the peer took no data for {timeout} s") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as error:
            # The peer is gone: end this session, never the server's task group.
            raise ConnectionResetError(str(error)) from error

    async def start_tls(
        self,
        context: ssl.SSLContext | None,
        *,
        server_side: bool,
        hostname: str | None,
        timeout: float,
    ) -> dict[str, Any] | HookFailed:
        if context is None:
            return HookFailed(RuntimeError("no TLS context"))
        try:
            with anyio.fail_after(timeout):
                wrapped = await TLSStream.wrap(
                    self.stream, server_side=server_side, hostname=hostname, ssl_context=context
                )
        except TimeoutError:
            return HookFailed(TimeoutError(f"no TLS handshake within {timeout} s"))
        except (anyio.BrokenResourceError, ssl.SSLError, OSError) as error:
            return HookFailed(error)
        self.stream = wrapped
        return _details(wrapped)

    async def aclose(self) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            await self.stream.aclose()

    move_on_after = staticmethod(anyio.move_on_after)


def _details(stream: TLSStream) -> dict[str, Any]:
    cipher = stream.extra(TLSAttribute.cipher, None)
    return {
        "version": stream.extra(TLSAttribute.tls_version, None),
        "cipher": cipher[0] if cipher else None,
        "peer_certificate": stream.extra(TLSAttribute.peer_certificate, None),
    }


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
    shutdown_timeout: float = 10.0,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_group.start(serve, ...)`` returns the
    port once it listens. Cancelled, it stops accepting; sessions between
    transactions get 421 4.3.2 and close; messages in flight are finished
    first, for up to ``shutdown_timeout`` seconds."""
    effective = server_config(config, ssl_context, implicit_tls)
    session_limits = limits or SessionLimits()
    lifecycle = Lifecycle(session_limits.max_connections)
    sessions: dict[_Stream, anyio.CancelScope] = {}

    async def on_connection(client: anyio.abc.SocketStream) -> None:
        with anyio.CancelScope(shield=True) as scope:  # only the shutdown ends it early
            stream = _Stream(client)
            sessions[stream] = scope
            try:
                await converse(stream, client)
            finally:
                del sessions[stream]

    async def converse(stream: _Stream, client: anyio.abc.SocketStream) -> None:
        session = Session(
            peer=client.extra(anyio.abc.SocketAttribute.remote_address),  # type: ignore[arg-type]
            local=client.extra(anyio.abc.SocketAttribute.local_address),  # type: ignore[arg-type]
        )
        if implicit_tls:
            result = await stream.start_tls(
                ssl_context, server_side=True, hostname=None, timeout=session_limits.command_timeout
            )
            if isinstance(result, HookFailed):
                await stream.aclose()
                return
            session.tls, session.tls_info = True, result
        await serve_stream(
            stream, session, handler, effective, session_limits, ssl_context, auth, lifecycle
        )

    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with anyio.create_task_group() as task_group:
        try:
            async with listener:
                task_status.started(int(listener.extra(anyio.abc.SocketAttribute.local_port)))
                await listener.serve(on_connection, task_group)
        finally:
            # The listener is closed: let open sessions hear 421 and finish.
            with anyio.move_on_after(shutdown_timeout, shield=True):
                lifecycle.stopping = True
                for stream in sessions:
                    stream.interrupt()
                while sessions:
                    await anyio.sleep(0.01)
            for scope in sessions.values():
                scope.cancel()  # past the grace period: cut


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
    with anyio.fail_after(timeout):
        stream = _Stream(await anyio.connect_tcp(host, port))
    return await open_client(stream, host, tls, context, config, starttls, timeout)
