"""The blocking backend: an SMTP server on sockets, a thread per connection.

Like every backend it only moves bytes: the session driver
(``backends._session``) decides, the engine (``smtp_core``) judges. Hooks are
plain functions here; an ``async def`` hook is a configuration error, which
the driver answers with 451 4.3.0.
"""

from __future__ import annotations

import inspect
import socket
import socketserver
import ssl
import threading
from typing import Any

import smtp_core as smtp
from smtp_core import sasl

from ._session import (
    Call,
    Close,
    HookFailed,
    Lifecycle,
    Read,
    Session,
    SessionDriver,
    SessionLimits,
    StartTls,
    Write,
)
from ._sync_client import Client, connect, start_tls_on
from ._tls import server_config, tls_info

__all__ = ["Client", "SmtpServer", "connect", "serve", "start_server"]

# The client half lives in its own module; the API is one: backends.sync.

_READ_SIZE = 65536


def _perform(request: Call, handler: object) -> Any:
    try:
        result = getattr(handler, request.name)(*request.args)
    except Exception as error:  # the driver turns it into 451 4.3.0
        return HookFailed(error)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        return HookFailed(TypeError(f"{request.name} is async; the sync backend needs plain hooks"))
    return result


def handle_connection(
    sock: socket.socket,
    handler: object,
    config: smtp.ServerConfig,
    limits: SessionLimits,
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    auth: sasl.Verifiers | None = None,
    lifecycle: Lifecycle | None = None,
) -> None:
    """Serve one connection until the session ends (the caller closes ``sock``)."""
    # Replies are whole lines written once each: no reason to wait for more.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if implicit_tls and ssl_context is not None:
        sock.settimeout(limits.command_timeout)
        sock = ssl_context.wrap_socket(sock, server_side=True)
    session = Session(peer=sock.getpeername()[:2], local=sock.getsockname()[:2])
    session.tls = isinstance(sock, ssl.SSLSocket)
    session.tls_info = tls_info(sock) if isinstance(sock, ssl.SSLSocket) else {}
    steps = SessionDriver(handler, config, session, limits, auth, lifecycle).run()
    result: Any = None
    try:
        while True:
            request = steps.send(result)
            result = None
            if isinstance(request, Read):
                sock.settimeout(request.timeout)
                try:
                    result = sock.recv(_READ_SIZE)
                except TimeoutError:
                    result = None
                except OSError:
                    result = b""
            elif isinstance(request, Write):
                sock.sendall(request.data)
            elif isinstance(request, Call):
                result = _perform(request, handler)
            elif isinstance(request, StartTls):
                sock, result = start_tls_on(sock, ssl_context, server_side=True, hostname=None)
            elif isinstance(request, Close):
                break
    except OSError:
        pass
    finally:
        steps.close()


class SmtpServer(socketserver.ThreadingTCPServer):
    """A listening socket; each connection is served on its own thread."""

    daemon_threads = True
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
        super().__init__(address, _Connection)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


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
    """Listen and serve on a background thread; ``shutdown()`` stops it.
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


def serve(handler: object, host: str = "127.0.0.1", port: int = 8025, **options: Any) -> None:
    """Serve until interrupted (same options as ``start_server``)."""
    server = start_server(handler, host, port, **options)
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
        server.server_close()
