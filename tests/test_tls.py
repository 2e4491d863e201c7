"""STARTTLS (RFC 3207) and implicit TLS (RFC 8314) through real TLS on the
blocking and asyncio backends; certificates from trustme; 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from functools import partial
from typing import BinaryIO

import pytest
import trustme
from servers import serving
from test_asyncio_server import running

from backends import asyncio as asyncio_backend
from backends import sync as sync_backend
from backends._client import AuthenticationFailed, ServiceRefused
from smtp_core import sasl

CA = trustme.CA()
CERT = CA.issue_cert("127.0.0.1", "localhost")


def server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CERT.configure_cert(context)
    return context


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    CA.configure_trust(context)
    return context


class Recorder:
    def __init__(self) -> None:
        self.sessions: list[tuple[bool, str | None]] = []

    def on_message(self, session, envelope, body):  # type: ignore[no-untyped-def]
        self.sessions.append((session.tls, session.tls_info.get("version")))


SERVERS = [partial(serving, "sync"), partial(serving, "asyncio")]


@pytest.mark.parametrize("server", SERVERS, ids=["sync", "asyncio"])
@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_sync_client_over_tls(server, implicit: bool):  # type: ignore[no-untyped-def]
    handler = Recorder()
    options = {"ssl_context": server_context(), "implicit_tls": implicit}
    with server(handler, **options) as port:
        mode = "implicit" if implicit else "starttls"
        with sync_backend.connect("127.0.0.1", port, tls=mode, ssl_context=client_context()) as c:
            assert c.driver.conn.tls
            assert c.extensions is not None and not c.extensions.starttls
            c.sendmail("a@example.org", ["b@example.org"], b"secret\r\n")
    [(tls, version)] = handler.sessions
    assert tls and version is not None and version.startswith("TLS")


@pytest.mark.parametrize("server", SERVERS, ids=["sync", "asyncio"])
def test_asyncio_client_over_starttls(server):  # type: ignore[no-untyped-def]
    handler = Recorder()
    with server(handler, ssl_context=server_context()) as port:

        async def send() -> None:
            client = await asyncio_backend.connect(
                "127.0.0.1", port, tls="starttls", ssl_context=client_context(), timeout=10
            )
            async with client:
                await client.sendmail("a@example.org", ["b@example.org"], b"hi\r\n")

        asyncio.run(send())
    assert handler.sessions and handler.sessions[0][0]


def test_required_starttls_never_falls_back_to_plaintext():
    """RFC 3207 section 6: STARTTLS not offered is a failure when required."""
    handler = Recorder()
    with serving("sync", handler) as port:
        with pytest.raises(ServiceRefused, match="not offered"):
            sync_backend.connect("127.0.0.1", port, tls="starttls", ssl_context=client_context())
        with sync_backend.connect("127.0.0.1", port, tls="opportunistic") as client:
            client.sendmail("a@example.org", ["b@example.org"], b"plain\r\n")
    assert handler.sessions == [(False, None)]


@pytest.mark.parametrize("server", SERVERS, ids=["sync", "asyncio"])
def test_command_injection_through_real_tls_is_refused(server):  # type: ignore[no-untyped-def]
    """Postfix CVE-2011-0411 / aiosmtpd CVE-2024-34083: a MAIL sent in the same
    packet as STARTTLS is never run, and no TLS session starts on it."""
    handler = Recorder()
    with (
        server(handler, ssl_context=server_context()) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
    ):
        raw.recv(4096)
        raw.sendall(b"EHLO x\r\n")
        data = b""
        while b"250 " not in data:
            data += raw.recv(4096)
        raw.sendall(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    assert answer.startswith(b"554"), answer
    assert b"250" not in answer
    assert handler.sessions == []


def up_to_the_handshake(raw: socket.socket) -> BinaryIO:
    """Greeting, EHLO, STARTTLS and its 220 over ``raw``; the stream, where
    the client's handshake would go next."""
    stream = raw.makefile("rwb")
    assert stream.readline().startswith(b"220")
    stream.write(b"EHLO client.example\r\n")
    stream.flush()
    while stream.readline()[3:4] == b"-":
        pass
    stream.write(b"STARTTLS\r\n")
    stream.flush()
    assert stream.readline().startswith(b"220")
    return stream


@pytest.mark.parametrize("server", SERVERS, ids=["sync", "asyncio"])
def test_a_failed_handshake_is_logged_with_the_peer(server, caplog):  # type: ignore[no-untyped-def]
    """After the 220 to STARTTLS the peer sends no ClientHello but text: the
    connection ends, and the log says with whom the handshake failed."""
    caplog.set_level(logging.INFO, logger="smtp_core.server")
    with (
        server(Recorder(), ssl_context=server_context()) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
    ):
        stream = up_to_the_handshake(raw)
        stream.write(b"this is no ClientHello\r\n" * 20)
        stream.flush()
        # The server hangs up, or resets: our bytes were unread when it closed.
        with contextlib.suppress(ConnectionResetError):
            assert stream.read() == b""
        local = raw.getsockname()
    deadline = time.monotonic() + 10
    while not caplog.records and time.monotonic() < deadline:
        time.sleep(0.01)
    [record] = caplog.records
    assert record.getMessage().startswith(f"TLS handshake with {local[0]}:{local[1]} failed: "), (
        record.getMessage()
    )


def scram_verifiers() -> sasl.Verifiers:
    credentials = sasl.scram_credentials("pencil", b"salt-salt-salt!!", 4096, "sha256")

    def check_password(user: str, password: str, authzid: str) -> bool:
        return (user, password) == ("user", "pencil")

    return sasl.Verifiers(
        check_password=check_password,
        lookup_scram_sha256=lambda user: credentials if user == "user" else None,
    )


@pytest.mark.parametrize("server", SERVERS, ids=["sync", "asyncio"])
def test_login_picks_scram_in_plaintext_and_plain_only_under_tls(server):  # type: ignore[no-untyped-def]
    """RFC 4954 with RFC 7677: the strongest mechanism offered; PLAIN is not
    offered before TLS, so a plaintext login uses SCRAM-SHA-256."""
    handler = Recorder()
    with server(handler, ssl_context=server_context(), auth=scram_verifiers()) as port:
        with sync_backend.connect("127.0.0.1", port) as plain:
            assert plain.extensions is not None
            assert plain.extensions.auth_mechanisms == ("SCRAM-SHA-256",)
            assert plain.login("user", "pencil").code == 235
            assert plain.driver.conn.authenticated
        with sync_backend.connect(
            "127.0.0.1", port, tls="starttls", ssl_context=client_context()
        ) as secure:
            assert secure.extensions is not None
            assert "PLAIN" in secure.extensions.auth_mechanisms
            assert secure.login("user", "pencil", "PLAIN").code == 235
        with sync_backend.connect("127.0.0.1", port) as wrong:
            with pytest.raises(AuthenticationFailed) as failed:
                wrong.login("user", "crayon")
            assert failed.value.reply is not None and failed.value.reply.code == 535


def test_asyncio_client_login():
    handler = Recorder()
    with running(handler, auth=scram_verifiers()) as port:

        async def go() -> None:
            async with await asyncio_backend.connect("127.0.0.1", port, timeout=10) as client:
                reply = await client.login("user", "pencil")
                assert reply.code == 235
                await client.sendmail("a@example.org", ["b@example.org"], b"x\r\n")

        asyncio.run(go())
    assert handler.sessions == [(False, None)]


def test_require_tls_without_a_context_is_refused_at_start_on_every_backend():
    """RFC 3207 4: with TLS required and none to offer, every MAIL would get
    530 for ever; the server refuses to start instead."""
    import anyio
    import trio

    from backends import anyio as anyio_backend
    from backends import trio as trio_backend
    from backends.maildir import SinkHandler
    from smtp_core import ServerConfig

    config = ServerConfig(require_tls=True)
    message = "require_tls needs an ssl_context"
    with pytest.raises(ValueError, match=message):
        sync_backend.start_server(SinkHandler(), "127.0.0.1", 0, config=config)
    with pytest.raises(ValueError, match=message):
        asyncio.run(asyncio_backend.start_server(SinkHandler(), "127.0.0.1", 0, config=config))
    with pytest.raises(ValueError, match=message):
        trio.run(partial(trio_backend.serve, SinkHandler(), "127.0.0.1", 0, config=config))
    for loop in ("asyncio", "trio"):
        with pytest.raises(ValueError, match=message):
            serve = partial(anyio_backend.serve, SinkHandler(), "127.0.0.1", 0, config=config)
            anyio.run(serve, backend=loop)
