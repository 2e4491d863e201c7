"""The trio backend: SMTP servers and clients on trio streams and nurseries.

It only moves bytes: the shared drivers decide, the engine judges. Sessions
run shielded, so that cancelling ``serve`` is a graceful shutdown: idle
sessions are woken (their read's cancel scope cancelled) and hear 421, a
message in flight is finished, and only after a grace period is the rest cut.
"""

from __future__ import annotations

import ssl
from typing import Any

import trio

import smtp_core as smtp
from smtp_core import sasl

from ._async import AsyncClient, open_client, serve_stream
from ._client import prepare
from ._session import Lifecycle, Session, SessionLimits
from ._tls import server_config
from ._trio_stream import Stream, details

__all__ = ["AsyncClient", "connect", "serve"]


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
    shutdown_timeout: float = 10.0,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``nursery.start(serve, ...)`` returns the
    listeners once they listen. Cancelled, it stops accepting; sessions
    between transactions get 421 4.3.2 and close; messages in flight are
    finished first, for up to ``shutdown_timeout`` seconds."""
    effective = server_config(config, ssl_context, implicit_tls)
    session_limits = limits or SessionLimits()
    lifecycle = Lifecycle(session_limits.max_connections)
    sessions: dict[Stream, trio.CancelScope] = {}

    async def on_connection(stream: trio.abc.Stream) -> None:
        with trio.CancelScope(shield=True) as scope:  # only the shutdown ends it early
            wrapper = Stream(stream)
            sessions[wrapper] = scope
            try:
                await converse(wrapper, stream)
            finally:
                del sessions[wrapper]

    async def converse(wrapper: Stream, stream: trio.abc.Stream) -> None:
        session = Session(peer=_address(stream, True), local=_address(stream, False))
        if implicit_tls and isinstance(stream, trio.SSLStream):
            try:
                with trio.move_on_after(session_limits.command_timeout) as scope:
                    await stream.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError, OSError):
                return
            if scope.cancelled_caught:
                return  # no handshake within the command timeout
            session.tls, session.tls_info = True, details(stream)
        await serve_stream(
            wrapper, session, handler, effective, session_limits, ssl_context, auth, lifecycle
        )

    async with trio.open_nursery() as nursery:
        try:
            if implicit_tls and ssl_context is not None:
                await trio.serve_ssl_over_tcp(
                    on_connection,
                    port,
                    ssl_context,
                    host=host,
                    handler_nursery=nursery,
                    task_status=task_status,
                )
            else:
                await trio.serve_tcp(
                    on_connection,
                    port,
                    host=host,
                    handler_nursery=nursery,
                    task_status=task_status,
                )
        finally:
            # The listeners are closed: let open sessions hear 421 and finish.
            deadline = trio.current_time() + shutdown_timeout
            with trio.CancelScope(deadline=deadline, shield=True):
                lifecycle.stopping = True
                for wrapper in sessions:
                    wrapper.interrupt()
                while sessions:
                    await trio.sleep(0.01)
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
    with trio.fail_after(timeout):
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    return await open_client(Stream(stream), host, tls, context, config, starttls, timeout)
