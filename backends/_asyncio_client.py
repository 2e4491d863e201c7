# The asyncio client's connection: an asyncio Protocol that runs the shared
# client driver (backends._client) from asyncio's callbacks, as the server's
# Connection runs the session driver. The bytes a Read waits for go to the
# driver in the callback that delivers them, with no future and no task
# wake-up per read (most of what an asyncio read costs); each call
# (sendmail, quit, ...) awaits one future, which the driver's result or
# error completes. Timeouts share one lazily moved timer; writing waits while
# the transport is paused (the peer is not keeping up). Reads go into one
# buffer of its own (a BufferedProtocol), where data_received would have
# asyncio allocate 256 KiB for every read and shrink it to a reply's octets.
from __future__ import annotations

import asyncio
import ssl
from collections.abc import Generator
from typing import Any, cast

from . import _async
from ._client import ClientDriver
from ._deadline import Deadline
from ._session import HookFailed, Read, Request, StartTls, Write
from ._tls import PLAINTEXT_AFTER_STARTTLS, tls_info

__all__ = ["AsyncClient", "ClientProtocol"]

_READ_SIZE = 65536


class ClientProtocol(asyncio.BufferedProtocol):
    """The connection of one asyncio client (see the module comment)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport
        self.buffer = memoryview(bytearray(_READ_SIZE))
        self.inbox: list[bytes] = []  # arrived while no Read waited
        self.eof = False
        self.writable: asyncio.Future[None] | None = None  # while writing is paused
        self.deadline = Deadline(self.loop, self._expire)
        self.steps: Generator[Request, Any, Any] | None = None  # the call under way
        self.done: asyncio.Future[Any] | None = None  # what its caller awaits
        self.reading = False  # the steps wait in a Read
        self.writing = False  # the steps wait for the paused transport
        self.tls: tuple[ssl.SSLContext | None, str] = (None, "")
        self.timeout = 60.0  # the call's: for a write or a handshake as for a read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport  # asyncio sets TCP_NODELAY on its own

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self.buffer[:nbytes])
        if self.reading:  # the inbox is empty: a Read takes all there is
            self.reading = False
            self._advance(data)
            return
        self.inbox.append(data)
        if len(self.inbox) > 16:
            self.transport.pause_reading()  # nobody is reading: back-pressure

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def _end(self) -> None:
        self.eof = True
        if self.reading:
            self.reading = False
            self._advance(b"")

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def run(
        self,
        steps: Generator[Request, Any, Any],
        context: ssl.SSLContext | None,
        hostname: str,
        timeout: float,
    ) -> asyncio.Future[Any]:
        """Start a call's ``steps`` (its TLS handshake with ``context`` for
        ``hostname``; no wait longer than ``timeout``); the future gets
        their result or error."""
        self.steps = steps
        self.done = done = self.loop.create_future()
        self.reading = self.writing = False
        self.tls = (context, hostname)
        self.timeout = timeout
        self._advance(None)
        return done

    def _advance(self, value: Any) -> None:
        """Run the steps until they wait for the peer, or end the call."""
        steps = self.steps
        done = self.done
        if steps is None or done is None or done.done():
            self.steps = None  # the caller was cancelled: the call goes no further
            return
        try:
            while True:
                request = steps.send(value)
                value = None
                kind = type(request)
                if kind is Write:
                    # Once the server has closed, what it said before (a 421,
                    # say) is still read: the write goes nowhere, as a
                    # socket's would.
                    if not self.transport.is_closing():
                        self.transport.write(request.data)  # type: ignore[union-attr]
                    if self.writable is not None:  # the peer is not keeping up
                        self.writing = True
                        self.writable.add_done_callback(self._write_resumed)
                        self.deadline.start(self.timeout)
                        return
                elif kind is Read:
                    if not self.inbox and not self.eof:
                        self._wait(request.timeout)  # type: ignore[union-attr]
                        return
                    value = self._take_inbox()
                elif kind is StartTls:
                    self._start_handshake(steps, done)
                    return
        except StopIteration as stop:
            self.steps = None
            done.set_result(stop.value)
        except (KeyboardInterrupt, SystemExit) as error:
            self.steps = None
            done.set_exception(error)
            raise
        except BaseException as error:  # the steps' own error, or the connection's
            self.steps = None
            done.set_exception(error)

    def _take_inbox(self) -> bytes:
        if not self.inbox:
            return b""  # only after the EOF
        data = b"".join(self.inbox) if len(self.inbox) > 1 else self.inbox[0]
        self.inbox.clear()
        self.transport.resume_reading()
        return data

    def _write_resumed(self, writable: asyncio.Future[None]) -> None:
        if self.writing:  # not if a later call (the caller was cancelled) took over
            self.writing = False
            self._advance(None)

    def _wait(self, timeout: float) -> None:
        self.reading = True
        self.deadline.start(timeout)

    def _expire(self) -> None:
        if self.reading:
            self.reading = False
            self._advance(None)  # a timeout: the driver gives up
        elif self.writing and self.done is not None and not self.done.done():
            # Part of a command may be out: the connection is of no more use.
            self.writing = False
            self.steps = None
            self.transport.abort()
            self.done.set_exception(TimeoutError(f"the server took no data for {self.timeout} s"))

    def _start_handshake(
        self, steps: Generator[Request, Any, Any], done: asyncio.Future[Any]
    ) -> None:
        handshake = self.loop.create_task(self._start_tls(steps, *self.tls))

        def cancel_handshake(call: asyncio.Future[Any]) -> None:
            if call.cancelled():  # as awaiting the handshake would
                handshake.cancel()

        done.add_done_callback(cancel_handshake)

    async def _start_tls(
        self, steps: Generator[Request, Any, Any], context: ssl.SSLContext | None, hostname: str
    ) -> None:
        try:
            result = await self.start_tls(context, server_side=False, hostname=hostname)
        except BaseException as error:
            if steps is self.steps and self.done is not None and not self.done.done():
                self.steps = None
                self.done.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        if steps is self.steps:  # not if a later call (the caller was cancelled) took over
            self._advance(result)

    async def start_tls(
        self, context: ssl.SSLContext | None, *, server_side: bool, hostname: str | None
    ) -> dict[str, Any] | HookFailed:
        if context is None:
            return HookFailed(RuntimeError("no TLS context"))
        # Bytes read ahead and not handed out would be taken as decrypted
        # after the handshake: they are the injection.
        if self.inbox:
            return HookFailed(RuntimeError(PLAINTEXT_AFTER_STARTTLS))
        try:
            transport = await self.loop.start_tls(
                self.transport,
                self,
                context,
                server_side=server_side,
                server_hostname=hostname,
                ssl_handshake_timeout=self.timeout,
            )
        except (ssl.SSLError, OSError) as error:
            return HookFailed(error)
        assert transport is not None
        self.transport = transport
        return tls_info(transport.get_extra_info("ssl_object"))

    async def aclose(self) -> None:
        self.deadline.cancel()
        self.transport.close()


class AsyncClient(_async.AsyncClient):
    """An asyncio SMTP client connection (see ``backends.asyncio.connect``):
    the shared client, its calls run from the protocol's callbacks."""

    def __init__(
        self,
        protocol: ClientProtocol,
        driver: ClientDriver,
        host: str,
        context: ssl.SSLContext | None = None,
    ) -> None:
        # The shared client reaches its stream only through _run, replaced
        # here, and aclose: the protocol stands in for an AsyncStream.
        super().__init__(cast(_async.AsyncStream, protocol), driver, host, context)
        self.protocol = protocol

    async def _run(self, steps: Generator[Any, Any, Any]) -> Any:
        return await self.protocol.run(steps, self.context, self.host, self.driver.timeout)
