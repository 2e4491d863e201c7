"""The trio and anyio backends (anyio on asyncio and on trio), against
smtplib and their own clients, with STARTTLS and AUTH; 127.0.0.1 only."""

from __future__ import annotations

import smtplib
from functools import partial

import anyio
import pytest
import trio
from servers import serving
from test_tls import Recorder, client_context, scram_verifiers, server_context

from backends import anyio as anyio_backend
from backends import trio as trio_backend

SERVERS = {name: partial(serving, name) for name in ("trio", "anyio-asyncio", "anyio-trio")}


@pytest.mark.parametrize("name", SERVERS)
def test_smtplib_against_the_server(name: str):
    handler = Recorder()
    with SERVERS[name](handler) as port, smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    assert handler.sessions == [(False, None)]


@pytest.mark.parametrize("name", SERVERS)
def test_trio_client_with_starttls_and_login(name: str):
    """RFC 3207 then RFC 4954 (SCRAM-SHA-256 offered; PLAIN under TLS)."""
    handler = Recorder()
    options = {"ssl_context": server_context(), "auth": scram_verifiers()}
    with SERVERS[name](handler, **options) as port:

        async def send() -> None:
            client = await trio_backend.connect(
                "127.0.0.1", port, tls="starttls", ssl_context=client_context(), timeout=10
            )
            async with client:
                assert (await client.login("user", "pencil", "PLAIN")).code == 235
                await client.sendmail("a@example.org", ["b@example.org"], b"x\r\n")

        trio.run(send)
    [(tls, version)] = handler.sessions
    assert tls and version is not None


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_client_implicit_tls_to_the_trio_server(backend: str):
    """RFC 8314 implicit TLS, the anyio client on either event loop."""
    handler = Recorder()
    with serving("trio", handler, ssl_context=server_context(), implicit_tls=True) as port:

        async def send() -> None:
            client = await anyio_backend.connect(
                "127.0.0.1", port, tls="implicit", ssl_context=client_context(), timeout=10
            )
            async with client:
                assert client.driver.conn.tls
                await client.sendmail("a@example.org", ["b@example.org"], b"x\r\n")

        anyio.run(send, backend=backend)
    assert handler.sessions[0][0]
