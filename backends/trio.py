"""The trio backend: SMTP servers and clients on trio streams and nurseries.

It only moves bytes: the shared drivers decide, the engine judges. Sessions
run shielded, so that cancelling ``serve`` is a graceful shutdown: idle
sessions are woken (their read's cancel scope cancelled) and hear 421, a
message in flight is finished, and only after a grace period is the rest cut.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from typing import Any

import trio

import smtp_core as smtp
from smtp_core import sasl

from ._async import AsyncClient, open_client, serve_stream
from ._client import prepare
from ._session import HookFailed, Lifecycle, Session, SessionLimits
from ._tls import server_config

__all__ = ["AsyncClient", "connect", "serve"]

_READ_SIZE = 65536
_TURN = 65536
"""Octets a session may read and write without waiting before it lets the
other tasks run anyway: a peer whose data is always there (a fast pipelining
client) must not starve the other sessions. A full read ends a turn, as every
read did with trio's own streams."""
_SMALLEST_OPERATION = 4096  # what a short read or write counts for: 16 make a turn


class _Stream:
    # On plain TCP (POSIX) a read or write tries the socket's descriptor first
    # (os.read and os.write: trio offers no public way to the socket under
    # its own) and waits only when it would block. trio's receive_some and
    # send_all pass through the scheduler on every call even when the data
    # is ready, and each read's timeout took a new cancel scope: together
    # about half the server's CPU time per message. Timeouts, cancellation
    # and the shutdown's interrupt act where a session waits, as before;
    # _keep_fair bounds the rest.
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._socket: trio.socket.SocketType | None = None
        if isinstance(stream, trio.SocketStream) and os.name == "posix":
            self._socket = stream.socket
        self._idle: trio.CancelScope | None = None  # an idle read's scope
        self._unwaited = 0  # octets moved since this task last waited (see _TURN)

    def _fd(self) -> int | None:
        # Asked each time: once the stream is closed it is -1 (EBADF), never
        # a number the system may have given to another connection.
        return None if self._socket is None else self._socket.fileno()

    async def _keep_fair(self, size: int) -> None:
        self._unwaited += max(size, _SMALLEST_OPERATION)
        if self._unwaited >= _TURN:
            self._unwaited = 0
            await trio.lowlevel.checkpoint()  # where a cut session is cancelled too

    async def receive(self, timeout: float, idle: bool = False) -> bytes | None:
        fd = self._fd()
        if fd is not None and fd < 0:
            return b""  # closed under us (a shutdown's cut)
        if fd is not None and timeout > 0:  # a spent deadline times out, data or not
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                pass  # nothing yet: wait for it below
            except OSError:
                return b""
            else:
                await self._keep_fair(len(data))
                return data
        with trio.move_on_after(timeout) as scope:
            self._idle = scope if idle else None
            try:
                if fd is None:
                    return bytes(await self.stream.receive_some(_READ_SIZE))
                self._unwaited = 0
                while True:
                    await trio.lowlevel.wait_readable(fd)
                    with contextlib.suppress(BlockingIOError):  # a spurious wake-up
                        return os.read(fd, _READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return b""
        return None

    def interrupt(self) -> None:
        """End an idle read now (a shutdown); a read in a message goes on."""
        if self._idle is not None:
            self._idle.cancel()  # a scope already left ignores it

    async def send(self, data: bytes) -> None:
        fd = self._fd()
        try:
            if fd is not None:
                try:
                    sent = os.write(fd, data)
                except BlockingIOError:
                    sent = 0
                if sent == len(data):
                    await self._keep_fair(sent)
                    return
                data = data[sent:]  # the peer is slow: wait until it takes the rest
                self._unwaited = 0
            await self.stream.send_all(data)  # returns once the peer has taken it
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            # The peer is gone: end this session, never the server's nursery.
            raise ConnectionResetError(str(error)) from error

    async def start_tls(
        self, context: ssl.SSLContext | None, *, server_side: bool, hostname: str | None
    ) -> dict[str, Any] | HookFailed:
        if context is None:
            return HookFailed(RuntimeError("no TLS context"))
        wrapped = trio.SSLStream(
            self.stream, context, server_side=server_side, server_hostname=hostname
        )
        try:
            await wrapped.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as error:
            return HookFailed(error)
        self.stream, self._socket = wrapped, None  # TLS reads and writes go through it
        return _details(wrapped)

    async def aclose(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.stream.aclose()


def _details(stream: trio.SSLStream[Any]) -> dict[str, Any]:
    cipher = stream.cipher()
    return {
        "version": stream.version(),
        "cipher": cipher[0] if cipher else None,
        "peer_certificate": stream.getpeercert(),
    }


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
    sessions: dict[_Stream, trio.CancelScope] = {}

    async def on_connection(stream: trio.abc.Stream) -> None:
        with trio.CancelScope(shield=True) as scope:  # only the shutdown ends it early
            wrapper = _Stream(stream)
            sessions[wrapper] = scope
            try:
                await converse(wrapper, stream)
            finally:
                del sessions[wrapper]

    async def converse(wrapper: _Stream, stream: trio.abc.Stream) -> None:
        session = Session(peer=_address(stream, True), local=_address(stream, False))
        if implicit_tls and isinstance(stream, trio.SSLStream):
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, ssl.SSLError, OSError):
                return
            session.tls, session.tls_info = True, _details(stream)
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
    return await open_client(_Stream(stream), host, tls, context, config, starttls, timeout)
