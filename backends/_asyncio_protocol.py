# The asyncio server's connection: an asyncio Protocol that runs the shared
# session driver (backends._session) from asyncio's callbacks, with no task or
# stream per connection. It moves bytes, runs hooks and keeps time; every
# decision is the driver's and every protocol rule the engine's.
from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import Awaitable, Generator
from dataclasses import dataclass, field
from typing import Any

import smtp_core as smtp
from smtp_core import sasl

from ._deadline import Deadline
from ._session import (
    Call,
    Close,
    HookFailed,
    Lifecycle,
    Read,
    Request,
    Session,
    SessionDriver,
    SessionLimits,
    StartTls,
    Write,
)
from ._tls import PLAINTEXT_AFTER_STARTTLS, tls_info

__all__ = ["Connection", "Server"]

_PENDING = object()  # a hook or a handshake is running in a task
_TURN = 64  # replies per callback: pipelined commands (RFC 2920) must not hold the loop


@dataclass(eq=False)
class Server:
    """What every connection of one listening server shares."""

    handler: object
    config: smtp.ServerConfig
    limits: SessionLimits
    ssl_context: ssl.SSLContext | None
    auth: sasl.Verifiers | None
    connections: set[Connection] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.lifecycle = Lifecycle(self.limits.max_connections)
        # Every connection reads into it and copies out at once: a fresh 256 KiB
        # per read (a Protocol's) is mmapped and unmapped by glibc every time.
        self.space = memoryview(bytearray(262144))  # as much as asyncio reads


class Connection(asyncio.BufferedProtocol):
    """One session as an asyncio Protocol: what arrives goes to the session
    driver, what it says is written (coalesced until it waits), its hooks run
    in place or, when async, in a task. Back-pressure: reading pauses while
    the driver is busy or the peer is not taking our writes."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport
        self.steps: Generator[Request, Any, None]
        self.waiting: Read | None = None  # the Read the driver is blocked in
        self.inbox: list[bytes] = []  # arrived while the driver was busy
        self.eof = False
        self.out: list[bytes] = []
        self.write_paused = False
        self.deadline = Deadline(self.loop, self._expire)
        self.task: asyncio.Task[None] | None = None
        self.handshaking = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport  # asyncio sets TCP_NODELAY on its own
        ssl_object = transport.get_extra_info("ssl_object")
        session = Session(
            peer=transport.get_extra_info("peername"),
            local=transport.get_extra_info("sockname"),
            tls=ssl_object is not None,
            tls_info=tls_info(ssl_object),
        )
        server = self.server
        driver = SessionDriver(
            server.handler, server.config, session, server.limits, server.auth, server.lifecycle
        )
        self.steps = driver.run()
        server.connections.add(self)
        self._advance(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server.space

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self.server.space[:nbytes])
        if self.waiting is not None and not self.write_paused:
            self.waiting = None
            self._advance(data)
        else:
            self.inbox.append(data)
            if not self.handshaking:  # mid-handshake, self.transport is the old one
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._end()
        # Stay open to answer what came before the EOF (TLS cannot half-close).
        return self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.deadline.cancel()
        self._end()

    def _end(self) -> None:
        self.eof = True
        if self.waiting is not None:
            self.waiting = None
            self._advance(b"")

    def pause_writing(self) -> None:
        self.write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.transport.resume_reading()
        if self.waiting is not None and (self.inbox or self.eof):
            self.waiting = None
            self._advance(self._take_inbox())

    def interrupt(self) -> None:
        """End an idle read now (a shutdown); a read in a message goes on."""
        if self.waiting is not None and self.waiting.idle:
            self.waiting = None
            self._advance(None)

    def _take_inbox(self) -> bytes:
        if not self.inbox:
            return b""  # only after the EOF
        data = b"".join(self.inbox)
        self.inbox.clear()
        self.transport.resume_reading()
        return data

    def _advance(self, value: Any) -> None:
        """Run the driver until it waits for the peer or a task, or its turn
        is over (see ``_TURN``)."""
        replies = 0
        try:
            while True:
                request = self.steps.send(value)
                value = None
                kind = type(request)
                if kind is Write:
                    self.out.append(request.data)  # type: ignore[union-attr]
                    replies += 1
                    if replies == _TURN:
                        # Meanwhile what arrives waits in the inbox, reading paused.
                        self._flush()
                        self.loop.call_soon(self._advance, None)
                        return
                    continue
                if kind is Read:
                    if (self.inbox or self.eof) and not self.write_paused:
                        value = self._take_inbox()
                        continue
                    self._flush()
                    self.waiting = request  # type: ignore[assignment]
                    self.deadline.start(request.timeout)  # type: ignore[union-attr]
                    return
                if kind is Call:
                    value = self._call(request)  # type: ignore[arg-type]
                    if value is not _PENDING:
                        continue
                self._flush()
                if kind is StartTls:
                    # Nothing more is read as plaintext: start_tls reads the handshake.
                    self.transport.pause_reading()
                    self.task = self.loop.create_task(self._start_tls())
                elif kind is Close:
                    self.transport.close()  # once what is written is taken; at most:
                    if self.transport.get_write_buffer_size():
                        self.loop.call_later(
                            self.server.limits.command_timeout, self.transport.abort
                        )
                return
        except Exception as error:  # a bug, not the peer: say so and drop the connection
            self.loop.call_exception_handler(
                {"message": "SMTP session failed", "exception": error, "protocol": self}
            )
            self.transport.abort()

    def _flush(self) -> None:
        if self.out:
            if not self.transport.is_closing():
                self.transport.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
            self.out.clear()

    def _expire(self) -> None:
        if self.waiting is None:
            return
        self.waiting = None
        self._advance(None)  # a timeout: the driver says 421 and closes

    def _call(self, request: Call) -> Any:
        try:
            result = getattr(self.server.handler, request.name)(*request.args)
        except Exception as error:  # the driver turns it into 451 4.3.0
            return HookFailed(error)
        if not inspect.isawaitable(result):
            return result
        self.task = self.loop.create_task(self._await(result))
        return _PENDING

    async def _await(self, awaitable: Awaitable[Any]) -> None:
        try:
            result = await awaitable
        except Exception as error:
            result = HookFailed(error)
        self._advance(result)

    async def _start_tls(self) -> None:
        result: dict[str, Any] | HookFailed
        context = self.server.ssl_context
        if context is None:
            result = HookFailed(RuntimeError("no TLS context"))
        elif self.inbox:  # plaintext after STARTTLS: the injection
            result = HookFailed(RuntimeError(PLAINTEXT_AFTER_STARTTLS))
        else:
            self.handshaking = True
            try:
                handshake = self.server.limits.command_timeout  # as long as a command may take
                transport = await self.loop.start_tls(
                    self.transport, self, context, server_side=True, ssl_handshake_timeout=handshake
                )
            except (ssl.SSLError, OSError) as error:
                result = HookFailed(error)
            else:
                assert transport is not None
                self.transport = transport
                result = tls_info(transport.get_extra_info("ssl_object"))
            finally:
                self.handshaking = False
        self._advance(result)
