"""The ``smtp-core`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

import smtp_core as smtp

from . import asyncio as asyncio_backend
from .maildir import MaildirHandler, SinkHandler

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smtp-core", description="smtp-core's command")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="a receiving server storing into a Maildir")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8025, help="port to listen on")
    serve.add_argument("--maildir", default="./maildir", help="where messages go")
    serve.add_argument("--hostname", default="localhost", help="the name in greetings")
    serve.add_argument("--backend", choices=["asyncio"], default="asyncio", help="the I/O backend")
    serve.add_argument(
        "--max-size", type=int, default=smtp.ServerConfig().max_message_size, help="octets"
    )
    serve.add_argument("--lmtp", action="store_true", help="speak LMTP instead of SMTP")
    serve.add_argument("--sink", action="store_true", help="discard messages (benchmarks)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = smtp.ServerConfig(
        hostname=args.hostname, max_message_size=args.max_size or None, lmtp=args.lmtp
    )
    handler: object = (
        SinkHandler() if args.sink else MaildirHandler(args.maildir, hostname=args.hostname)
    )
    print(
        f"smtp-core: {'LMTP' if args.lmtp else 'SMTP'} on {args.host}:{args.port}, "
        + ("discarding messages" if args.sink else f"storing into {args.maildir}"),
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(asyncio_backend.serve(handler, args.host, args.port, config=config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
