"""The asyncio server against CPython's smtplib (a real peer), on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import mailbox
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import smtp_core as smtp
from backends import asyncio as asyncio_backend
from backends.maildir import MaildirHandler, SinkHandler


@contextmanager
def running(
    handler: object, config: smtp.ServerConfig | None = None, **options: Any
) -> Iterator[int]:
    """An asyncio server on a loop in a thread of its own; yields its port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    start = asyncio_backend.start_server(handler, "127.0.0.1", 0, config=config, **options)
    server = asyncio.run_coroutine_threadsafe(start, loop).result(10)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        asyncio.run_coroutine_threadsafe(asyncio_backend.shutdown(server, 1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def message(body: str = "Hello.\n.leading dot\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.net"
    msg["Subject"] = "test"
    msg.set_content(body)
    return msg


def test_smtplib_delivers_into_the_maildir(tmp_path: Path):
    """smtplib (CPython's own client): EHLO, MAIL, RCPT, DATA, QUIT."""
    lines: list[str] = []
    handler = MaildirHandler(tmp_path / "maildir", hostname="mx.test", echo=lines.append)
    with running(handler) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        code, _ = client.ehlo("client.test")
        assert code == 250 and client.has_extn("pipelining") and client.has_extn("size")
        refused = client.send_message(message(), to_addrs=["bob@example.net", "eve@example.net"])
        assert refused == {}
    stored = list(mailbox.Maildir(str(tmp_path / "maildir")))
    assert len(stored) == 1
    text = stored[0].as_bytes()
    assert text.startswith(b"Return-Path: <alice@example.org>\n")
    assert b"by mx.test (smtp-core) with ESMTP" in text
    assert b"\n.leading dot\n" in text  # un-stuffed
    assert lines and "to=<bob@example.net>,<eve@example.net>" in lines[0]


class Picky:
    """Refuses one recipient, raises for another, takes the rest."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def on_rcpt(self, session, envelope, rcpt):  # type: ignore[no-untyped-def]
        if rcpt.forward_path.local_part == "nobody":
            return smtp.Reply(550, "no such user", "5.1.1")
        if rcpt.forward_path.local_part == "crash":
            raise RuntimeError("handler bug")
        return None

    async def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        self.messages.append(body.read())


def test_handler_replies_async_hooks_and_a_raising_hook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A hook's Reply is sent; a hook that raises gives 451 4.3.0 and the
    session goes on, and its exception is logged (the peer hears only 451);
    async hooks are awaited."""
    handler = Picky()
    caplog.set_level(logging.ERROR, logger="smtp_core.server")
    with running(handler) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("c")
        client.mail("a@example.org")
        assert client.rcpt("nobody@example.org")[0] == 550
        code, text = client.rcpt("crash@example.org")
        assert (code, text[:5]) == (451, b"4.3.0")
        assert client.rcpt("ok@example.org")[0] == 250
        assert client.data(b"Subject: x\r\n\r\nbody\r\n")[0] == 250
        assert client.noop()[0] == 250
        local = client.sock.getsockname()
    assert handler.messages == [b"Subject: x\r\n\r\nbody\r\n"]
    [record] = caplog.records
    assert record.getMessage() == f"on_rcpt raised; 451 4.3.0 to {local[0]}:{local[1]}"
    assert record.exc_info is not None and str(record.exc_info[1]) == "handler bug"


class Unhelpful:
    def on_mail(self, session, mail):  # type: ignore[no-untyped-def]
        return "250 ok"  # a str, not a Reply


def test_a_hook_returning_something_else_than_a_reply_is_logged(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.ERROR, logger="smtp_core.server")
    with running(Unhelpful()) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("c")
        code, text = client.mail("a@example.org")
    assert (code, text[:5]) == (451, b"4.3.0")
    [record] = caplog.records
    assert record.getMessage().startswith("on_mail returned '250 ok', not a Reply or None; 451")


def test_client_vanishing_mid_data_delivers_nothing():
    """A message whose end never came is never handed over (DESIGN.md)."""
    handler = Picky()
    with running(handler) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            stream = raw.makefile("rwb")
            assert stream.readline().startswith(b"220")
            for line in (b"EHLO c", b"MAIL FROM:<a@b.c>", b"RCPT TO:<d@e.f>", b"DATA"):
                stream.write(line + b"\r\n")
                stream.flush()
                while (reply := stream.readline())[3:4] == b"-":
                    pass
            assert reply.startswith(b"354")
            stream.write(b"Subject: half\r\n\r\nonly part of it\r\n")
            stream.flush()
        time.sleep(0.2)
    assert handler.messages == []


def test_large_message_arrives_whole(tmp_path: Path):
    """A 10 MiB message through the spool (bounded memory) into the Maildir."""
    body = ("x" * 76 + "\r\n") * (10 * (1 << 20) // 78)
    config = smtp.ServerConfig(max_message_size=None)
    handler = MaildirHandler(tmp_path / "md", echo=lambda line: None)
    with running(handler, config) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("a@example.org", ["b@example.org"], body.encode())
    [stored] = list(mailbox.Maildir(str(tmp_path / "md")))
    assert stored.get_payload().count("x" * 76) == 10 * (1 << 20) // 78


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Streaming:
    """Takes the content chunk by chunk (no spool), and fails on request."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.received = b""
        self.finished: list[object] = []

    async def on_chunk(self, session, envelope, data):  # type: ignore[no-untyped-def]
        if self.fail:
            raise OSError("disk full")
        self.received += data

    def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        self.finished.append(body)


@pytest.mark.parametrize("fail", [False, True])
def test_streaming_chunk_hook(fail: bool, caplog: pytest.LogCaptureFixture):
    """The content reaches on_chunk as it arrives; a failing chunk hook gets
    the message a 451 4.3.0 at its end (logged once) and on_message is never
    called."""
    caplog.set_level(logging.ERROR, logger="smtp_core.server")
    handler = Streaming(fail)
    body = b"Subject: s\r\n\r\n" + b"line\r\n" * 20000
    with running(handler) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        if fail:
            with pytest.raises(smtplib.SMTPDataError) as error:
                client.sendmail("a@example.org", ["b@example.org"], body)
            assert error.value.smtp_code == 451
        else:
            client.sendmail("a@example.org", ["b@example.org"], body)
    if fail:
        assert handler.finished == []
        assert [r.getMessage().split(";")[0] for r in caplog.records] == ["on_chunk raised"]
    else:
        assert caplog.records == []
        assert handler.received == body and handler.finished == [None]


def test_send_message_keeps_long_headers_as_they_came():
    """DKIM survives: a long header parsed from bytes is sent unfolded."""
    from email import message_from_bytes, policy

    from backends._client import message_parts

    long_value = "x" * 120
    raw = f"From: a@example.org\r\nTo: b@example.org\r\nX-Long: {long_value}\r\n\r\nbody\r\n"
    msg = message_from_bytes(raw.encode(), policy=policy.default)
    _, _, content = message_parts(msg, None, None)  # type: ignore[arg-type]
    assert f"X-Long: {long_value}\r\n".encode() in content


def _converse(port: int, lines: list[bytes]) -> list[bytes]:
    """Send each line and read its (last) reply line."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        stream = raw.makefile("rwb")
        assert stream.readline().startswith(b"220")
        for line in lines:
            stream.write(line)
            stream.flush()
            while (reply := stream.readline())[3:4] == b"-":
                pass
            replies.append(reply)
    return replies


def test_bdat_0_last_alone_delivers_an_empty_message():
    """RFC 3030 section 2: "BDAT 0 LAST" may end a transaction; as its only
    chunk it carries an empty message, which on_message gets as an empty
    file (not a 554 "no transaction": the transaction is there)."""
    handler = Picky()
    lines = [b"EHLO c\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<d@e.f>\r\n", b"BDAT 0 LAST\r\n"]
    with running(handler) as port:
        replies = _converse(port, lines)
    assert replies[-1].startswith(b"250 ")
    assert handler.messages == [b""]


class EnvelopeOnly:
    """Wants the envelope and never the content: no on_message, no on_chunk."""

    def __init__(self) -> None:
        self.senders: list[str] = []

    def on_mail(self, session, mail):  # type: ignore[no-untyped-def]
        self.senders.append(str(mail.reverse_path))


@pytest.mark.parametrize("handler", [EnvelopeOnly(), Picky()], ids=["envelope-only", "on_message"])
def test_content_is_spooled_only_for_on_message(handler: object, monkeypatch: Any):
    """Content is kept only when a hook will read it: a handler with neither
    on_message nor on_chunk gets its 250 with nothing spooled; one with
    on_message gets one spool per message."""
    import tempfile

    made: list[object] = []
    original = tempfile.SpooledTemporaryFile

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", counted)
    body = b"Subject: s\r\n\r\n" + b"line\r\n" * 1000 + b".\r\n"
    lines = [b"EHLO c\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<d@e.f>\r\n", b"DATA\r\n", body]
    with running(handler) as port:
        replies = _converse(port, lines)
    assert replies[-1].startswith(b"250 ")
    assert len(made) == (1 if isinstance(handler, Picky) else 0)
    if isinstance(handler, EnvelopeOnly):
        assert handler.senders == ["a@b.c"]


def test_serve_returns_when_shutdown_stops_it_and_raises_when_cancelled():
    """``shutdown(server)`` is a stop, not a cancellation: ``serve`` returns;
    cancelling ``serve`` shuts down (for up to ``shutdown_timeout`` s) and
    re-raises, as a cancelled task must."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        listening: asyncio.Future[asyncio.Server] = loop.create_future()
        serving = asyncio.create_task(
            asyncio_backend.serve(
                SinkHandler(), "127.0.0.1", 0, started=listening.set_result, shutdown_timeout=2
            )
        )
        server = await asyncio.wait_for(listening, 10)
        await asyncio_backend.shutdown(server, 1.0)
        assert await asyncio.wait_for(serving, 10) is None

        listening = loop.create_future()
        serving = asyncio.create_task(
            asyncio_backend.serve(SinkHandler(), "127.0.0.1", 0, started=listening.set_result)
        )
        server = await asyncio.wait_for(listening, 10)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(serving, 10)
        assert not server.is_serving()

    asyncio.run(main())
