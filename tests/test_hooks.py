"""A handler's mistakes are the server's problem, never the session's end:
on every server backend a hook that returns a reply its command cannot take
gets the client 451 4.3.0 (logged) and the session goes on, and a failing
on_connect gives a greeting RFC 5321 allows. smtplib is the peer."""

from __future__ import annotations

import logging
import smtplib
import socket
import threading
import time

import anyio
import pytest
from servers import SERVER_BACKENDS, serving

import smtp_core as smtp
from backends import SessionLimits
from backends import sync as sync_backend


class Confused:
    """Answers RCPT to one address, and the end of every message, with 354."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def on_rcpt(self, session, envelope, rcpt):  # type: ignore[no-untyped-def]
        if rcpt.forward_path.local_part == "odd":
            return smtp.Reply(354, "odd")
        return None

    def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        self.messages.append(body.read())
        return smtp.Reply(354, "again")


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_reply_the_command_cannot_take_becomes_451_and_the_session_goes_on(
    backend: str, caplog: pytest.LogCaptureFixture
):
    """RFC 5321 4.3.2: RCPT and the end of DATA take 2yz, 4yz or 5yz only."""
    caplog.set_level(logging.ERROR, logger="smtp_core.server")
    handler = Confused()
    with serving(backend, handler) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("c")
        client.mail("a@example.org")
        code, text = client.rcpt("odd@example.org")
        assert (code, text[:5]) == (451, b"4.3.0")
        assert client.rcpt("b@example.org")[0] == 250
        code, text = client.data(b"Subject: x\r\n\r\nbody\r\n")
        assert (code, text[:5]) == (451, b"4.3.0")
        assert client.noop()[0] == 250  # still talking
    assert handler.messages == [b"Subject: x\r\n\r\nbody\r\n"]
    said = [record.getMessage().split(":")[0] for record in caplog.records]
    assert said == ["on_rcpt returned Reply(354, 'odd')", "on_message returned Reply(354, 'again')"]


class Unwelcoming:
    def on_connect(self, session):  # type: ignore[no-untyped-def]
        raise RuntimeError("no database")


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_failing_on_connect_greets_with_421_and_closes(backend: str):
    """RFC 5321 3.1: the greeting is 220, or 554, or 421 when the service is
    not available; a temporary local failure is the 421."""
    with (
        serving(backend, Unwelcoming()) as port,
        pytest.raises(smtplib.SMTPConnectError) as refused,
    ):
        smtplib.SMTP("127.0.0.1", port, timeout=10)
    assert refused.value.smtp_code == 421
    assert refused.value.smtp_error.startswith(b"4.3.0 ")


class PerRecipient:
    """LMTP: delivers to bob, finds carol's mailbox full; or gives a list of
    the wrong length when told to."""

    def __init__(self, wrong_length: bool) -> None:
        self.wrong_length = wrong_length

    def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        if self.wrong_length:
            return [None]
        full = smtp.Reply(452, "mailbox full", "4.2.2")
        return [full if r.forward_path.local_part == "carol" else None for r in envelope.recipients]


@pytest.mark.parametrize("wrong_length", [False, True], ids=["one-each", "wrong-length"])
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_an_lmtp_handler_answers_each_recipient(
    backend: str, wrong_length: bool, caplog: pytest.LogCaptureFixture
):
    """RFC 2033 4.2: after the content, one reply per accepted recipient, in
    order; on_message may give them as a list (None: the default). A list of
    the wrong length is the handler's mistake: 451 4.3.0 for each, logged."""
    from servers import connected

    caplog.set_level(logging.ERROR, logger="smtp_core.server")
    server_config = smtp.ServerConfig(lmtp=True)
    client_config = smtp.ClientConfig(lmtp=True)
    with (
        serving(backend, PerRecipient(wrong_length), config=server_config) as port,
        connected("sync", port, timeout=10, config=client_config) as client,
    ):
        result = client.sendmail(
            "a@example.org", ["bob@example.org", "carol@example.org"], b"Subject: x\r\n\r\nhi\r\n"
        )
    codes = {str(address): reply.code for address, reply in result.delivered.items()}
    if wrong_length:
        assert codes == {"bob@example.org": 451, "carol@example.org": 451}
        [record] = caplog.records
        assert "not one Reply or None for each of the 2 recipients" in record.getMessage()
    else:
        assert codes == {"bob@example.org": 250, "carol@example.org": 452}
        assert caplog.records == []


class Streaming:
    """Takes content as it comes, as a handler writing it to a file would,
    and records the message's end: delivered, or abandoned and why."""

    def __init__(self, fail_chunks: bool = False) -> None:
        self.fail_chunks = fail_chunks
        self.chunks: list[bytes] = []
        self.ends: list[tuple[str, list[str]]] = []
        self.done = threading.Event()

    def on_chunk(self, session, envelope, data):  # type: ignore[no-untyped-def]
        if self.fail_chunks:
            raise RuntimeError("disk full")
        self.chunks.append(data)

    def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        self.ends.append(("delivered", [str(r.forward_path) for r in envelope.recipients]))
        self.done.set()

    def on_abandon(self, session, envelope, reason):  # type: ignore[no-untyped-def]
        self.ends.append((reason, [str(r.forward_path) for r in envelope.recipients]))
        self.done.set()


def _talk(port: int, script: list[bytes], *, close: bool = True) -> list[bytes]:
    """Send each line of ``script`` and read one reply (line group) after it."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        replies.append(reader.readline())
        for chunk in script:
            sock.sendall(chunk)
            while True:
                line = reader.readline()
                replies.append(line)
                if line[3:4] != b"-":
                    break
        if close:
            sock.shutdown(socket.SHUT_WR)
    return replies


_ENVELOPE = [b"EHLO c\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.org>\r\n"]


def _part_of_a_message(port: int, handler: Streaming) -> socket.socket:
    """A connection left in the middle of DATA, once on_chunk has its part."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    with sock.makefile("rb") as reader:
        for line in [*_ENVELOPE, b"DATA\r\n"]:
            sock.sendall(line)
        while not reader.readline().startswith(b"354"):
            pass
    seen = len(handler.chunks)
    sock.sendall(b"part\r\n")
    deadline = time.monotonic() + 5
    while len(handler.chunks) == seen and time.monotonic() < deadline:
        time.sleep(0.01)
    return sock


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_on_abandon_tells_a_streaming_handler_its_message_will_not_come(backend: str):
    """RFC 5321 4.1.1.4: content is the message only once CRLF.CRLF came and
    was accepted. A handler fed by on_chunk hears of each other end: the
    content refused (a bare LF, RFC 5321 2.3.8), BDAT chunks reset by RSET
    (RFC 3030 section 2), the connection closed mid-DATA. A delivered
    message gets on_message and no on_abandon."""
    handler = Streaming()
    with serving(backend, handler) as port:
        replies = _talk(port, [*_ENVELOPE, b"DATA\r\n", b"good\r\n.\r\n"])
        assert replies[-1].startswith(b"250")
        handler.done.wait(5)
        handler.done.clear()
        replies = _talk(port, [*_ENVELOPE, b"DATA\r\n", b"bare\nLF\r\n.\r\n"])
        assert replies[-1].startswith(b"550 5.5.2")
        handler.done.wait(5)
        handler.done.clear()
        replies = _talk(port, [*_ENVELOPE, b"BDAT 5\r\nfirst", b"RSET\r\n"])
        assert replies[-2].startswith(b"250") and replies[-1].startswith(b"250")
        handler.done.wait(5)
        handler.done.clear()
        _part_of_a_message(port, handler).close()
        assert handler.done.wait(5)
    recipients = ["b@example.org"]
    assert handler.ends == [
        ("delivered", recipients),
        (
            "content refused: Reply(550, 'bare CR or LF in message content: lines must end "
            "with CRLF', enhanced='5.5.2')",
            recipients,
        ),
        ("reset by RSET", recipients),
        ("the connection closed", recipients),
    ]


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_on_abandon_follows_a_failed_on_chunk_and_a_timeout(backend: str):
    """A chunk hook that raised gets the client 451 4.3.0 at the end and the
    handler an on_abandon; content that stops coming (RFC 5321 4.5.3.2.6,
    the data block timeout) gets 421 4.4.2 and an on_abandon."""
    failing = Streaming(fail_chunks=True)
    with serving(backend, failing) as port:
        replies = _talk(port, [*_ENVELOPE, b"DATA\r\n", b"x\r\n.\r\n"])
        assert replies[-1].startswith(b"451 4.3.0")
        assert failing.done.wait(5)
    assert failing.ends == [("on_chunk failed", ["b@example.org"])]
    waiting = Streaming()
    with serving(backend, waiting, limits=SessionLimits(data_block_timeout=0.3)) as port:
        replies = _talk(port, [*_ENVELOPE, b"DATA\r\n", b"and then nothing\r\n"], close=False)
        assert replies[-1].startswith(b"421 4.4.2")
        assert waiting.done.wait(5)
    assert waiting.ends == [("timed out", ["b@example.org"])]


def test_on_abandon_when_ehlo_or_quit_ends_bdat_chunks():
    """RFC 3030 section 2: chunks without BDAT LAST are no message; EHLO
    resets the transaction (RFC 5321 4.1.4) and QUIT ends the session. The
    handler hears why, once; the driver is shared, so one backend is
    enough here."""
    handler = Streaming()
    with serving("asyncio", handler) as port:
        _talk(port, [*_ENVELOPE, b"BDAT 3\r\nabc", b"EHLO again\r\n", b"QUIT\r\n"])
        assert handler.done.wait(5)
        handler.done.clear()
        _talk(port, [*_ENVELOPE, b"BDAT 3\r\nabc", b"QUIT\r\n"])
        assert handler.done.wait(5)
    assert handler.ends == [
        ("reset by EHLO", ["b@example.org"]),
        ("ended by QUIT", ["b@example.org"]),
    ]


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_on_abandon_when_a_shutdown_cuts_a_message(backend: str):
    """A graceful shutdown finishes messages in flight for a while, then cuts
    them; the handler still hears of each (trio and anyio cancel the session,
    which no longer reads: the backend makes the call itself)."""
    handler = Streaming()
    if backend == "sync":
        server = sync_backend.start_server(handler, "127.0.0.1", 0)
        sock = _part_of_a_message(server.port, handler)
        server.close_gracefully(0.3)
    else:
        options = {} if backend == "asyncio" else {"shutdown_timeout": 0.3}
        with serving(backend, handler, **options) as port:
            sock = _part_of_a_message(port, handler)
    with sock:
        assert handler.done.wait(5)
    reason = (
        "the connection closed" if backend in ("sync", "asyncio") else "the session was cancelled"
    )
    assert handler.ends == [(reason, ["b@example.org"])]


class SlowToForget(Streaming):
    """An ``async`` on_abandon that awaits before it is done."""

    async def on_abandon(self, session, envelope, reason):  # type: ignore[no-untyped-def]
        await anyio.sleep(0.05)
        super().on_abandon(session, envelope, reason)


@pytest.mark.parametrize("backend", [b for b in SERVER_BACKENDS if b != "sync"])
def test_an_async_on_abandon_runs_to_its_end_through_a_shutdown(backend: str):
    """The hook a cut session owes is awaited, not dropped: shielded from the
    cancellation on trio and anyio, waited for by asyncio's shutdown."""
    handler = SlowToForget()
    options = {} if backend == "asyncio" else {"shutdown_timeout": 0.3}
    with serving(backend, handler, **options) as port:
        sock = _part_of_a_message(port, handler)
    with sock:
        assert handler.done.wait(5)
    assert [reason for reason, _ in handler.ends] == [
        "the connection closed" if backend == "asyncio" else "the session was cancelled"
    ]


def test_on_abandon_when_the_blocking_server_cannot_write_mid_message():
    """RFC 3030 section 2: BDAT chunks without LAST are no message yet, and
    each is answered 250 while it is under way. When that reply cannot be
    written, the blocking backend's loop ends on the error, and the handler
    still hears that the message will not come. The server's side of the
    connection is shut for writing first, so the write fails every time."""
    handler = Streaming()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname(), timeout=10)
        accepted, _ = listener.accept()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            sync_backend.handle_connection(
                accepted, handler, smtp.ServerConfig(), SessionLimits(command_timeout=10)
            )
        except BaseException as error:  # the test says so, rather than a thread's traceback
            errors.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    with peer, accepted, peer.makefile("rb") as reader:
        assert reader.readline().startswith(b"220")
        for line in _ENVELOPE:
            peer.sendall(line)
            while (reply := reader.readline())[3:4] == b"-":
                pass
            assert reply.startswith(b"250")
        accepted.shutdown(socket.SHUT_WR)  # the server's next write fails (EPIPE)
        peer.sendall(b"BDAT 5\r\nfirst")
        thread.join(10)
        assert not thread.is_alive() and errors == []
    assert handler.chunks == [b"first"]
    assert handler.ends == [("the connection failed", ["b@example.org"])]
