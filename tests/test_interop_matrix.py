"""The interop matrix: every backend against every real peer, feature by feature.

A. The project's server, on every server backend (``servers.SERVER_BACKENDS``),
   as the peer for CPython's smtplib, aiosmtplib, swaks 20201014 and Postfix's
   smtp-source: plain delivery (RFC 5321), STARTTLS (RFC 3207), AUTH (RFC 4954),
   PIPELINING (RFC 2920), SMTPUTF8 (RFC 6531), SIZE and a 10 MiB message
   (RFC 1870) and LMTP (RFC 2033). Each test asserts what the handler received:
   envelope, MAIL parameters, body octets, TLS state, authenticated identity.

B. The project's client, on every client backend (``servers.CLIENT_BACKENDS``),
   against aiosmtpd, Postfix's smtp-sink (with PIPELINING, 8BITMIME or ESMTP
   hidden, speaking LMTP, or refusing commands) and the project's own server on
   two backends: per-recipient results, BODY=8BITMIME only where offered
   (RFC 6152), pipelining only where offered (RFC 2920), and the Reply carried
   by every error.

Run against: CPython 3.11's smtplib, aiosmtplib 5.1, aiosmtpd 1.4, swaks
20201014 and Postfix 3.7's smtp-source and smtp-sink (Debian 12 packages).
What no peer here can do is skipped by design, not by accident: smtp-source
has no TLS, no AUTH and no pipelining ("No SMTP command pipelining support",
smtp-source(1)); swaks 20201014 has no SMTPUTF8 (so it is shown to be
refused a UTF-8 address instead); aiosmtplib 5 and smtplib do not pipeline.
What the client sends to smtp-sink, and whether it pipelined, is read off a
recording relay in the middle. Everything is on 127.0.0.1 with timeouts."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import os
import selectors
import shutil
import smtplib
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import AuthResult
from servers import CLIENT_BACKENDS, SERVER_BACKENDS, connected, serving
from test_asyncio_server import free_port
from test_interop_postfix import smtp_sink
from test_tls import CA, client_context, server_context

import smtp_core as smtp
from backends._client import (
    DataRefused,
    RecipientsRefused,
    SenderRefused,
    SMTPError,
)
from smtp_core import sasl

SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
TIMEOUT = 15  # seconds: every client's reply wait; a peer process gets twice that

USER, PASSWORD = "ann", "correct horse"
SENDER = "alice@example.org"
BOB, NOBODY, CAROL = "bob@example.net", "nobody@example.net", "carol@example.net"
UTF8_SENDER, UTF8_RECIPIENT = "jösé@exämple.org", "zoë@exämple.org"

TEXT = (
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: interop\r\n\r\n"
    b"Hello.\r\n.a line with a leading dot\r\n..two of them\r\n.\r\nend\r\n"
)
EIGHT_BIT_TEXT = (
    "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: Grüße\r\n\r\n"
    "Käse und Brötchen.\r\n.punkt\r\n"
).encode()


def require(path: str) -> str:
    """``path``, or skip: the Debian peers come from .ci/install-peers."""
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} is not installed (Debian's swaks/postfix: .ci/install-peers)")
    return path


def address(text: str) -> smtp.Address:
    return smtp.Address.parse(text)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@cache
def ten_mebibytes() -> bytes:
    """Exactly 10 MiB of CRLF text, every line numbered (a chunk out of order
    shows), every thousandth one starting with a dot (dot-stuffing, RFC 5321
    4.5.2), and no line near the 1000-octet limit (4.5.3.1.6)."""
    size = 10 * 1024 * 1024
    header = b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: ten MiB\r\n\r\n"
    count, rest = divmod(size - len(header), 80)
    filler = b"abcdefghij" * 7
    lines = [
        (b"%s%07d %s" % (b"." if n % 1000 == 0 else b"L", n, filler))[:78] + b"\r\n"
        for n in range(count)
    ]
    assert rest == 0 or rest >= 3, rest
    tail = [b"t" * (rest - 2) + b"\r\n"] if rest else []
    content = header + b"".join(lines) + b"".join(tail)
    assert len(content) == size
    return content


def utf8_message() -> EmailMessage:
    """A message with UTF-8 addresses and UTF-8 headers (RFC 6532)."""
    message = EmailMessage(policy=email.policy.SMTPUTF8)
    message["From"] = f"José <{UTF8_SENDER}>"
    message["To"] = f"Zoë <{UTF8_RECIPIENT}>"
    message["Subject"] = "Grüße aus Köln"
    message.set_content("Käse, Brötchen und Müsli.\n")
    return message


def text_of(content: bytes) -> str:
    """The text body of a single-part message, whatever its transfer encoding."""
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    text: str = parsed.get_content()  # type: ignore[attr-defined]
    return text.replace("\r\n", "\n")


# --- the project's server: what the handler saw ----------------------------------


@dataclass(frozen=True)
class Delivery:
    hello: str
    """The greeting verb: "Ehlo", "Helo" or "Lhlo"."""
    hello_name: str | None
    reverse_path: smtp.Address | None
    recipients: tuple[smtp.Address, ...]
    params: smtp.MailParams
    body: bytes
    tls: bool
    tls_version: str | None
    authenticated_as: str | None


class Recorder:
    """The server application: keeps every message with its session; refuses
    RCPT to nobody@ with 550 5.1.1. Plain hooks, so that every backend (the
    blocking one included) can run it."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.hellos: dict[int, str] = {}

    def on_ehlo(self, session: Any, event: Any) -> None:
        self.hellos[id(session)] = type(event).__name__

    def on_rcpt(self, session: Any, envelope: Any, rcpt: Any) -> smtp.Reply | None:
        if rcpt.forward_path.local_part == "nobody":
            return smtp.Reply(550, "no such user", "5.1.1")
        return None

    def on_message(self, session: Any, envelope: Any, body: Any) -> None:
        self.deliveries.append(
            Delivery(
                hello=self.hellos.get(id(session), "none"),
                hello_name=session.hello_name,
                reverse_path=envelope.reverse_path,
                recipients=tuple(rcpt.forward_path for rcpt in envelope.recipients),
                params=envelope.mail.params,
                body=body.read(),
                tls=session.tls,
                tls_version=session.tls_info.get("version"),
                authenticated_as=session.authenticated_as,
            )
        )


def verifiers() -> sasl.Verifiers:
    """SCRAM-SHA-256 and CRAM-MD5 (offered in clear), PLAIN and LOGIN (offered
    only under TLS, RFC 4954 section 4), all for USER/PASSWORD."""
    scram = sasl.scram_credentials(PASSWORD, b"matrix-salt-0123", 4096, "sha256")
    return sasl.Verifiers(
        check_password=lambda user, password, authzid: (user, password) == (USER, PASSWORD),
        lookup_password=lambda user: PASSWORD if user == USER else None,
        lookup_scram_sha256=lambda user: scram if user == USER else None,
    )


def secure_options() -> dict[str, Any]:
    return {"ssl_context": server_context(), "auth": verifiers()}


# --- a recording relay: what crossed the wire, and in which order ----------------


class Relay:
    """A TCP relay to 127.0.0.1:``upstream`` that logs every read, in order,
    as ("client", bytes) or ("server", bytes)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.log: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        pairs: dict[socket.socket, tuple[socket.socket, str]] = {}
        while not self._stop.is_set():
            for key, _ in selector.select(0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if sock is self.listener:
                    client, _ = sock.accept()
                    try:
                        server = socket.create_connection(("127.0.0.1", self.upstream), 10)
                    except OSError:
                        client.close()
                        continue
                    client.settimeout(10)
                    pairs[client], pairs[server] = (server, "client"), (client, "server")
                    selector.register(client, selectors.EVENT_READ)
                    selector.register(server, selectors.EVENT_READ)
                    continue
                if sock not in pairs:  # closed with its pair in this same round
                    continue
                other, side = pairs[sock]
                try:
                    data = sock.recv(65536)
                    if data:
                        self.log.append((side, data))
                        other.sendall(data)
                        continue
                except OSError:
                    pass
                for end in (sock, other):  # one side is gone: so is the pair
                    selector.unregister(end)
                    pairs.pop(end)
                    end.close()
        for end in pairs:
            end.close()
        selector.close()
        self.listener.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def sent(self) -> bytes:
        """Everything the client sent."""
        return b"".join(data for side, data in self.log if side == "client")

    def command_groups(self) -> list[list[str]]:
        """The client's commands, grouped by what it sent before it heard
        anything back: a pipelined MAIL/RCPT/DATA is one group (RFC 2920)."""
        groups: list[bytes] = []
        pending = b""
        for side, data in self.log:
            if side == "client":
                pending += data
            elif pending:
                groups.append(pending)
                pending = b""
        if pending:
            groups.append(pending)
        verbs = ("EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "RSET", "QUIT", "BDAT")
        return [
            [word for line in group.split(b"\r\n") if (word := _verb(line)) in verbs]
            for group in groups
        ]

    def pipelined(self) -> bool:
        """Whether any group held more than one of MAIL, RCPT and DATA."""
        return any(
            sum(verb in ("MAIL", "RCPT", "DATA") for verb in group) > 1
            for group in self.command_groups()
        )


def _verb(line: bytes) -> str:
    return line.split(b" ", 1)[0].split(b":", 1)[0].upper().decode("latin-1")


@contextmanager
def relay(upstream: int) -> Iterator[Relay]:
    tap = Relay(upstream)
    try:
        yield tap
    finally:
        tap.close()


def dot_stuffed(content: bytes) -> bytes:
    """``content`` as it must cross the wire in DATA (RFC 5321 4.5.2)."""
    lines = content.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)


# --- peers as processes -----------------------------------------------------------


def swaks(port: int, *options: str) -> subprocess.CompletedProcess[str]:
    command = [require(SWAKS), "--server", f"127.0.0.1:{port}", "--from", SENDER]
    command += ["--helo", "swaks.example", "--timeout", str(TIMEOUT), *options]
    return subprocess.run(
        command, capture_output=True, text=True, errors="replace", timeout=2 * TIMEOUT
    )


def smtp_source(port: int, *options: str) -> subprocess.CompletedProcess[str]:
    command = [require(SMTP_SOURCE), "-M", "source.example", "-f", SENDER, "-t", BOB]
    return subprocess.run(
        [*command, *options, f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=2 * TIMEOUT,
    )


def ca_file(directory: Path) -> str:
    path = directory / "ca.pem"
    CA.cert_pem.write_to_path(str(path))
    return str(path)


# =================================================================================
# A. The project's server, every backend, against real clients
# =================================================================================

server_backends = pytest.mark.parametrize("server", SERVER_BACKENDS)


@server_backends
def test_smtplib_plain_delivery(server: str) -> None:
    """RFC 5321 with CPython's smtplib: per-recipient refusal, dot-stuffing
    undone octet for octet, and SIZE declared because it was offered (RFC 1870)."""
    handler = Recorder()
    with serving(server, handler) as port, smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as c:
        refused = c.sendmail(SENDER, [BOB, NOBODY, CAROL], TEXT)
    assert list(refused) == [NOBODY] and refused[NOBODY][0] == 550
    [delivery] = handler.deliveries
    assert delivery.hello == "Ehlo" and not delivery.tls
    assert delivery.reverse_path == address(SENDER)
    assert delivery.recipients == (address(BOB), address(CAROL))
    assert delivery.params.size == len(TEXT)
    assert delivery.body == TEXT


@server_backends
def test_smtplib_auth_in_clear_takes_the_strongest_offered(server: str) -> None:
    """RFC 4954: in clear only SCRAM-SHA-256 and CRAM-MD5 are offered (PLAIN
    and LOGIN wait for TLS, section 4); smtplib picks CRAM-MD5, a wrong
    password gets 535 5.7.8, and the identity reaches the handler."""
    handler = Recorder()
    with (
        serving(server, handler, **secure_options()) as port,
        smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client,
    ):
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["SCRAM-SHA-256", "CRAM-MD5"]
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            client.login(USER, "wrong")
        assert failed.value.smtp_code == 535
        assert client.login(USER, PASSWORD)[0] == 235
        client.sendmail(SENDER, [BOB], TEXT)
    [delivery] = handler.deliveries
    assert delivery.authenticated_as == USER and not delivery.tls
    assert delivery.body == TEXT


@server_backends
def test_smtplib_starttls_then_auth_plain(server: str) -> None:
    """RFC 3207 then RFC 4954: after STARTTLS (certificate checked against
    the trustme CA) the EHLO reply offers PLAIN and LOGIN and no STARTTLS."""
    handler = Recorder()
    with (
        serving(server, handler, **secure_options()) as port,
        smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client,
    ):
        client.starttls(context=client_context())
        client.ehlo()
        assert "starttls" not in client.esmtp_features
        assert {"PLAIN", "LOGIN"} <= set(client.esmtp_features["auth"].split())
        client.user, client.password = USER, PASSWORD
        assert client.auth("PLAIN", client.auth_plain)[0] == 235
        client.sendmail(SENDER, [BOB], TEXT)
    [delivery] = handler.deliveries
    assert delivery.tls and delivery.tls_version is not None
    assert delivery.tls_version.startswith("TLS")
    assert delivery.authenticated_as == USER
    assert delivery.hello == "Ehlo"  # the EHLO after the handshake
    assert delivery.body == TEXT


@server_backends
def test_smtplib_smtputf8(server: str) -> None:
    """RFC 6531: smtplib's send_message sees UTF-8 addresses and adds SMTPUTF8
    and BODY=8BITMIME itself; UTF-8 headers arrive raw (RFC 6532)."""
    handler = Recorder()
    with serving(server, handler) as port, smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as c:
        assert c.send_message(utf8_message()) == {}
    [delivery] = handler.deliveries
    assert delivery.reverse_path == smtp.Address("jösé", "exämple.org")
    assert delivery.recipients == (smtp.Address("zoë", "exämple.org"),)
    assert delivery.params.smtputf8
    assert delivery.params.body is smtp.Body.EIGHT_BIT_MIME
    assert "Subject: Grüße aus Köln\r\n".encode() in delivery.body
    assert f"From: José <{UTF8_SENDER}>\r\n".encode() in delivery.body
    assert text_of(delivery.body) == "Käse, Brötchen und Müsli.\n"


@server_backends
def test_smtplib_ten_mebibytes_and_the_size_limit(server: str) -> None:
    """RFC 1870: with SIZE at exactly 10 MiB, a 10 MiB message arrives
    identical (SHA-256) and one octet more is refused at MAIL with 552."""
    content = ten_mebibytes()
    handler = Recorder()
    config = smtp.ServerConfig(max_message_size=len(content))
    with (
        serving(server, handler, config=config) as port,
        smtplib.SMTP("127.0.0.1", port, timeout=3 * TIMEOUT) as client,
    ):
        client.ehlo()
        assert client.esmtp_features["size"] == str(len(content))
        assert client.sendmail(SENDER, [BOB], content) == {}
        with pytest.raises(smtplib.SMTPSenderRefused) as too_big:
            client.sendmail(SENDER, [BOB], content + b"x")
        assert too_big.value.smtp_code == 552
    [delivery] = handler.deliveries
    assert delivery.params.size == len(content)
    assert (len(delivery.body), sha256(delivery.body)) == (len(content), sha256(content))


@server_backends
def test_aiosmtplib_plain_delivery(server: str) -> None:
    """aiosmtplib (PyPI) as the client: per-recipient refusal, SIZE, and the
    body octet for octet. (aiosmtplib 5 sends MAIL and RCPTs one at a time.)"""
    handler = Recorder()

    async def send(port: int) -> Any:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=TIMEOUT, start_tls=False)
        async with client:
            return await client.sendmail(SENDER, [BOB, NOBODY, CAROL], TEXT)

    with serving(server, handler) as port:
        errors, _ = asyncio.run(send(port))
    assert list(errors) == [NOBODY] and errors[NOBODY].code == 550
    [delivery] = handler.deliveries
    assert delivery.reverse_path == address(SENDER)
    assert delivery.recipients == (address(BOB), address(CAROL))
    assert delivery.params.size == len(TEXT)
    assert delivery.body == TEXT and not delivery.tls


@server_backends
def test_aiosmtplib_starttls_auth_login_and_cram_md5_in_clear(server: str) -> None:
    """RFC 3207 and RFC 4954 with aiosmtplib: STARTTLS with the CA checked,
    AUTH LOGIN under TLS; in clear its login() finds CRAM-MD5 among the
    mechanisms offered there."""
    handler = Recorder()

    async def send(port: int) -> None:
        secure = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=port,
            timeout=TIMEOUT,
            start_tls=True,
            tls_context=client_context(),
        )
        async with secure:
            await secure.ehlo()  # RFC 3207 4.2: aiosmtplib leaves the new EHLO to us
            assert not secure.supports_extension("starttls")
            assert (await secure.auth_login(USER, PASSWORD)).code == 235
            await secure.sendmail(SENDER, [BOB], TEXT)
        clear = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=TIMEOUT, start_tls=False)
        async with clear:
            await clear.ehlo()
            assert clear.supported_auth_methods == ["cram-md5"]
            assert (await clear.login(USER, PASSWORD)).code == 235
            await clear.sendmail(SENDER, [CAROL], TEXT)

    with serving(server, handler, **secure_options()) as port:
        asyncio.run(send(port))
    secure, clear = handler.deliveries
    assert secure.tls and secure.authenticated_as == USER
    assert secure.recipients == (address(BOB),)
    assert not clear.tls and clear.authenticated_as == USER
    assert clear.recipients == (address(CAROL),)


@server_backends
def test_aiosmtplib_smtputf8(server: str) -> None:
    """RFC 6531 with aiosmtplib's send_message: SMTPUTF8 and BODY=8BITMIME
    added for UTF-8 addresses; UTF-8 headers arrive raw."""
    handler = Recorder()

    async def send(port: int) -> Any:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=TIMEOUT, start_tls=False)
        async with client:
            return await client.send_message(utf8_message())

    with serving(server, handler) as port:
        errors, _ = asyncio.run(send(port))
    assert errors == {}
    [delivery] = handler.deliveries
    assert delivery.reverse_path == smtp.Address("jösé", "exämple.org")
    assert delivery.recipients == (smtp.Address("zoë", "exämple.org"),)
    assert delivery.params.smtputf8 and delivery.params.body is smtp.Body.EIGHT_BIT_MIME
    assert "Subject: Grüße aus Köln\r\n".encode() in delivery.body
    assert text_of(delivery.body) == "Käse, Brötchen und Müsli.\n"


@server_backends
def test_swaks_plain_delivery(server: str, tmp_path: Path) -> None:
    """swaks 20201014, one command at a time: the refused recipient is
    reported, the others get the message octet for octet."""
    handler = Recorder()
    data = tmp_path / "message.eml"
    data.write_bytes(TEXT[:-2])  # swaks ends the last line itself
    with serving(server, handler) as port, relay(port) as tap:
        result = swaks(tap.port, "--to", f"{BOB},{NOBODY},{CAROL}", "--data", f"@{data}")
    assert "<** 550 5.1.1 no such user" in result.stdout, result.stdout + result.stderr
    assert not tap.pipelined(), tap.command_groups()
    [delivery] = handler.deliveries
    assert delivery.hello == "Ehlo" and delivery.hello_name == "swaks.example"
    assert delivery.reverse_path == address(SENDER)
    assert delivery.recipients == (address(BOB), address(CAROL))
    assert delivery.body == TEXT


@server_backends
def test_swaks_pipelining(server: str, tmp_path: Path) -> None:
    """RFC 2920 with swaks --pipeline: MAIL, three RCPTs and DATA arrive in
    one group; the replies come back in order, the refused RCPT's among them."""
    handler = Recorder()
    data = tmp_path / "message.eml"
    data.write_bytes(TEXT[:-2])
    with serving(server, handler) as port, relay(port) as tap:
        result = swaks(
            tap.port, "--pipeline", "--to", f"{BOB},{NOBODY},{CAROL}", "--data", f"@{data}"
        )
    assert "<** 550 5.1.1 no such user" in result.stdout, result.stdout + result.stderr
    assert ["MAIL", "RCPT", "RCPT", "RCPT", "DATA"] in tap.command_groups()
    [delivery] = handler.deliveries
    assert delivery.recipients == (address(BOB), address(CAROL))
    assert delivery.body == TEXT


@server_backends
def test_swaks_starttls_and_auth(server: str, tmp_path: Path) -> None:
    """RFC 3207 with swaks --tls --tls-verify against the trustme CA, then
    RFC 4954: PLAIN and LOGIN under TLS, CRAM-MD5 in clear; a wrong password
    gets 535 5.7.8, a certificate swaks cannot verify ends the session, and
    neither delivers anything."""
    handler = Recorder()
    tls = ["--tls", "--tls-verify", "--tls-ca-path", ca_file(tmp_path)]
    credentials = ["--auth-user", USER, "--auth-password", PASSWORD]
    with serving(server, handler, **secure_options()) as port:
        plain = swaks(port, "--to", BOB, *tls, "--auth", "PLAIN", *credentials)
        login = swaks(port, "--to", CAROL, *tls, "--auth", "LOGIN", *credentials)
        cram = swaks(port, "--to", BOB, "--auth", "CRAM-MD5", *credentials)
        wrong = swaks(
            port, "--to", BOB, "--auth", "CRAM-MD5", "--auth-user", USER, "--auth-password", "no"
        )
        # Without the trustme CA the certificate does not verify: no session.
        untrusted = swaks(port, "--to", BOB, "--tls", "--tls-verify", *credentials[:2])
    assert untrusted.returncode != 0, untrusted.stdout
    for result in (plain, login, cram):
        assert result.returncode == 0, result.stdout + result.stderr
        assert "235 2.7.0" in result.stdout
    assert wrong.returncode != 0 and "535 5.7.8" in wrong.stdout
    assert [(d.tls, d.authenticated_as, d.recipients) for d in handler.deliveries] == [
        (True, USER, (address(BOB),)),
        (True, USER, (address(CAROL),)),
        (False, USER, (address(BOB),)),
    ]
    assert all(d.tls_version and d.tls_version.startswith("TLS") for d in handler.deliveries[:2])


@server_backends
def test_swaks_utf8_headers_and_no_smtputf8(server: str, tmp_path: Path) -> None:
    """swaks 20201014 cannot say SMTPUTF8: UTF-8 headers under an ASCII
    envelope arrive raw, and a UTF-8 sender without SMTPUTF8 is refused with
    553 5.6.7 (RFC 6531 section 3.5) and delivers nothing."""
    handler = Recorder()
    data = tmp_path / "message.eml"
    data.write_bytes(EIGHT_BIT_TEXT[:-2])
    with serving(server, handler) as port:
        headers = swaks(port, "--to", BOB, "--data", f"@{data}")
        utf8_sender = swaks(port, "--from", UTF8_SENDER, "--to", BOB)
    assert headers.returncode == 0, headers.stdout + headers.stderr
    assert "<** 553 5.6.7" in utf8_sender.stdout, utf8_sender.stdout
    [delivery] = handler.deliveries
    assert delivery.reverse_path == address(SENDER)
    assert delivery.body == EIGHT_BIT_TEXT


@server_backends
def test_swaks_lmtp(server: str) -> None:
    """RFC 2033 with swaks --protocol LMTP: LHLO, and after the content one
    reply for each accepted recipient (section 4.2), none for the refused."""
    handler = Recorder()
    config = smtp.ServerConfig(lmtp=True)
    with serving(server, handler, config=config) as port:
        result = swaks(port, "--protocol", "LMTP", "--to", f"{BOB},{NOBODY},{CAROL}")
    assert result.returncode == 0, result.stdout + result.stderr
    after_content = result.stdout.split("\n -> .\n", 1)[1].split(" -> QUIT", 1)[0]
    assert after_content.count("<-  250 2.0.0") == 2, after_content
    [delivery] = handler.deliveries
    assert delivery.hello == "Lhlo" and delivery.hello_name == "swaks.example"
    assert delivery.recipients == (address(BOB), address(CAROL))
    assert b"This is a test mailing" in delivery.body


@server_backends
def test_swaks_ten_mebibytes(server: str, tmp_path: Path) -> None:
    """A 10 MiB message from swaks (no SIZE declared) arrives identical."""
    content = ten_mebibytes()
    data = tmp_path / "big.eml"
    data.write_bytes(content[:-2])
    handler = Recorder()
    config = smtp.ServerConfig(max_message_size=len(content))
    with serving(server, handler, config=config) as port:
        result = swaks(port, "--to", BOB, "--data", f"@{data}", "--suppress-data")
    assert result.returncode == 0, result.stdout + result.stderr
    [delivery] = handler.deliveries
    assert delivery.params.size is None
    assert (len(delivery.body), sha256(delivery.body)) == (len(content), sha256(content))


@server_backends
def test_smtp_source_plain_delivery(server: str, tmp_path: Path) -> None:
    """Postfix's smtp-source: HELO (it never says EHLO), two sessions of two
    messages each (-d keeps the session), two recipients per message; then
    one message from a file whose leading dots it stuffs (RFC 5321 4.5.2)."""
    handler = Recorder()
    data = tmp_path / "message.txt"
    data.write_bytes(b"Subject: from a file\n\n.leading dot\nlast line\n")
    with serving(server, handler) as port:
        generated = smtp_source(port, "-s", "2", "-m", "4", "-d", "-r", "2", "-l", "2000")
        from_file = smtp_source(port, "-F", str(data))
    assert generated.returncode == 0, generated.stderr
    assert from_file.returncode == 0, from_file.stderr
    *generated_deliveries, file_delivery = handler.deliveries
    assert len(generated_deliveries) == 4
    for delivery in generated_deliveries:
        assert delivery.hello == "Helo" and delivery.hello_name == "source.example"
        assert delivery.reverse_path == address(SENDER)
        assert len(delivery.recipients) == 2
        assert all(r.local_part.endswith("bob") for r in delivery.recipients)
        head, _, payload = delivery.body.partition(b"\r\n\r\n")
        assert b"From: <alice@example.org>" in head
        # -l 2000: about 2000 octets of numbered lines of X (smtp-source's own count).
        assert set(payload.replace(b"\r\n", b"")) <= set(b"0123456789X")
        assert 1950 <= len(payload) <= 2050 and payload.endswith(b"\r\n")
    payloads = {delivery.body.partition(b"\r\n\r\n")[2] for delivery in generated_deliveries}
    assert len(payloads) == 1  # the same octets over both sessions
    expected = b"Subject: from a file\r\n\r\n.leading dot\r\nlast line\r\n"
    # smtp-source ends the file's content with one more empty line.
    assert file_delivery.body in (expected, expected + b"\r\n"), file_delivery.body


@server_backends
def test_smtp_source_lmtp(server: str) -> None:
    """RFC 2033 with smtp-source -L: LHLO, three recipients per message, one
    reply per recipient after the content (smtp-source waits for each)."""
    handler = Recorder()
    with serving(server, handler, config=smtp.ServerConfig(lmtp=True)) as port:
        result = smtp_source(port, "-L", "-m", "2", "-d", "-r", "3", "-l", "500")
    assert result.returncode == 0, result.stderr
    assert len(handler.deliveries) == 2
    for delivery in handler.deliveries:
        assert delivery.hello == "Lhlo" and len(delivery.recipients) == 3


# =================================================================================
# B. The project's client, every backend, against real servers
# =================================================================================

client_backends = pytest.mark.parametrize(
    "client", CLIENT_BACKENDS, ids=[f"{name}-client" for name in CLIENT_BACKENDS]
)


def driver_of(client: Any) -> Any:
    """The ClientDriver behind a blocking or portal-driven client."""
    return client.driver if hasattr(client, "driver") else client.client.driver


class AiosmtpdRecorder:
    """aiosmtpd's handler: refuses RCPT to nobody@, keeps every envelope with
    what its session said about TLS and AUTH."""

    def __init__(self, data_reply: str = "250 2.0.0 OK") -> None:
        self.data_reply = data_reply
        self.received: list[tuple[Any, bool, Any]] = []

    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.received.append((envelope, session.ssl is not None, session.auth_data))
        return self.data_reply


def aiosmtpd_authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, auth_data=USER if ok else None)


class LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


@contextmanager
def aiosmtpd_server(
    handler: object, controller: type[Controller] = Controller, **options: Any
) -> Iterator[int]:
    port = free_port()
    server = controller(handler, hostname="127.0.0.1", port=port, **options)
    server.start()
    try:
        yield port
    finally:
        server.stop()


@client_backends
def test_client_against_aiosmtpd(client: str) -> None:
    """aiosmtpd 1.4 offers 8BITMIME and SMTPUTF8 but not PIPELINING: one
    command at a time, BODY=8BITMIME for 8-bit content (RFC 6152), SMTPUTF8
    for UTF-8 addresses (RFC 6531), and each recipient's own reply."""
    handler = AiosmtpdRecorder()
    with (
        aiosmtpd_server(handler) as port,
        relay(port) as tap,
        connected(client, tap.port, timeout=TIMEOUT) as c,
    ):
        assert c.extensions.eightbitmime and c.extensions.smtputf8
        assert not c.extensions.pipelining
        result = c.sendmail(SENDER, [BOB, NOBODY, CAROL], EIGHT_BIT_TEXT)
        utf8 = c.sendmail(UTF8_SENDER, [UTF8_RECIPIENT], TEXT)
    assert [reply.code for reply in result.recipients.values()] == [250, 550, 250]
    assert list(result.refused) == [address(NOBODY)]
    assert result.refused[address(NOBODY)].enhanced == "5.1.1"
    assert result.reply is not None and result.reply.code == 250
    assert utf8.reply is not None and utf8.reply.code == 250
    assert not tap.pipelined(), tap.command_groups()
    (first, _, _), (second, _, _) = handler.received
    assert first.mail_from == SENDER and first.rcpt_tos == [BOB, CAROL]
    assert "BODY=8BITMIME" in first.mail_options
    assert first.original_content == EIGHT_BIT_TEXT
    assert second.mail_from == UTF8_SENDER and second.rcpt_tos == [UTF8_RECIPIENT]
    assert "SMTPUTF8" in second.mail_options and second.smtp_utf8


@client_backends
def test_client_starttls_and_login_against_aiosmtpd(client: str) -> None:
    """RFC 3207 then RFC 4954 against aiosmtpd: STARTTLS required (the CA
    checked), AUTH offered only after it, and the login reaches aiosmtpd."""
    handler = AiosmtpdRecorder()
    options = {"tls_context": server_context(), "authenticator": aiosmtpd_authenticator}
    with (
        aiosmtpd_server(handler, **options) as port,
        connected(client, port, tls="starttls", ssl_context=client_context(), timeout=TIMEOUT) as c,
    ):
        assert driver_of(c).conn.tls and not c.extensions.starttls
        assert {"PLAIN", "LOGIN"} <= set(c.extensions.auth_mechanisms)
        assert c.login(USER, PASSWORD).code == 235
        result = c.sendmail(SENDER, [BOB], TEXT)
    assert result.reply is not None and result.reply.code == 250
    [(envelope, tls, auth_data)] = handler.received
    assert tls and auth_data == USER
    assert envelope.rcpt_tos == [BOB] and envelope.original_content == TEXT


@client_backends
def test_client_lmtp_against_aiosmtpd(client: str) -> None:
    """RFC 2033 against aiosmtpd's LMTP: after the content one reply per
    accepted recipient, each landing on its own recipient in the SendResult."""
    handler = AiosmtpdRecorder(data_reply="250 2.0.0 bob ok\r\n452 4.2.2 carol over quota")
    config = smtp.ClientConfig(lmtp=True)
    with (
        aiosmtpd_server(handler, LmtpController) as port,
        connected(client, port, timeout=TIMEOUT, config=config) as c,
    ):
        result = c.sendmail(SENDER, [BOB, NOBODY, CAROL], TEXT)
    assert result.recipients[address(NOBODY)].code == 550
    assert {a: r.code for a, r in result.delivered.items()} == {
        address(BOB): 250,
        address(CAROL): 452,
    }
    assert set(result.refused) == {address(NOBODY), address(CAROL)}
    [(envelope, _, _)] = handler.received
    assert envelope.rcpt_tos == [BOB, CAROL]


SINKS = {
    "esmtp": (),
    "no-pipelining": ("-p",),
    "no-8bitmime": ("-8",),
    "no-esmtp": ("-e",),
}


@client_backends
@pytest.mark.parametrize("sink", SINKS)
def test_client_against_smtp_sink(client: str, sink: str) -> None:
    """Postfix's smtp-sink as it comes, and with PIPELINING, 8BITMIME or ESMTP
    itself hidden: pipelining only where offered (RFC 2920), HELO where EHLO
    is refused (RFC 5321 3.2), BODY=8BITMIME only where offered; where
    8BITMIME is not offered 8-bit content must not go out (RFC 6152 section
    3): the client fails clearly and the wire stays 7-bit."""
    require(SMTP_SINK)
    options = SINKS[sink]
    with smtp_sink(*options) as port, relay(port) as tap:
        with connected(client, tap.port, timeout=TIMEOUT) as c:
            offered = c.extensions
            ascii_result = c.sendmail(SENDER, [BOB, CAROL], TEXT)
            try:
                eight_bit: Any = c.sendmail(SENDER, [BOB], EIGHT_BIT_TEXT)
            except (SMTPError, smtp.ProtocolError, ValueError) as error:
                eight_bit = error
        sent = tap.sent()
        groups = tap.command_groups()
    assert [r.code for r in ascii_result.recipients.values()] == [250, 250]
    assert ascii_result.reply is not None and ascii_result.reply.code == 250
    assert dot_stuffed(TEXT) + b".\r\n" in sent
    if sink == "no-esmtp":
        assert offered.keywords == ()
        assert groups[0] == ["EHLO"] and groups[1] == ["HELO"]
    assert offered.pipelining == (sink in ("esmtp", "no-8bitmime"))
    assert tap.pipelined() == offered.pipelining, groups
    if offered.pipelining:
        assert ["MAIL", "RCPT", "RCPT", "DATA"] in groups
    if offered.eightbitmime:
        assert not isinstance(eight_bit, Exception), eight_bit
        assert eight_bit.reply.code == 250
        assert b"MAIL FROM:<alice@example.org> BODY=8BITMIME\r\n" in sent
        assert dot_stuffed(EIGHT_BIT_TEXT) + b".\r\n" in sent
    else:
        assert b"BODY=8BITMIME" not in sent
        assert sent.isascii(), "8-bit content sent to a server without 8BITMIME"
        assert isinstance(eight_bit, Exception), eight_bit


@client_backends
def test_client_downgrades_or_refuses_8bit_messages_without_8bitmime(client: str) -> None:
    """RFC 6152 section 3: to a server without 8BITMIME, an EmailMessage with
    8-bit text is either converted to 7-bit MIME or refused; either way
    no octet above 0x7F goes out, and what goes out still decodes to the text."""
    require(SMTP_SINK)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, BOB, "Grüße"
    message.set_content("Käse und Brötchen.\n")
    with smtp_sink("-8") as port, relay(port) as tap:
        with connected(client, tap.port, timeout=TIMEOUT) as c:
            try:
                outcome: Any = c.send_message(message)
            except (SMTPError, smtp.ProtocolError, ValueError) as error:
                outcome = error
        sent = tap.sent()
    assert sent.isascii(), "8-bit content sent to a server without 8BITMIME"
    if not isinstance(outcome, Exception):
        content = sent.split(b"DATA\r\n", 1)[1].split(b"\r\n.\r\n", 1)[0] + b"\r\n"
        assert text_of(content) == "Käse und Brötchen.\n"


@client_backends
@pytest.mark.parametrize("sink", ["esmtp", "no-pipelining"])
def test_client_refuses_utf8_addresses_without_smtputf8(client: str, sink: str) -> None:
    """RFC 6531 section 3.2: smtp-sink offers no SMTPUTF8, so a UTF-8 sender
    or recipient is refused by the client before the transaction, nothing
    non-ASCII crosses the wire, and the session is still usable after."""
    require(SMTP_SINK)
    with smtp_sink(*SINKS[sink]) as port, relay(port) as tap:
        with connected(client, tap.port, timeout=5) as c:
            assert not c.extensions.smtputf8
            for sender, recipients in [(UTF8_SENDER, [BOB]), (SENDER, [BOB, UTF8_RECIPIENT])]:
                with pytest.raises((SMTPError, smtp.ProtocolError, ValueError)):
                    c.sendmail(sender, recipients, TEXT)
                try:
                    after = c.sendmail(SENDER, [BOB], TEXT)
                except smtp.ProtocolError as error:
                    pytest.fail(f"the session is unusable after refusing {recipients}: {error}")
                assert after.reply is not None and after.reply.code == 250
        sent = tap.sent()
    assert sent.isascii()
    assert sent.count(b"MAIL FROM:") == 2


@client_backends
def test_client_lmtp_against_smtp_sink(client: str) -> None:
    """RFC 2033 against smtp-sink -L: LHLO, and one reply per recipient."""
    require(SMTP_SINK)
    config = smtp.ClientConfig(lmtp=True)
    with (
        smtp_sink("-L") as port,
        relay(port) as tap,
        connected(client, tap.port, timeout=TIMEOUT, config=config) as c,
    ):
        result = c.sendmail(SENDER, [BOB, CAROL], TEXT)
    assert tap.command_groups()[0] == ["LHLO"]
    assert [r.code for r in result.recipients.values()] == [250, 250]
    assert {a: r.code for a, r in result.delivered.items()} == {
        address(BOB): 250,
        address(CAROL): 250,
    }
    assert result.refused == {}


REFUSALS = {
    # smtp-sink option: the command it refuses, the error, the reply code.
    "soft-rcpt": (("-r", "RCPT"), RecipientsRefused, 450),
    "hard-mail": (("-f", "MAIL"), SenderRefused, 500),
    "hard-data": (("-f", "DATA"), DataRefused, 500),
    "soft-content": (("-r", "."), DataRefused, 450),
    "custom-content": (("-f", ".", "-B", "554 5.7.1 custom refusal"), DataRefused, 554),
}


@client_backends
@pytest.mark.parametrize("refusal", REFUSALS)
def test_client_errors_carry_smtp_sinks_reply(client: str, refusal: str) -> None:
    """RFC 5321 4.2: each refusal raises its own error carrying the Reply as
    smtp-sink sent it (its -r/-f/-B options), and the session goes on (RSET)."""
    require(SMTP_SINK)
    options, error_type, code = REFUSALS[refusal]
    with (
        smtp_sink(*options) as port,
        relay(port) as tap,
        connected(client, tap.port, timeout=TIMEOUT) as c,
        pytest.raises(error_type) as refused,
    ):
        c.sendmail(SENDER, [BOB, CAROL], TEXT)
    reply = refused.value.reply
    assert reply is not None and reply.code == code
    if refusal == "custom-content":
        assert reply.enhanced == "5.7.1" and reply.text == "custom refusal"
    else:
        assert reply.enhanced == f"{code // 100}.3.0"
        assert reply.text == "Error: command failed"
    if isinstance(refused.value, RecipientsRefused):
        assert set(refused.value.results) == {address(BOB), address(CAROL)}
        assert all(r.code == 450 and r.is_transient for r in refused.value.results.values())
    assert "RSET" in [verb for group in tap.command_groups() for verb in group]


OWN_SERVERS = pytest.mark.parametrize(
    "server", ["sync", "trio"], ids=["sync-server", "trio-server"]
)


@client_backends
@OWN_SERVERS
def test_client_pipelines_to_own_server(client: str, server: str) -> None:
    """The project's client and server: one pipelined group (RFC 2920), each
    recipient's reply, BODY=8BITMIME and SIZE (RFC 6152, RFC 1870), SMTPUTF8
    for UTF-8 addresses (RFC 6531)."""
    handler = Recorder()
    with (
        serving(server, handler) as port,
        relay(port) as tap,
        connected(client, tap.port, timeout=TIMEOUT) as c,
    ):
        result = c.sendmail(SENDER, [BOB, NOBODY, CAROL], EIGHT_BIT_TEXT)
        utf8 = c.sendmail(UTF8_SENDER, [UTF8_RECIPIENT], TEXT)
    assert [r.code for r in result.recipients.values()] == [250, 550, 250]
    assert list(result.refused) == [address(NOBODY)]
    assert result.reply is not None and result.reply.code == 250
    assert utf8.reply is not None and utf8.reply.code == 250
    assert ["MAIL", "RCPT", "RCPT", "RCPT", "DATA"] in tap.command_groups()
    first, second = handler.deliveries
    assert first.recipients == (address(BOB), address(CAROL))
    assert first.params.body is smtp.Body.EIGHT_BIT_MIME
    assert first.params.size == len(EIGHT_BIT_TEXT)
    assert first.body == EIGHT_BIT_TEXT
    assert second.reverse_path == smtp.Address("jösé", "exämple.org")
    assert second.params.smtputf8 and second.body == TEXT


@client_backends
@OWN_SERVERS
def test_client_starttls_and_login_to_own_server(client: str, server: str) -> None:
    """RFC 3207 and RFC 4954 between the project's client and server: in
    clear the strongest mechanism offered (SCRAM-SHA-256; PLAIN is not
    offered), and after STARTTLS AUTH PLAIN, with TLS in the session."""
    handler = Recorder()
    with serving(server, handler, **secure_options()) as port:
        with relay(port) as tap, connected(client, tap.port, timeout=TIMEOUT) as clear:
            assert "PLAIN" not in clear.extensions.auth_mechanisms
            assert clear.login(USER, PASSWORD).code == 235
            clear.sendmail(SENDER, [BOB], TEXT)
        assert b"AUTH SCRAM-SHA-256 " in tap.sent()
        with connected(
            client, port, tls="starttls", ssl_context=client_context(), timeout=TIMEOUT
        ) as secure:
            assert driver_of(secure).conn.tls
            assert "PLAIN" in secure.extensions.auth_mechanisms
            assert secure.login(USER, PASSWORD, "PLAIN").code == 235
            secure.sendmail(SENDER, [CAROL], TEXT)
    clear_delivery, secure_delivery = handler.deliveries
    assert not clear_delivery.tls and clear_delivery.authenticated_as == USER
    assert secure_delivery.tls and secure_delivery.authenticated_as == USER
    assert secure_delivery.recipients == (address(CAROL),)


@client_backends
@OWN_SERVERS
def test_client_lmtp_to_own_server(client: str, server: str) -> None:
    """RFC 2033 between the project's client and server: the refused RCPT
    gets no reply after the content, the accepted ones one each."""
    handler = Recorder()
    config = smtp.ClientConfig(lmtp=True)
    with (
        serving(server, handler, config=smtp.ServerConfig(lmtp=True)) as port,
        connected(client, port, timeout=TIMEOUT, config=config) as c,
    ):
        result = c.sendmail(SENDER, [BOB, NOBODY, CAROL], TEXT)
    assert result.recipients[address(NOBODY)].code == 550
    assert {a: r.code for a, r in result.delivered.items()} == {
        address(BOB): 250,
        address(CAROL): 250,
    }
    [delivery] = handler.deliveries
    assert delivery.hello == "Lhlo" and delivery.body == TEXT
