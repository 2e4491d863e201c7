"""The blocking client (``backends.sync.connect``)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Generator, Iterable, Sequence
from email.message import EmailMessage
from typing import Any

import smtp_core as smtp

from ._client import ClientDriver, SendResult, message_parts, prepare
from ._session import Read, StartTls, Write
from ._sync_io import Channel

__all__ = ["Client", "connect"]


class Client:
    """A blocking SMTP client connection (see ``connect``)."""

    def __init__(
        self,
        sock: socket.socket,
        driver: ClientDriver,
        host: str,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.channel = Channel(sock, driver.timeout)
        self.driver = driver
        self.host = host
        self.context = context

    def _run(self, steps: Generator[Any, Any, Any]) -> Any:
        result: Any = None
        while True:
            try:
                request = steps.send(result)
            except StopIteration as stop:
                return stop.value
            result = None
            if isinstance(request, Read):
                result = self.channel.receive(request, None)
            elif isinstance(request, Write):
                self.channel.send(request.data)
            elif isinstance(request, StartTls):
                result = self.channel.start_tls(self.context, server_side=False, hostname=self.host)

    @property
    def sock(self) -> socket.socket:
        """The connection's socket (a TLS one once TLS has started)."""
        return self.channel.sock

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
        sender, recipients, content = message_parts(msg, from_addr, to_addrs, self.extensions)
        return self.sendmail(sender, recipients, content)

    def login(self, username: str, password: str, mechanism: str | None = None) -> smtp.Reply:
        """AUTH with the strongest mechanism offered; raises AuthenticationFailed."""
        return self._run(self.driver.login(username, password, mechanism))  # type: ignore[no-any-return]

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
    tls: str = "none",
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 60.0,
    config: smtp.ClientConfig | None = None,
) -> Client:
    """Connect, read the greeting, say EHLO (HELO if refused) and, per
    ``tls``, go secure: "none", "starttls" (required: never goes on in
    plaintext), "opportunistic", or "implicit" (RFC 8314)."""
    config, context, starttls = prepare(tls, ssl_context, config)
    sock = socket.create_connection((host, port), timeout=timeout)
    # Nagle plus delayed ACK would hold each write for 40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if tls == "implicit":
            assert context is not None
            sock = context.wrap_socket(sock, server_hostname=host)
        client = Client(
            sock, ClientDriver(config, timeout=timeout, tls=tls == "implicit"), host, context
        )
        client._run(client.driver.handshake(starttls))
    except BaseException:
        sock.close()
        raise
    return client
