"""The asyncio client (``backends.asyncio.connect``)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Generator, Iterable, Sequence
from email.message import EmailMessage
from typing import Any

import smtp_core as smtp

from ._client import ClientDriver, SendResult, message_parts, prepare
from ._session import HookFailed, Read, StartTls, Write
from ._tls import PLAINTEXT_AFTER_STARTTLS, tls_info

__all__ = ["AsyncClient", "connect", "start_tls_on"]

_READ_SIZE = 65536


async def start_tls_on(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
) -> Any:
    if ssl_context is None:
        return HookFailed(RuntimeError("no TLS context"))
    # Bytes asyncio has read ahead but not handed out yet would be taken as
    # decrypted after the handshake: they are the injection (CVE-2011-0411).
    if getattr(reader, "_buffer", b""):
        return HookFailed(RuntimeError(PLAINTEXT_AFTER_STARTTLS))
    start_tls = getattr(writer, "start_tls", None)  # StreamWriter has it from 3.11 on
    if start_tls is None:
        return HookFailed(RuntimeError("STARTTLS on asyncio streams needs Python 3.11"))
    try:
        await start_tls(ssl_context, server_hostname=server_hostname)
    except (ssl.SSLError, OSError) as error:
        return HookFailed(error)
    return tls_info(writer.get_extra_info("ssl_object"))


class AsyncClient:
    """An asyncio SMTP client connection (see ``connect``)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        driver: ClientDriver,
        host: str,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.driver = driver
        self.host = host
        self.context = context

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
            elif isinstance(request, StartTls):
                result = await start_tls_on(self.reader, self.writer, self.context, self.host)

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

    async def login(self, username: str, password: str, mechanism: str | None = None) -> smtp.Reply:
        """AUTH with the strongest mechanism offered; raises AuthenticationFailed."""
        return await self._run(self.driver.login(username, password, mechanism))  # type: ignore[no-any-return]

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
    opening = asyncio.open_connection(host, port, ssl=implicit, limit=_READ_SIZE)
    reader, writer = await asyncio.wait_for(opening, timeout)
    driver = ClientDriver(config, timeout=timeout, tls=implicit is not None)
    client = AsyncClient(reader, writer, driver, host, context)
    try:
        await client._run(driver.handshake(starttls))
    except BaseException:
        writer.close()
        raise
    return client
