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
import threading
from collections.abc import Generator, Iterable, Sequence
from email.message import EmailMessage
from typing import Any

import smtp_core as smtp

from ._client import ClientDriver, SendResult, message_parts
from ._session import Call, Close, HookFailed, Read, Session, SessionDriver, SessionLimits, Write

__all__ = ["Client", "SmtpServer", "connect", "serve", "start_server"]

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
    sock: socket.socket, handler: object, config: smtp.ServerConfig, limits: SessionLimits
) -> None:
    """Serve one connection until the session ends (the caller closes ``sock``)."""
    session = Session(peer=sock.getpeername()[:2], local=sock.getsockname()[:2])
    steps = SessionDriver(handler, config, session, limits).run()
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

    def __init__(
        self,
        address: tuple[str, int],
        handler: object,
        config: smtp.ServerConfig,
        limits: SessionLimits,
    ) -> None:
        self.smtp_handler = handler
        self.smtp_config = config
        self.smtp_limits = limits
        super().__init__(address, _Connection)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Connection(socketserver.BaseRequestHandler):
    server: SmtpServer

    def handle(self) -> None:
        server = self.server
        handle_connection(self.request, server.smtp_handler, server.smtp_config, server.smtp_limits)


def start_server(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    config: smtp.ServerConfig | None = None,
    limits: SessionLimits | None = None,
) -> SmtpServer:
    """Listen and serve on a background thread; ``shutdown()`` stops it."""
    server = SmtpServer(
        (host, port), handler, config or smtp.ServerConfig(), limits or SessionLimits()
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    config: smtp.ServerConfig | None = None,
    limits: SessionLimits | None = None,
) -> None:
    """Serve until interrupted."""
    with SmtpServer(
        (host, port), handler, config or smtp.ServerConfig(), limits or SessionLimits()
    ) as server:
        server.serve_forever()


class Client:
    """A blocking SMTP client connection (see ``connect``)."""

    def __init__(self, sock: socket.socket, driver: ClientDriver) -> None:
        self.sock = sock
        self.driver = driver

    def _run(self, steps: Generator[Any, Any, Any]) -> Any:
        result: Any = None
        while True:
            try:
                request = steps.send(result)
            except StopIteration as stop:
                return stop.value
            result = None
            if isinstance(request, Read):
                self.sock.settimeout(request.timeout)
                try:
                    result = self.sock.recv(_READ_SIZE)
                except TimeoutError:
                    result = None
            elif isinstance(request, Write):
                self.sock.sendall(request.data)

    @property
    def extensions(self) -> smtp.Extensions | None:
        """What the server offered in its EHLO reply."""
        return self.driver.conn.extensions

    def sendmail(
        self,
        from_addr: str | smtp.Address | None,
        to_addrs: str | smtp.Address | Iterable[str | smtp.Address],
        msg: bytes | Iterable[bytes],
    ) -> SendResult:
        """Send ``msg`` (bytes, or an iterable of chunks streamed as they come)."""
        recipients = [to_addrs] if isinstance(to_addrs, (str, smtp.Address)) else to_addrs
        return self._run(self.driver.send(from_addr, recipients, msg))  # type: ignore[no-any-return]

    def send_message(
        self,
        msg: EmailMessage,
        from_addr: str | smtp.Address | None = None,
        to_addrs: Sequence[str | smtp.Address] | None = None,
    ) -> SendResult:
        """Send an ``EmailMessage``; envelope from its headers unless given."""
        sender, recipients, content = message_parts(msg, from_addr, to_addrs)
        return self.sendmail(sender, recipients, content)

    def quit(self) -> None:
        try:
            self._run(self.driver.quit())
        finally:
            self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.quit()
        else:
            self.sock.close()


def connect(
    host: str,
    port: int = 25,
    *,
    timeout: float = 60.0,
    config: smtp.ClientConfig | None = None,
) -> Client:
    """Connect, read the greeting and say EHLO (HELO if EHLO is refused)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    client = Client(sock, ClientDriver(config, timeout=timeout))
    try:
        client._run(client.driver.handshake())
    except BaseException:
        sock.close()
        raise
    return client
