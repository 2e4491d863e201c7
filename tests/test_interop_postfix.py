"""Interop with real peers from Debian's packages (installed by
.ci/install-peers): swaks and Postfix's smtp-source as clients of the
project's servers, Postfix's smtp-sink as the server for the project's
client. Every peer runs on 127.0.0.1 with bounded waits."""

from __future__ import annotations

import mailbox
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_asyncio_server import free_port
from test_cli import serving
from test_tls import CERT

import smtp_core as smtp
from backends import sync as sync_backend
from backends._client import RecipientsRefused
from smtp_core import LocalProtocolError

SWAKS = shutil.which("swaks")
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
needs_swaks = pytest.mark.skipif(SWAKS is None, reason="swaks (Debian package) not installed")
needs_postfix = pytest.mark.skipif(
    not os.path.exists(SMTP_SOURCE), reason="Postfix's smtp-source/smtp-sink not installed"
)


def swaks(port: int, *options: str) -> subprocess.CompletedProcess[str]:
    assert SWAKS is not None
    command = [SWAKS, "--server", f"127.0.0.1:{port}", "--from", "a@example.org"]
    return subprocess.run(
        [*command, "--to", "b@example.org", *options], capture_output=True, text=True, timeout=60
    )


def stored(maildir: Path) -> list[mailbox.MaildirMessage]:
    return list(mailbox.Maildir(str(maildir)))


@needs_swaks
@pytest.mark.parametrize("backend", ["asyncio", "sync", "trio", "anyio"])
def test_swaks_plain_and_pipelined(tmp_path: Path, backend: str):
    """swaks 20201014 as the client; --pipeline sends MAIL/RCPT/DATA as a group."""
    maildir = tmp_path / "md"
    with serving("--backend", backend, "--maildir", str(maildir)) as (port, _):
        plain = swaks(port, "--body", "plain")
        pipelined = swaks(port, "--pipeline", "--body", "piped")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert pipelined.returncode == 0, pipelined.stdout + pipelined.stderr
    assert "PIPELINING" in pipelined.stdout
    assert len(stored(maildir)) == 2


@needs_swaks
def test_swaks_starttls_and_auth(tmp_path: Path):
    """swaks --tls (STARTTLS, RFC 3207) then --auth PLAIN (RFC 4954)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    CERT.cert_chain_pems[0].write_to_path(str(cert))
    CERT.private_key_pem.write_to_path(str(key))
    (tmp_path / "users").write_text("ann:s3cret\n", encoding="utf-8")
    maildir = tmp_path / "md"
    options = [
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--auth-file",
        str(tmp_path / "users"),
    ]
    with serving("--maildir", str(maildir), *options) as (port, _):
        good = swaks(
            port, "--tls", "--auth", "PLAIN", "--auth-user", "ann", "--auth-password", "s3cret"
        )
        bad = swaks(port, "--tls", "--auth", "PLAIN", "--auth-user", "ann", "--auth-password", "no")
        cleartext = swaks(
            port, "--auth", "PLAIN", "--auth-user", "ann", "--auth-password", "s3cret"
        )
    assert good.returncode == 0, good.stdout + good.stderr
    assert "235 2.7.0" in good.stdout
    assert bad.returncode != 0 and "535 5.7.8" in bad.stdout
    # PLAIN is not offered before TLS, so swaks cannot authenticate in clear.
    assert cleartext.returncode != 0
    assert len(stored(maildir)) == 1


@needs_swaks
def test_swaks_lmtp(tmp_path: Path):
    """RFC 2033 with swaks --protocol LMTP: one reply per recipient."""
    maildir = tmp_path / "md"
    with serving("--lmtp", "--maildir", str(maildir)) as (port, _):
        result = swaks(port, "--protocol", "LMTP", "--to", "b@example.org,c@example.org")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("250 2.0.0 queued") == 2


@needs_postfix
@pytest.mark.parametrize("backend", ["asyncio", "sync"])
def test_smtp_source_many_pipelined_messages(tmp_path: Path, backend: str):
    """Postfix's smtp-source: 200 messages of 1 KiB over 4 sessions."""
    maildir = tmp_path / "md"
    with serving("--backend", backend, "--maildir", str(maildir)) as (port, _):
        source = subprocess.run(
            [SMTP_SOURCE, "-s", "4", "-m", "200", "-l", "1024", "-f", "a@example.org",
             "-t", "b@example.org", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert source.returncode == 0, source.stderr
    assert len(stored(maildir)) == 200


@contextmanager
def smtp_sink(*options: str) -> Iterator[int]:
    port = free_port()
    user = ["-u", "nobody"] if os.getuid() == 0 else []
    process = subprocess.Popen([SMTP_SINK, *user, *options, f"127.0.0.1:{port}", "16"])
    try:
        for _ in range(100):  # bounded: 10 s
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("smtp-sink did not start")
        yield port
    finally:
        process.terminate()
        process.wait(10)


@needs_postfix
@pytest.mark.parametrize(
    ("options", "expect"),
    [
        ((), "pipelining"),
        (("-p",), "no pipelining"),
        (("-8",), "no 8bitmime"),
        (("-e",), "helo"),
    ],
)
def test_client_against_smtp_sink(options: tuple[str, ...], expect: str):
    """The project's client to Postfix's smtp-sink, with its extensions on,
    and with PIPELINING, 8BITMIME or ESMTP itself hidden."""
    with smtp_sink(*options) as port, sync_backend.connect("127.0.0.1", port, timeout=10) as c:
        extensions = c.extensions
        assert extensions is not None
        if expect == "pipelining":
            assert extensions.pipelining
        elif expect == "no pipelining":
            assert not extensions.pipelining
        elif expect == "no 8bitmime":
            assert not extensions.eightbitmime
        else:
            assert extensions.keywords == ()  # EHLO refused: HELO it was
        content = "é\r\n".encode()
        if not extensions.eightbitmime:
            # RFC 6152 section 3: no 8-bit content without 8BITMIME.
            with pytest.raises(LocalProtocolError, match="8BITMIME"):
                c.sendmail("a@example.org", ["b@example.org"], content)
            content = b"e\r\n"
        result = c.sendmail("a@example.org", ["b@example.org", "c@example.org"], content)
        assert result.reply is not None and result.reply.code == 250
        assert all(reply.code == 250 for reply in result.recipients.values())


@needs_postfix
def test_client_against_smtp_sink_lmtp_and_rejections():
    """smtp-sink -L (LMTP, RFC 2033) and -r RCPT (soft rejections)."""
    config = smtp.ClientConfig(lmtp=True)
    with smtp_sink("-L") as port, sync_backend.connect("127.0.0.1", port, config=config) as c:
        result = c.sendmail("a@example.org", ["b@example.org", "c@example.org"], b"x\r\n")
        assert [r.code for r in result.delivered.values()] == [250, 250]
    with smtp_sink("-r", "RCPT") as port, sync_backend.connect("127.0.0.1", port) as c:
        with pytest.raises(RecipientsRefused) as refused:
            c.sendmail("a@example.org", ["b@example.org"], b"x\r\n")
        assert all(r.is_transient for r in refused.value.results.values())
