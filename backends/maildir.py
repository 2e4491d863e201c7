"""A handler that stores every message in a Maildir (the ``serve`` default).

Each message gets a Return-Path and a Received header (RFC 5321 4.4) and is
written with the standard library's ``mailbox`` module, which copies from
the spooled body line by line, so a large message never sits in memory.
"""

from __future__ import annotations

import io
import mailbox
import sys
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import IO

import smtp_core as smtp

from ._session import Envelope, Session

__all__ = ["MaildirHandler", "SinkHandler"]


class _Prefixed(io.RawIOBase):
    """A readable stream: ``head`` followed by ``body``."""

    def __init__(self, head: bytes, body: IO[bytes]) -> None:
        self._head = io.BytesIO(head)
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        count = self._head.readinto(view)
        if count:
            return count
        data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)


def _trace_headers(session: Session, envelope: Envelope, hostname: str) -> bytes:
    sender = envelope.reverse_path
    peer = session.peer[0] if session.peer else "unknown"
    if session.proxy is not None and isinstance(session.proxy.source, tuple):
        peer = session.proxy.source[0]
    recipient = envelope.recipients[0].forward_path if len(envelope.recipients) == 1 else None
    received = (
        f"Received: from {session.hello_name or 'unknown'} ([{peer}])\r\n"
        f"\tby {hostname} (smtp-core) with {'ESMTPS' if session.tls else 'ESMTP'}"
        + (f"\r\n\tfor <{recipient}>" if recipient else "")
        + f"; {formatdate(localtime=True)}\r\n"
    )
    return f"Return-Path: <{sender or ''}>\r\n{received}".encode()


def _open_maildir(path: Path) -> mailbox.Maildir:
    """The Maildir at ``path``, made (with its parents) if missing; OSError
    when it cannot be. An existing directory gets the ``tmp``, ``new`` and
    ``cur`` it lacks (one made with mkdir, or a mounted volume): ``mailbox``
    makes them only along with the directory itself, and would otherwise
    fail on every message."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in ("tmp", "new", "cur"):
        (path / name).mkdir(mode=0o700, exist_ok=True)
    return mailbox.Maildir(str(path), create=False)


class MaildirHandler:
    """Stores messages in the Maildir at ``path`` and prints one line each."""

    def __init__(
        self,
        path: str | Path,
        *,
        hostname: str = "localhost",
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.maildir = _open_maildir(Path(path))
        self.hostname = hostname
        self.echo = echo if echo is not None else _print

    def on_message(self, session: Session, envelope: Envelope, body: IO[bytes]) -> smtp.Reply:
        stream = io.BufferedReader(
            _Prefixed(_trace_headers(session, envelope, self.hostname), body)
        )
        key = self.maildir.add(stream)
        recipients = ",".join(f"<{r.forward_path}>" for r in envelope.recipients)
        self.echo(f"stored {key} from=<{envelope.reverse_path or ''}> to={recipients}")
        return smtp.Reply(250, f"queued as {key}")


class SinkHandler:
    """Accepts every message and keeps nothing (for benchmarks): it has no
    hooks, so the session driver checks content as it is read and discards it."""


def _print(line: str) -> None:
    print(line, file=sys.stdout, flush=True)
