"""Every server backend and every client backend behind one blocking shape,
so a test can be parametrized over all of them; 127.0.0.1 only.

``serving(name, handler, **options)`` runs the named server backend and
yields its port; ``connected(name, port, **options)`` yields a client of the
named backend with blocking ``login``/``sendmail``/``send_message``/``quit``
(the async clients run on an anyio portal of the right event loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any

import trio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from backends import anyio as anyio_backend
from backends import asyncio as asyncio_backend
from backends import sync as sync_backend
from backends import trio as trio_backend

SERVER_BACKENDS = ("sync", "asyncio", "trio", "anyio-asyncio", "anyio-trio")
CLIENT_BACKENDS = ("sync", "asyncio", "trio", "anyio-asyncio", "anyio-trio")


@contextmanager
def sync_server(handler: object, **options: Any) -> Iterator[int]:
    server = sync_backend.start_server(handler, "127.0.0.1", 0, **options)
    try:
        yield server.port
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def asyncio_server(handler: object, **options: Any) -> Iterator[int]:
    """An asyncio server on a loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    start = asyncio_backend.start_server(handler, "127.0.0.1", 0, **options)
    server = asyncio.run_coroutine_threadsafe(start, loop).result(10)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        asyncio.run_coroutine_threadsafe(asyncio_backend.shutdown(server, 1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def trio_server(handler: object, **options: Any) -> Iterator[int]:
    """backends.trio.serve in a nursery on a thread of its own."""
    box: dict[str, Any] = {}
    started = threading.Event()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            box["scope"] = nursery.cancel_scope
            box["token"] = trio.lowlevel.current_trio_token()
            serve = partial(trio_backend.serve, handler, "127.0.0.1", 0, **options)
            listeners = await nursery.start(serve)
            listener = getattr(listeners[0], "transport_listener", listeners[0])
            box["port"] = listener.socket.getsockname()[1]
            started.set()

    thread = threading.Thread(target=trio.run, args=(main,))
    thread.start()
    assert started.wait(10), "the trio server did not start"
    try:
        yield int(box["port"])
    finally:
        trio.from_thread.run_sync(box["scope"].cancel, trio_token=box["token"])
        thread.join(10)


@contextmanager
def anyio_server(handler: object, backend: str, **options: Any) -> Iterator[int]:
    """backends.anyio.serve on an anyio portal running ``backend``."""
    with start_blocking_portal(backend=backend) as portal:
        serve = partial(anyio_backend.serve, handler, "127.0.0.1", 0, **options)
        future, port = portal.start_task(serve)
        try:
            yield port
        finally:
            future.cancel()


def serving(name: str, handler: object, **options: Any) -> AbstractContextManager[int]:
    """The server backend ``name`` (one of SERVER_BACKENDS) serving ``handler``."""
    servers: dict[str, Callable[..., AbstractContextManager[int]]] = {
        "sync": sync_server,
        "asyncio": asyncio_server,
        "trio": trio_server,
        "anyio-asyncio": partial(anyio_server, backend="asyncio"),
        "anyio-trio": partial(anyio_server, backend="trio"),
    }
    return servers[name](handler, **options)


class BlockingClient:
    """An async client driven from this thread through a portal."""

    def __init__(self, portal: BlockingPortal, client: Any) -> None:
        self.portal = portal
        self.client = client

    @property
    def extensions(self) -> Any:
        return self.client.extensions

    def login(self, *args: Any, **kwargs: Any) -> Any:
        return self.portal.call(partial(self.client.login, *args, **kwargs))

    def sendmail(self, *args: Any, **kwargs: Any) -> Any:
        return self.portal.call(partial(self.client.sendmail, *args, **kwargs))

    def send_message(self, *args: Any, **kwargs: Any) -> Any:
        return self.portal.call(partial(self.client.send_message, *args, **kwargs))

    def quit(self) -> None:
        self.portal.call(self.client.quit)

    def close(self) -> None:
        self.portal.call(self.client.stream.aclose)


@contextmanager
def connected(name: str, port: int, **options: Any) -> Iterator[Any]:
    """A client of backend ``name`` (one of CLIENT_BACKENDS) connected to
    127.0.0.1:``port``; quits on a clean exit, closes on an error."""
    if name == "sync":
        with sync_backend.connect("127.0.0.1", port, **options) as client:
            yield client
        return
    module, loop = {
        "asyncio": (asyncio_backend, "asyncio"),
        "trio": (trio_backend, "trio"),
        "anyio-asyncio": (anyio_backend, "asyncio"),
        "anyio-trio": (anyio_backend, "trio"),
    }[name]
    with start_blocking_portal(backend=loop) as portal:
        client = BlockingClient(
            portal, portal.call(partial(module.connect, "127.0.0.1", port, **options))
        )
        try:
            yield client
        except BaseException:
            client.close()
            raise
        client.quit()
