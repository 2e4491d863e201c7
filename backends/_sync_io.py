"""How the blocking backend, server and client, moves a connection's bytes.

With several connection threads every system call that releases the GIL is
a chance to hand it over, and a socket with a Python timeout makes each
read three of them (set the timeout, poll, recv) and each write two. A plain
TCP socket is therefore left blocking: a read is one ``recv``, bounded by the
kernel's receive timeout (``SO_RCVTIMEO``, set only when it changes), and a
write is one ``send`` that does not wait (``MSG_DONTWAIT``); only a write the
kernel cannot take at once falls back to a timed ``sendall``. A TLS socket
keeps Python's timeouts, which its records need.

A thread blocked in ``recv`` cannot be woken, so no wait is longer than
``WAKE_INTERVAL``: a read waiting for a command (and only such a read: a
message in flight is finished first) looks that often for a shutdown.
"""

from __future__ import annotations

import inspect
import os
import socket
import ssl
import struct
from time import monotonic
from typing import Any

from ._session import Call, HookFailed, Lifecycle, Read
from ._tls import tls_info

__all__ = ["WAKE_INTERVAL", "Channel", "perform", "start_tls_on"]

READ_SIZE = 65536
WAKE_INTERVAL = 0.25  # how late an idle session may hear of a shutdown
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
# SO_RCVTIMEO is a struct timeval on POSIX systems (a DWORD elsewhere).
_KERNEL_TIMEOUTS = os.name == "posix" and _DONTWAIT != 0


def perform(request: Call, handler: object) -> Any:
    """Call a plain hook; what it raised, or an ``async def`` hook, becomes
    ``HookFailed`` (the driver answers 451 4.3.0)."""
    try:
        result = getattr(handler, request.name)(*request.args)
    except Exception as error:
        return HookFailed(error)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        return HookFailed(TypeError(f"{request.name} is async; the sync backend needs plain hooks"))
    return result


def start_tls_on(
    sock: socket.socket, context: ssl.SSLContext | None, *, server_side: bool, hostname: str | None
) -> tuple[socket.socket, Any]:
    """The handshake on ``sock``; the socket to use from now on and the result
    for the driver. Plaintext already read was checked by the engine; what the
    kernel still holds is fed to the handshake, which fails on it."""
    if context is None:
        return sock, HookFailed(RuntimeError("no TLS context"))
    try:
        wrapped = context.wrap_socket(sock, server_side=server_side, server_hostname=hostname)
    except (ssl.SSLError, OSError) as error:
        return sock, HookFailed(error)
    return wrapped, tls_info(wrapped)


class Channel:
    """One connection's socket; ``sock`` changes once TLS starts."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.timeout = timeout  # what a write or a TLS handshake may take
        self.interval = 0.0  # the kernel receive timeout now set (0: none)
        self.sock = sock
        self.plain = _KERNEL_TIMEOUTS and not isinstance(sock, ssl.SSLSocket)
        sock.settimeout(None if self.plain else timeout)

    def start_tls(
        self,
        context: ssl.SSLContext | None,
        *,
        server_side: bool = True,
        hostname: str | None = None,
    ) -> Any:
        """The TLS handshake (RFC 3207), within the timeout of the last read;
        the result for the driver. The socket is the TLS one from now on, or
        stays as it was if the handshake failed."""
        self.sock.settimeout(self.timeout)
        self.plain = False
        self.sock, result = start_tls_on(
            self.sock, context, server_side=server_side, hostname=hostname
        )
        return result

    def receive(self, request: Read, lifecycle: Lifecycle | None) -> bytes | None:
        """Some bytes, b"" at the end of the stream, or None once
        ``request.timeout`` passed (or the server is stopping, for an idle
        read) with nothing."""
        self.timeout = request.timeout
        if self.plain:
            return self._receive_plain(request, lifecycle)
        sock = self.sock
        if not request.idle or lifecycle is None:
            sock.settimeout(request.timeout)
            try:
                return sock.recv(READ_SIZE)
            except TimeoutError:
                return None
        deadline = monotonic() + request.timeout
        try:
            while not lifecycle.stopping:
                wait = min(deadline - monotonic(), WAKE_INTERVAL)
                if wait <= 0:
                    return None
                sock.settimeout(wait)
                try:
                    return sock.recv(READ_SIZE)
                except TimeoutError:
                    continue
            return None
        finally:
            sock.settimeout(request.timeout)

    def _receive_plain(self, request: Read, lifecycle: Lifecycle | None) -> bytes | None:
        sock = self.sock
        timeout = request.timeout
        start = monotonic()
        wait = timeout if timeout < WAKE_INTERVAL else WAKE_INTERVAL
        while True:
            if wait < 1e-6:  # SO_RCVTIMEO of zero would mean no limit at all
                try:
                    return sock.recv(READ_SIZE, _DONTWAIT)
                except BlockingIOError:
                    return None
            if wait != self.interval:
                seconds = int(wait)
                option = struct.pack("ll", seconds, int((wait - seconds) * 1e6))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, option)
                self.interval = wait
            try:
                return sock.recv(READ_SIZE)
            except BlockingIOError:  # the kernel's timeout
                pass
            if request.idle and lifecycle is not None and lifecycle.stopping:
                return None
            left = start + timeout - monotonic()
            if left <= 0:
                return None
            wait = left if left < WAKE_INTERVAL else WAKE_INTERVAL

    def send(self, data: bytes) -> None:
        """All of ``data``, within the timeout of the last read."""
        sock = self.sock
        if self.plain:
            try:
                sent = sock.send(data, _DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
            sock.settimeout(self.timeout)
            try:
                sock.sendall(data)
            finally:
                sock.settimeout(None)
            return
        sock.sendall(data)
