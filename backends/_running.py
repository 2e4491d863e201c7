"""How ``smtp-core serve`` runs a backend's server: until Ctrl-C or SIGTERM,
which start the server's graceful shutdown, saying when it listens."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

__all__ = ["load", "run", "single", "until_interrupted", "until_terminated"]


def run(backend: str, serve: Callable[..., Any], announce: Callable[..., None]) -> None:
    """Run ``serve`` on ``backend``, calling ``announce`` once it listens.

    Ctrl-C (SIGINT) and SIGTERM (a service manager's stop) cancel serve
    (sync: interrupt it), which then shuts down gracefully; a second signal
    during that stops at once."""
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        if backend == "asyncio":
            # Ctrl-C cancels the main task (3.11+).
            asyncio.run(until_terminated(partial(serve, started=announce)))
        elif backend == "trio":
            import trio

            trio.run(
                until_interrupted, serve, announce, trio.open_nursery, trio.open_signal_receiver
            )
        elif backend == "anyio":
            import anyio

            anyio.run(
                until_interrupted,
                serve,
                announce,
                anyio.create_task_group,
                anyio.open_signal_receiver,
            )
        else:
            if threading.current_thread() is threading.main_thread():  # signals go there only
                signal.signal(signal.SIGTERM, signal.default_int_handler)
            serve(started=announce)


def single(error: BaseException) -> BaseException:
    """The exception inside exception groups that hold one each (trio's and
    anyio's task groups wrap what fails in them)."""
    while True:
        inner = getattr(error, "exceptions", None)  # a group (builtin, or the 3.10 backport)
        if not isinstance(inner, tuple) or len(inner) != 1:
            return error
        error = inner[0]


async def until_terminated(serve: Callable[[], Awaitable[None]]) -> None:
    """Run ``serve``, cancelling it on SIGTERM as asyncio.run does on Ctrl-C."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (RuntimeError, ValueError):
        # Not the main thread (ValueError), or a loop without signal
        # handlers, such as Windows' (a RuntimeError subclass): SIGTERM keeps
        # its default action there.
        await serve()
        return
    try:
        await serve()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def until_interrupted(
    serve: Callable[..., Awaitable[None]],
    announce: Callable[[], None],
    open_group: Callable[[], Any],
    open_signal_receiver: Callable[..., Any],
) -> None:
    """Run ``serve`` in a nursery (task group) and cancel it on Ctrl-C or
    SIGTERM: left alone, trio raises KeyboardInterrupt in whichever task is
    running, while a cancellation is what starts ``serve``'s graceful shutdown."""
    async with open_group() as group:
        with open_signal_receiver(signal.SIGINT, signal.SIGTERM) as interrupts:
            await group.start(serve)  # raises what keeps it from listening
            announce()
            async for _ in interrupts:
                group.cancel_scope.cancel()
                return


def load(name: str) -> Any:
    if name == "asyncio":
        from . import asyncio as module
    elif name == "trio":
        from . import trio as module  # type: ignore[no-redef]
    elif name == "anyio":
        from . import anyio as module  # type: ignore[no-redef]
    else:
        from . import sync as module  # type: ignore[no-redef]
    return module
