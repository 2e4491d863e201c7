"""A trio stream as the shared drivers use it: read and written the cheapest
way trio allows (``backends.trio`` and its client)."""

from __future__ import annotations

import contextlib
import os
import ssl
from typing import Any

import trio

from ._async import reset_on_close
from ._session import HookFailed

__all__ = ["Stream", "details"]

_READ_SIZE = 65536
_TURN = 65536
"""Octets a session may read and write without waiting before it lets the
other tasks run anyway: a peer whose data is always there (a fast pipelining
client) must not starve the other sessions. A full read ends a turn, as every
read did with trio's own streams."""
_SMALLEST_OPERATION = 4096  # what a short read or write counts for: 16 make a turn
_PATIENCE = 2
"""Times a read that finds nothing lets the other tasks run and looks again
before it waits: with many sessions, by then the answer has usually come,
and waiting (a cancel scope, the descriptor registered, a wake-up) costs
several times more than looking."""


class Stream:
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
        self._interrupted = False  # a shutdown asked idle reads to end
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

    async def _read_ready(self) -> bytes | None:
        # What the socket holds now, or once the other tasks have had their
        # turn (up to _PATIENCE times: the peer's next command is often on its
        # way); None if still nothing, and the caller waits the costly way
        # (a cancel scope for the timeout and the descriptor registered).
        for turn in range(_PATIENCE + 1):
            if turn:
                await trio.lowlevel.cancel_shielded_checkpoint()
                self._unwaited = 0
            fd = self._fd()
            if fd is None or fd < 0:  # closed meanwhile (a shutdown's cut)
                return b""
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                return b""
            await self._keep_fair(len(data))
            return data
        return None

    async def receive(self, timeout: float, idle: bool = False) -> bytes | None:
        fd = self._fd()
        if fd is not None and fd < 0:
            return b""  # closed under us (a shutdown's cut)
        if fd is not None and timeout > 0:  # a spent deadline times out, data or not
            data = await self._read_ready()
            if data is not None:
                return data
            fd = self._fd()
            if fd is not None and fd < 0:
                return b""
        with trio.move_on_after(timeout) as scope:
            self._idle = scope if idle else None
            if idle and self._interrupted:  # asked while this read looked or yielded
                scope.cancel()
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
        """End an idle read now, and any idle read after (a shutdown); a read
        in a message goes on."""
        self._interrupted = True
        if self._idle is not None:
            self._idle.cancel()  # a scope already left ignores it

    async def send(self, data: bytes, timeout: float) -> None:
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
            with trio.fail_after(timeout):
                await self.stream.send_all(data)  # returns once the peer has taken it
        except trio.TooSlowError:
            stream = getattr(self.stream, "transport_stream", self.stream)  # under TLS
            if isinstance(stream, trio.SocketStream):
                reset_on_close(stream.socket)
            raise TimeoutError(f"the peer took no data for {timeout} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            # The peer is gone: end this session, never the server's nursery.
            raise ConnectionResetError(str(error)) from error

    async def start_tls(
        self,
        context: ssl.SSLContext | None,
        *,
        server_side: bool,
        hostname: str | None,
        timeout: float,
    ) -> dict[str, Any] | HookFailed:
        if context is None:
            return HookFailed(RuntimeError("no TLS context"))
        wrapped = trio.SSLStream(
            self.stream, context, server_side=server_side, server_hostname=hostname
        )
        try:
            with trio.move_on_after(timeout) as scope:
                await wrapped.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as error:
            return HookFailed(error)
        if scope.cancelled_caught:
            return HookFailed(TimeoutError(f"no TLS handshake within {timeout} s"))
        self.stream, self._socket = wrapped, None  # TLS reads and writes go through it
        return details(wrapped)

    async def aclose(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.stream.aclose()

    move_on_after = staticmethod(trio.move_on_after)


def details(stream: trio.SSLStream[Any]) -> dict[str, Any]:
    cipher = stream.cipher()
    return {
        "version": stream.version(),
        "cipher": cipher[0] if cipher else None,
        "peer_certificate": stream.getpeercert(),
    }
