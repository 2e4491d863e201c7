"""The ``smtp-core`` command: ``serve`` (a receiving server) and ``send``."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import smtp_core as smtp
from smtp_core import sasl

from ._client import SMTPError, envelope_of
from ._running import load, run, single
from .maildir import MaildirHandler, SinkHandler

__all__ = ["main"]

BACKENDS = ("asyncio", "trio", "anyio", "sync")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smtp-core", description="smtp-core's command")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="a receiving server storing into a Maildir")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8025, help="port to listen on")
    serve.add_argument("--maildir", default="./maildir", help="where messages go")
    serve.add_argument("--hostname", default="localhost", help="the name in greetings")
    serve.add_argument("--backend", choices=BACKENDS, default="asyncio", help="the I/O backend")
    serve.add_argument(
        "--max-size",
        type=int,
        default=smtp.ServerConfig().max_message_size,
        help="largest message in octets (0: no limit)",
    )
    serve.add_argument("--lmtp", action="store_true", help="speak LMTP instead of SMTP")
    serve.add_argument("--sink", action="store_true", help="discard messages (benchmarks)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: offer STARTTLS")
    serve.add_argument("--tls-key", help="PEM private key for --tls-cert")
    serve.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte")
    serve.add_argument("--require-tls", action="store_true", help="530 before STARTTLS")
    serve.add_argument("--auth-file", help="lines of user:password: offer AUTH")
    serve.set_defaults(usage=serve)
    send = commands.add_parser("send", help="send an RFC 5322 message (a file or stdin)")
    send.add_argument("message", nargs="?", default="-", help="file, or - for stdin")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=_port, default=25)
    tls = send.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="implicit TLS (RFC 8314)")
    tls.add_argument("--starttls", action="store_true", help="STARTTLS, required")
    send.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    send.add_argument("--user", help="AUTH user (password from $SMTP_CORE_PASSWORD or asked)")
    send.add_argument("--from", dest="sender", help="envelope sender (default: the headers)")
    send.add_argument("--to", action="append", help="envelope recipient, repeatable")
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return port


class _Unusable(Exception):
    """A setting ``serve`` or ``send`` cannot work with: said in one line."""


def _reason(error: Exception) -> str:
    """What went wrong, in the system's words where it has them."""
    if isinstance(error, ssl.SSLError) or not isinstance(error, OSError):
        return str(error)
    if error.errno is not None and error.errno > 0:
        return os.strerror(error.errno)  # asyncio words its bind failures its own way
    return error.strerror or str(error)


def _verifiers(path: str) -> sasl.Verifiers:
    """PLAIN/LOGIN and SCRAM-SHA-256 from a file of user:password lines."""
    users: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise _Unusable(f"cannot read the auth file {path}: {_reason(error)}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            user, colon, password = line.partition(":")
            if not colon or not user.strip() or not password:
                raise _Unusable(f"{path} line {number}: expected user:password")
            users[user.strip()] = password
    salt = os.urandom(16)
    scram = {u: sasl.scram_credentials(p, salt, 4096, "sha256") for u, p in users.items()}

    def check_password(user: str, password: str, authzid: str) -> bool:
        return users.get(user) == password and authzid in ("", user)

    return sasl.Verifiers(check_password=check_password, lookup_scram_sha256=scram.get)


def _serve_options(args: argparse.Namespace) -> tuple[object, dict[str, Any]]:
    """The handler and the server options; _Unusable when a setting is wrong."""
    try:
        config = smtp.ServerConfig(
            hostname=args.hostname,
            max_message_size=args.max_size or None,
            lmtp=args.lmtp,
            require_tls=args.require_tls,
        )
    except (smtp.ProtocolError, ValueError) as error:
        raise _Unusable(str(error)) from None
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except OSError as error:  # ssl.SSLError included
            files = args.tls_cert + (f" and {args.tls_key}" if args.tls_key else "")
            raise _Unusable(
                f"cannot load a certificate chain and its private key from {files}: "
                f"{_reason(error)}"
            ) from None
    try:
        handler = (
            SinkHandler() if args.sink else MaildirHandler(args.maildir, hostname=args.hostname)
        )
    except OSError as error:
        raise _Unusable(f"cannot use the Maildir {args.maildir}: {_reason(error)}") from None
    options = {
        "config": config,
        "ssl_context": context,
        "implicit_tls": args.implicit_tls,
        "auth": _verifiers(args.auth_file) if args.auth_file else None,
    }
    return handler, options


def _serve(args: argparse.Namespace) -> int:
    try:
        handler, options = _serve_options(args)
    except _Unusable as error:
        print(f"smtp-core serve: {error}", file=sys.stderr)
        return 1
    # What the peer hears only as 451 (a hook that raised) is said on stderr.
    logging.basicConfig(level=logging.INFO, format="smtp-core serve: %(message)s")
    where = "discarding messages" if args.sink else f"storing into {args.maildir}"
    protocol = "LMTP" if args.lmtp else "SMTP"
    listening = False

    def announce(*_: object) -> None:
        nonlocal listening
        listening = True
        print(
            f"smtp-core: {protocol} on {args.host}:{args.port} ({args.backend}), {where}",
            flush=True,
        )

    serve = partial(load(args.backend).serve, handler, args.host, args.port, **options)
    try:
        run(args.backend, serve, announce)
    except Exception as error:
        cause = single(error)
        if not isinstance(cause, OSError):
            raise
        failed = "" if listening else f"cannot listen on {args.host}:{args.port}: "
        print(f"smtp-core serve: {failed}{_reason(cause)}", file=sys.stderr)
        return 1
    return 0


def _send(args: argparse.Namespace) -> int:
    from email import message_from_bytes, policy

    from . import sync

    try:
        data = sys.stdin.buffer.read() if args.message == "-" else Path(args.message).read_bytes()
    except OSError as error:
        print(f"smtp-core send: cannot read {args.message}: {_reason(error)}", file=sys.stderr)
        return 1
    message = message_from_bytes(data, policy=policy.default)
    try:
        envelope_of(message, args.sender, args.to)  # before connecting
    except ValueError as error:
        print(f"smtp-core send: {error} (--from, --to)", file=sys.stderr)
        return 1
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
    except (SMTPError, smtp.ProtocolError, OSError, ValueError) as error:
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
    if args.command == "serve":
        for option in ("tls_key", "implicit_tls", "require_tls"):
            if getattr(args, option) and not args.tls_cert:
                args.usage.error(f"--{option.replace('_', '-')} needs --tls-cert")
        return _serve(args)
    return _send(args)


if __name__ == "__main__":
    sys.exit(main())
