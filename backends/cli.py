"""The ``smtp-core`` command: ``serve`` (a receiving server) and ``send``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import signal
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import smtp_core as smtp
from smtp_core import sasl

from ._client import SMTPError
from .maildir import MaildirHandler, SinkHandler

__all__ = ["main"]

BACKENDS = ("asyncio", "trio", "anyio", "sync")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smtp-core", description="smtp-core's command")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="a receiving server storing into a Maildir")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8025, help="port to listen on")
    serve.add_argument("--maildir", default="./maildir", help="where messages go")
    serve.add_argument("--hostname", default="localhost", help="the name in greetings")
    serve.add_argument("--backend", choices=BACKENDS, default="asyncio", help="the I/O backend")
    serve.add_argument("--max-size", type=int, default=smtp.ServerConfig().max_message_size)
    serve.add_argument("--lmtp", action="store_true", help="speak LMTP instead of SMTP")
    serve.add_argument("--sink", action="store_true", help="discard messages (benchmarks)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: offer STARTTLS")
    serve.add_argument("--tls-key", help="PEM private key for --tls-cert")
    serve.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte")
    serve.add_argument("--require-tls", action="store_true", help="530 before STARTTLS")
    serve.add_argument("--auth-file", help="lines of user:password: offer AUTH")
    send = commands.add_parser("send", help="send an RFC 5322 message (a file or stdin)")
    send.add_argument("message", nargs="?", default="-", help="file, or - for stdin")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=25)
    tls = send.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="implicit TLS (RFC 8314)")
    tls.add_argument("--starttls", action="store_true", help="STARTTLS, required")
    send.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    send.add_argument("--user", help="AUTH user (password from $SMTP_CORE_PASSWORD or asked)")
    send.add_argument("--from", dest="sender", help="envelope sender (default: the headers)")
    send.add_argument("--to", action="append", help="envelope recipient, repeatable")
    return parser


def _verifiers(path: str) -> sasl.Verifiers:
    """PLAIN/LOGIN and SCRAM-SHA-256 from a file of user:password lines."""
    users: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            user, _, password = line.partition(":")
            users[user.strip()] = password
    salt = os.urandom(16)
    scram = {u: sasl.scram_credentials(p, salt, 4096, "sha256") for u, p in users.items()}

    def check_password(user: str, password: str, authzid: str) -> bool:
        return users.get(user) == password and authzid in ("", user)

    return sasl.Verifiers(check_password=check_password, lookup_scram_sha256=scram.get)


def _serve(args: argparse.Namespace) -> int:
    config = smtp.ServerConfig(
        hostname=args.hostname,
        max_message_size=args.max_size or None,
        lmtp=args.lmtp,
        require_tls=args.require_tls,
    )
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    handler: object = (
        SinkHandler() if args.sink else MaildirHandler(args.maildir, hostname=args.hostname)
    )
    options: dict[str, Any] = {
        "config": config,
        "ssl_context": context,
        "implicit_tls": args.implicit_tls,
        "auth": _verifiers(args.auth_file) if args.auth_file else None,
    }
    where = "discarding messages" if args.sink else f"storing into {args.maildir}"
    protocol = "LMTP" if args.lmtp else "SMTP"
    print(f"smtp-core: {protocol} on {args.host}:{args.port} ({args.backend}), {where}", flush=True)
    serve = partial(_load(args.backend).serve, handler, args.host, args.port, **options)
    # Ctrl-C (SIGINT) and SIGTERM (a service manager's stop) cancel serve
    # (sync: interrupt it), which then shuts down gracefully; a second signal
    # during that stops at once.
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        if args.backend == "asyncio":
            asyncio.run(_until_terminated(serve))  # Ctrl-C cancels the main task (3.11+)
        elif args.backend == "trio":
            import trio

            trio.run(_until_interrupted, serve, trio.open_nursery, trio.open_signal_receiver)
        elif args.backend == "anyio":
            import anyio

            anyio.run(
                _until_interrupted, serve, anyio.create_task_group, anyio.open_signal_receiver
            )
        else:
            if threading.current_thread() is threading.main_thread():  # signals go there only
                signal.signal(signal.SIGTERM, signal.default_int_handler)
            serve()
    return 0


async def _until_terminated(serve: Callable[[], Awaitable[None]]) -> None:
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


async def _until_interrupted(
    serve: Callable[[], Awaitable[None]],
    open_group: Callable[[], Any],
    open_signal_receiver: Callable[..., Any],
) -> None:
    """Run ``serve`` in a nursery (task group) and cancel it on Ctrl-C or
    SIGTERM: left alone, trio raises KeyboardInterrupt in whichever task is
    running, while a cancellation is what starts ``serve``'s graceful shutdown."""
    async with open_group() as group:
        with open_signal_receiver(signal.SIGINT, signal.SIGTERM) as interrupts:
            group.start_soon(serve)
            async for _ in interrupts:
                group.cancel_scope.cancel()
                return


def _load(name: str) -> Any:
    if name == "asyncio":
        from . import asyncio as module
    elif name == "trio":
        from . import trio as module  # type: ignore[no-redef]
    elif name == "anyio":
        from . import anyio as module  # type: ignore[no-redef]
    else:
        from . import sync as module  # type: ignore[no-redef]
    return module


def _send(args: argparse.Namespace) -> int:
    from email import message_from_bytes, policy

    from . import sync

    data = sys.stdin.buffer.read() if args.message == "-" else Path(args.message).read_bytes()
    message = message_from_bytes(data, policy=policy.default)
    context = ssl.create_default_context()
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    tls = "implicit" if args.tls else "starttls" if args.starttls else "none"
    try:
        with sync.connect(args.host, args.port, tls=tls, ssl_context=context) as client:
            if args.user:
                password = os.environ.get("SMTP_CORE_PASSWORD") or getpass.getpass()
                client.login(args.user, password)
            result = client.send_message(message, args.sender, args.to)
    except (SMTPError, smtp.ProtocolError, OSError) as error:
        print(f"smtp-core send: {error}", file=sys.stderr)
        return 1
    for address, reply in result.recipients.items():
        final = result.delivered.get(address, result.reply if reply.is_positive else reply)
        code = final.code if final else reply.code
        text = final.text if final else reply.text
        print(f"<{address}>: {code} {text}")
    return 0 if not result.refused else 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return _serve(args) if args.command == "serve" else _send(args)


if __name__ == "__main__":
    sys.exit(main())
