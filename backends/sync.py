"""The blocking backend: an SMTP server on sockets, a thread per connection.

Like every backend it only moves bytes: the session driver
(``backends._session``) decides, the engine (``smtp_core``) judges. Hooks are
plain functions here; an ``async def`` hook is a configuration error, which
the driver answers with 451 4.3.0. How a connection's bytes move (and how
an idle session hears of a shutdown) is ``backends._sync_io``.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import smtp_core as smtp
from smtp_core import sasl

from ._session import (
    Call,
    Close,
    Lifecycle,
    Read,
    Session,
    SessionDriver,
    SessionLimits,
    StartTls,
    Write,
)
from ._sync_client import Client, connect
from ._sync_io import Channel, perform
from ._sync_threads import ReusedThreads
from ._tls import server_config, tls_info

# The client half lives in its own module; the API is one: backends.sync.
__all__ = ["Client", "SmtpServer", "connect", "serve", "start_server"]


def handle_connection(
    sock: socket.socket,
    handler: object,
    config: smtp.ServerConfig,
    limits: SessionLimits,
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    auth: sasl.Verifiers | None = None,
    lifecycle: Lifecycle | None = None,
    sockets: set[socket.socket] | None = None,
) -> None:
    """Serve one connection until the session ends (the caller closes ``sock``).
    ``sockets`` holds the connection's socket meanwhile (a shutdown may cut it)."""
    sockets = set() if sockets is None else sockets
    # Replies go out once the driver waits: no reason for Nagle to hold them.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if implicit_tls and ssl_context is not None:
        sock.settimeout(limits.command_timeout)
        sock = ssl_context.wrap_socket(sock, server_side=True)
    secure = sock if isinstance(sock, ssl.SSLSocket) else None
    peer, local = sock.getpeername()[:2], sock.getsockname()[:2]
    session = Session(peer, local, secure is not None, tls_info=tls_info(secure))
    driver = SessionDriver(handler, config, session, limits, auth, lifecycle)
    steps = driver.run()
    reason = "the session failed"
    result: Any = None
    channel = Channel(sock, limits.command_timeout)
    sockets.add(sock)
    out: list[bytes] = []  # replies held until the driver waits (RFC 2920)
    try:
        while True:
            request = steps.send(result)
            result = None
            if isinstance(request, Write):
                out.append(request.data)
                continue
            if out:
                channel.send(b"".join(out) if len(out) > 1 else out[0])
                out.clear()
            if isinstance(request, Read):
                try:
                    result = channel.receive(request, lifecycle)
                except OSError:
                    result = b""
            elif isinstance(request, Call):
                result = perform(request, handler)
            elif isinstance(request, StartTls):
                sockets.discard(channel.sock)
                result = channel.start_tls(ssl_context)
                sockets.add(channel.sock)
            elif isinstance(request, Close):
                break
    except OSError:
        reason = "the connection failed"
    finally:
        sockets.discard(channel.sock)
        steps.close()
        if (call := driver.cut_short(reason)) is not None:
            driver.report(call, perform(call, handler))


class SmtpServer(ReusedThreads, socketserver.TCPServer):
    """A listening socket; each connection is served on its own thread (one
    that served an earlier connection, when one is waiting: ``idle_timeout``)."""

    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 drops SYNs under a burst

    def __init__(
        self,
        address: tuple[str, int],
        handler: object,
        config: smtp.ServerConfig,
        limits: SessionLimits,
        ssl_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        auth: sasl.Verifiers | None = None,
    ) -> None:
        self.smtp_handler = handler
        self.smtp_config = server_config(config, ssl_context, implicit_tls)
        self.smtp_limits = limits
        self.ssl_context = ssl_context
        self.implicit_tls = implicit_tls
        self.auth = auth
        self.lifecycle = Lifecycle(limits.max_connections)
        self.sockets: set[socket.socket] = set()  # the connections' sockets
        super().__init__(address, _Connection)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return not self.lifecycle.stopping  # else closed at once, as if refused

    def close_gracefully(self, timeout: float = 30.0) -> None:
        """Stop accepting (the listening socket closes); sessions between
        transactions get 421 4.3.2 and close; messages in flight are finished
        first, for up to ``timeout`` seconds, then what is still open is cut.
        Call it while serving (``start_server``, ``serve``)."""
        self.lifecycle.stopping = True
        try:
            self.shutdown()
        finally:
            self.server_close()
        deadline = time.monotonic() + timeout
        while self.sockets and time.monotonic() < deadline:
            time.sleep(0.01)
        for sock in list(self.sockets):
            with contextlib.suppress(OSError):  # closed meanwhile
                sock.shutdown(socket.SHUT_RDWR)  # its thread sees the end and returns


class _Connection(socketserver.BaseRequestHandler):
    server: SmtpServer

    def handle(self) -> None:
        server = self.server
        handle_connection(
            self.request,
            server.smtp_handler,
            server.smtp_config,
            server.smtp_limits,
            server.ssl_context,
            server.implicit_tls,
            server.auth,
            server.lifecycle,
            server.sockets,
        )


def start_server(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    config: smtp.ServerConfig | None = None,
    limits: SessionLimits | None = None,
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    auth: sasl.Verifiers | None = None,
) -> SmtpServer:
    """Listen and serve on a background thread; ``close_gracefully()`` stops
    it (``shutdown()`` and ``server_close()`` stop it at once).
    With ``ssl_context`` STARTTLS is offered, or TLS is implicit (RFC 8314)."""
    server = SmtpServer(
        (host, port),
        handler,
        config or smtp.ServerConfig(),
        limits or SessionLimits(),
        ssl_context,
        implicit_tls,
        auth,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    shutdown_timeout: float = 10.0,
    started: Callable[[SmtpServer], object] | None = None,
    **options: Any,
) -> None:
    """Serve until interrupted (same options as ``start_server``); then,
    Ctrl-C included, shut down gracefully for up to ``shutdown_timeout`` s.
    ``started`` is called with the server once it listens."""
    server = start_server(handler, host, port, **options)
    if started is not None:
        started(server)
    try:
        threading.Event().wait()
    finally:
        server.close_gracefully(shutdown_timeout)
