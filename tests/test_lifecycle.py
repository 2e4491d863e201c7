"""Connection limit and graceful shutdown, on every server backend and on
``smtp-core serve``; 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import pytest
import trio
from anyio.from_thread import start_blocking_portal
from test_asyncio_server import free_port

from backends import anyio as anyio_backend
from backends import asyncio as asyncio_backend
from backends import sync as sync_backend
from backends import trio as trio_backend
from backends._session import SessionLimits


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    lines = b""
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        lines += line
        if line[3:4] != b"-":
            return lines


class Keep:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        self.bodies.append(body.read())


def test_connections_over_the_limit_get_421():
    """RFC 5321 3.8 / 4.3.2: a server may refuse service with 421."""

    async def main() -> None:
        limits = SessionLimits(max_connections=1)
        server = await asyncio_backend.start_server(Keep(), "127.0.0.1", 0, limits=limits)
        port = server.sockets[0].getsockname()[1]
        first = await asyncio.open_connection("127.0.0.1", port)
        assert (await read_reply(first[0])).startswith(b"220")
        second = await asyncio.open_connection("127.0.0.1", port)
        assert (await read_reply(second[0])).startswith(b"421 4.7.0")
        assert await second[0].read() == b""  # and closed
        first[1].close()
        await asyncio_backend.shutdown(server, timeout=5)

    asyncio.run(main())


def _first_reply(sock) -> bytes:  # type: ignore[no-untyped-def]
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("name", ["sync", "trio", "anyio-asyncio", "anyio-trio"])
def test_connection_limit_on_the_other_backends(name: str):
    """The same limit, decided by the same driver, on every backend."""
    from servers import serving

    limits = SessionLimits(max_connections=1)
    with (
        serving(name, Keep(), limits=limits) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as first,
    ):
        assert _first_reply(first).startswith(b"220")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            assert _first_reply(second).startswith(b"421 4.7.0")


# Graceful shutdown: each backend's own way to start one, behind one shape.


@dataclass
class Running:
    port: int
    stop: Callable[[], object]
    """Starts a graceful shutdown and returns at once."""
    stopped: threading.Event
    """Set once the shutdown is over."""


@contextmanager
def sync_running(handler: object, timeout: float) -> Iterator[Running]:
    server = sync_backend.start_server(handler, "127.0.0.1", 0)
    stopped = threading.Event()

    def close() -> None:
        server.close_gracefully(timeout)
        stopped.set()

    yield Running(server.port, threading.Thread(target=close).start, stopped)


@contextmanager
def asyncio_running(handler: object, timeout: float) -> Iterator[Running]:
    """``shutdown``, then any task left cancelled, as after a cancelled ``serve``."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    start = asyncio_backend.start_server(handler, "127.0.0.1", 0)
    server = asyncio.run_coroutine_threadsafe(start, loop).result(10)
    stopped = threading.Event()

    async def close() -> None:
        await asyncio_backend.shutdown(server, timeout)
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop() -> None:
        future = asyncio.run_coroutine_threadsafe(close(), loop)
        future.add_done_callback(lambda _: stopped.set())

    try:
        yield Running(int(server.sockets[0].getsockname()[1]), stop, stopped)
    finally:
        stopped.wait(timeout + 5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def trio_running(handler: object, timeout: float) -> Iterator[Running]:
    """``serve`` in a nursery; cancelling the nursery is the shutdown."""
    box: dict[str, Any] = {}
    started, stopped = threading.Event(), threading.Event()

    async def main() -> None:
        try:
            async with trio.open_nursery() as nursery:
                box["scope"] = nursery.cancel_scope
                box["token"] = trio.lowlevel.current_trio_token()
                serve = partial(
                    trio_backend.serve, handler, "127.0.0.1", 0, shutdown_timeout=timeout
                )
                [listener] = await nursery.start(serve)
                box["port"] = listener.socket.getsockname()[1]
                started.set()
        finally:
            stopped.set()

    thread = threading.Thread(target=trio.run, args=(main,))
    thread.start()
    assert started.wait(10), "the trio server did not start"

    def stop() -> None:
        trio.from_thread.run_sync(box["scope"].cancel, trio_token=box["token"])

    try:
        yield Running(int(box["port"]), stop, stopped)
    finally:
        thread.join(timeout + 5)


@contextmanager
def anyio_running(handler: object, timeout: float, backend: str) -> Iterator[Running]:
    """``serve`` on a portal; cancelling its task is the shutdown."""
    stopped = threading.Event()

    async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await anyio_backend.serve(
                handler, "127.0.0.1", 0, shutdown_timeout=timeout, task_status=task_status
            )
        finally:
            stopped.set()

    with start_blocking_portal(backend=backend) as portal:
        future, port = portal.start_task(run)
        yield Running(port, future.cancel, stopped)


RUNNING: dict[str, Callable[[object, float], Any]] = {
    "sync": sync_running,
    "asyncio": asyncio_running,
    "trio": trio_running,
    "anyio-asyncio": partial(anyio_running, backend="asyncio"),
    "anyio-trio": partial(anyio_running, backend="trio"),
}


@contextmanager
def running(name: str, handler: object, timeout: float) -> Iterator[Running]:
    """The server backend ``name``, shut down gracefully when the test did not."""
    with RUNNING[name](handler, timeout) as server:
        try:
            yield server
        finally:
            if not server.stopped.is_set():
                server.stop()
            server.stopped.wait(timeout + 5)  # the tests assert that it ends in time


class Client:
    """A client that sends raw lines and reads whole replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        lines = b""
        while True:
            line = self.file.readline()
            lines += line
            if line[3:4] != b"-":
                return lines

    def is_closed(self) -> bool:
        """Whether the server closed the connection (nothing more comes)."""
        try:
            return self.file.read() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@contextmanager
def clients(port: int, count: int) -> Iterator[list[Client]]:
    """``count`` clients connected to ``port``, each past the 220 greeting."""
    connected = [Client(port) for _ in range(count)]
    try:
        for client in connected:
            assert client.reply().startswith(b"220")
        yield connected
    finally:
        for client in connected:
            client.close()


def is_refused(port: int) -> bool:
    """A new connection is refused, or closed before any greeting."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            return sock.recv(4096) == b""
    except (ConnectionRefusedError, ConnectionResetError):
        return True


TRANSACTION = b"EHLO busy\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n"
BACKENDS = list(RUNNING)


@pytest.mark.parametrize("name", BACKENDS)
def test_graceful_shutdown_finishes_the_message_in_flight(name: str):
    """RFC 5321 3.8: a server shutting down answers 421 (4.3.2, RFC 3463:
    system not accepting messages). Idle sessions hear it at once; a message
    being sent is completed and accepted first; new connections are refused."""
    handler = Keep()
    timeout = 5.0
    with running(name, handler, timeout) as server, clients(server.port, 2) as (idle, busy):
        idle.send(b"EHLO idle\r\n")
        assert idle.reply().startswith(b"250")
        busy.send(TRANSACTION)
        assert [busy.reply()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
        began = time.monotonic()
        server.stop()
        assert idle.reply().startswith(b"421 4.3.2")
        assert idle.is_closed()
        assert is_refused(server.port)
        busy.send(b"second half\r\n.\r\n")
        assert busy.reply().startswith(b"250")
        assert busy.reply().startswith(b"421 4.3.2")
        assert busy.is_closed()
        assert server.stopped.wait(timeout)
        assert time.monotonic() - began < timeout
    assert handler.bodies == [b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n"]


@pytest.mark.parametrize("name", BACKENDS)
def test_graceful_shutdown_cuts_a_message_that_outlasts_it(name: str):
    """Past the shutdown's timeout a session still open is closed, and a
    message cut short is never delivered."""
    handler = Keep()
    timeout = 0.5
    with running(name, handler, timeout) as server, clients(server.port, 1) as [busy]:
        busy.send(TRANSACTION)
        assert [busy.reply()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        busy.send(b"Subject: never finished\r\n")
        began = time.monotonic()
        server.stop()
        assert busy.is_closed()
        assert server.stopped.wait(5)
        assert timeout * 0.8 <= time.monotonic() - began < timeout + 3
    assert handler.bodies == []


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("backend", ["sync", "asyncio", "trio", "anyio"])
def test_ctrl_c_on_smtp_core_serve_is_graceful(backend: str, stop: signal.Signals):
    """``smtp-core serve``: Ctrl-C (SIGINT), and SIGTERM as a service manager
    sends it, give an idle session 421 4.3.2 (RFC 5321 3.8), and the command
    ends with status 0, on every backend."""
    port = free_port()
    command = [sys.executable, "-m", "backends.cli", "serve", "--sink", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--backend", backend],
        stdout=subprocess.DEVNULL,
        # As from a terminal: a runner started in the background (nohup, &)
        # passes SIGINT on ignored, and Python then leaves it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for _ in range(100):  # bounded: 10 s at most
            try:
                idle = Client(port)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("smtp-core serve did not start listening")
        try:
            assert idle.reply().startswith(b"220")
            idle.send(b"EHLO idle\r\n")
            assert idle.reply().startswith(b"250")
            process.send_signal(stop)
            assert idle.reply().startswith(b"421 4.3.2")
            assert idle.is_closed()
        finally:
            idle.close()
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
