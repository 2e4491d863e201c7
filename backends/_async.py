# What the async backends share, written once over a narrow stream interface
# (receive with a timeout, send, start TLS, close), as httpcore does: the
# server session loop and the client. asyncio, trio and anyio each supply a
# stream adapter and their own way to listen and connect, nothing more.
from __future__ import annotations

import contextlib
import inspect
import logging
import socket
import ssl
import struct
from collections.abc import Generator, Iterable, Sequence
from contextlib import AbstractContextManager
from email.message import EmailMessage
from typing import Any, Protocol

import smtp_core as smtp
from smtp_core import sasl

from ._client import ClientDriver, SendResult, ServiceRefused, message_parts
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
    describe,
)

__all__ = ["AsyncClient", "AsyncStream", "open_client", "reset_on_close", "serve_stream"]

_log = logging.getLogger("backends")


class AsyncStream(Protocol):
    """A byte stream as the async backends see it."""

    async def receive(self, timeout: float, idle: bool = False) -> bytes | None:
        """Up to 64 KiB; b"" at end of stream, None after ``timeout`` seconds
        (or, for an ``idle`` read, when the server shuts down)."""

    async def send(self, data: bytes, timeout: float) -> None:
        """All of ``data``, waiting while the peer is slow (flow control), for
        at most ``timeout`` seconds (then TimeoutError)."""

    async def start_tls(
        self,
        context: ssl.SSLContext | None,
        *,
        server_side: bool,
        hostname: str | None,
        timeout: float,
    ) -> dict[str, Any] | HookFailed:
        """The handshake, within ``timeout`` seconds; TLS details, or HookFailed."""

    async def aclose(self) -> None:
        """Close, ignoring a peer that is already gone."""

    def move_on_after(self, seconds: float, *, shield: bool) -> AbstractContextManager[Any]:
        """The library's move_on_after: what a cut session still owes runs in it."""


def reset_on_close(sock: Any) -> None:
    """Have the close of ``sock`` reset the connection: what a peer that
    took nothing for a whole timeout still has to take is dropped, not left
    queued behind the FIN for the kernel to retry, which a peer that never
    reads never sees end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _perform(request: Call, handler: object) -> Any:
    try:
        result = getattr(handler, request.name)(*request.args)
        if inspect.isawaitable(result):
            result = await result
    except Exception as error:  # the driver turns it into 451 4.3.0
        return HookFailed(error)
    return result


async def serve_stream(
    stream: AsyncStream,
    session: Session,
    handler: object,
    config: smtp.ServerConfig,
    limits: SessionLimits,
    ssl_context: ssl.SSLContext | None,
    auth: sasl.Verifiers | None,
    lifecycle: Lifecycle | None = None,
) -> None:
    """Serve one connection until the session ends, then close it."""
    driver = SessionDriver(handler, config, session, limits, auth, lifecycle)
    steps = driver.run()
    reason = "the session was cancelled"
    result: Any = None
    out: list[bytes] = []  # replies held until the driver waits (RFC 2920)
    try:
        while True:
            request = steps.send(result)
            result = None
            if isinstance(request, Write):
                out.append(request.data)
                continue
            if out:
                await stream.send(b"".join(out), limits.command_timeout)
                out.clear()
            if isinstance(request, Read):
                try:
                    result = await stream.receive(request.timeout, request.idle)
                except OSError:
                    result = b""
            elif isinstance(request, Call):
                result = await _perform(request, handler)
            elif isinstance(request, StartTls):
                result = await stream.start_tls(
                    ssl_context, server_side=True, hostname=None, timeout=limits.command_timeout
                )
            elif isinstance(request, Close):
                break
    except OSError:
        reason = "the connection failed"
    except Exception:
        # A bug, not the peer: report it and end this session only, never
        # the server (its nursery or task group) that runs them all.
        _log.exception("SMTP session with %s failed", session.peer)
        reason = "the session failed"
    finally:
        steps.close()
        if (call := driver.cut_short(reason)) is not None:
            outcome: Any = HookFailed(TimeoutError("on_abandon outlasted the command timeout"))
            with stream.move_on_after(limits.command_timeout, shield=True):
                outcome = await _perform(call, handler)
            driver.report(call, outcome)
        await stream.aclose()


class AsyncClient:
    """An async SMTP client connection (see each backend's ``connect``)."""

    def __init__(
        self,
        stream: AsyncStream,
        driver: ClientDriver,
        host: str,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.stream = stream
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
                result = await self.stream.receive(request.timeout)
            elif isinstance(request, Write):
                await self.stream.send(request.data, self.driver.timeout)
            elif isinstance(request, StartTls):
                result = await self.stream.start_tls(
                    self.context, server_side=False, hostname=self.host, timeout=self.driver.timeout
                )

    @property
    def extensions(self) -> smtp.Extensions | None:
        """What the server offered in its EHLO reply."""
        return self.driver.conn.extensions

    async def handshake(self, starttls: str) -> None:
        """The greeting, EHLO and STARTTLS (``connect`` does this)."""
        try:
            await self._run(self.driver.handshake(starttls))
        except BaseException:
            await self.stream.aclose()
            raise

    async def login(self, username: str, password: str, mechanism: str | None = None) -> smtp.Reply:
        """AUTH with the strongest mechanism offered; raises AuthenticationFailed."""
        return await self._run(self.driver.login(username, password, mechanism))  # type: ignore[no-any-return]

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
        sender, recipients, content = message_parts(msg, from_addr, to_addrs, self.extensions)
        return await self.sendmail(sender, recipients, content)

    async def quit(self) -> None:
        try:
            await self._run(self.driver.quit())
        finally:
            await self.stream.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            await self.quit()
        else:
            await self.stream.aclose()


async def open_client(
    stream: AsyncStream,
    host: str,
    tls: str,
    context: ssl.SSLContext | None,
    config: smtp.ClientConfig,
    starttls: str,
    timeout: float,
) -> AsyncClient:
    """A client on a connected ``stream``: the TLS handshake first for
    implicit TLS (RFC 8314), then the greeting, EHLO and STARTTLS."""
    if tls == "implicit":
        result = await stream.start_tls(context, server_side=False, hostname=host, timeout=timeout)
        if isinstance(result, HookFailed):
            await stream.aclose()
            reason = describe(result.error)
            raise ServiceRefused(f"TLS handshake failed: {reason}", None) from result.error
    driver = ClientDriver(config, timeout=timeout, tls=tls == "implicit")
    client = AsyncClient(stream, driver, host, context)
    await client.handshake(starttls)
    return client
